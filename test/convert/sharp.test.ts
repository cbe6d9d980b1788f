// `lowbit sharp` on stories260K (5 layers, d 64, hidden 172): full-rank SVD recovery gives back the
// original model; direct sharing (init none) computes exactly the reference layer's MLP; the
// runtime's aliasing and fused low-rank kernels match a float64 forward of the materialised
// weights W_ref + B A; reconstruction error falls with the rank; cov beats svd on its own
// objective; Single Layer Warmup lowers its loss; the reference weights are held once; files
// survive save -> load -> generate, also with --bits; bad options are refused.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { LowbitError, loadModel, type LowbitModel } from '../../lib';
import { quantizeModel } from '../../lib/convert/quantize';
import { type SharpResult, sharpModel } from '../../lib/convert/sharp';
import { openModel } from '../../lib/io';
import { layerTensorName } from '../../lib/io/llama';
import { describeLowbitFile } from '../../lib/io/lowbit-format';
import { loraTensorName, mlpRole } from '../../lib/io/sharp';
import { assembleModel } from '../../lib/model/assemble';
import { binding } from '../../lib/native';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';
import { referenceLogits } from '../helpers/reference-forward';
import { directlyShared, materializedSource, materializedWeight } from '../helpers/sharp';

const STORIES = modelPath('stories260K/stories260K.bin');
const TOKENIZER = modelPath('stories260K/tok512.model');
const CALIB = path.join(__dirname, '../data/sharp-calibration.txt');
const PROMPT = 'Once upon a time, there was a little girl';
const VOCAB = 512;

/** Largest |a - b| relative to the largest |a|. */
function relativeMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0, size = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    size = Math.max(size, Math.abs(a[i]));
  }
  return diff / size;
}

/** Mean |a - b|. */
function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

async function greedy(model: LowbitModel, maxTokens: number): Promise<number[]> {
  const tokens: number[] = [];
  for await (const chunk of model.generate('Once upon a time', { temperature: 0, maxTokens })) tokens.push(...chunk.tokens);
  return tokens;
}

/** The native model's logits against the float64 reference forward of `source`, |d| <= 1e-4 (1 + |ref|). */
async function assertMatchesReference(model: LowbitModel, source: Parameters<typeof referenceLogits>[0], ids: number[]): Promise<void> {
  const logits = await model.logits(ids);
  referenceLogits(source, ids).forEach((row, p) => {
    row.forEach((v, i) => assert.ok(Math.abs(logits[p * VOCAB + i] - v) <= 1e-4 * (1 + Math.abs(v)), `position ${p}, logit ${i}: ${logits[p * VOCAB + i]} vs ${v}`));
  });
}

describe('convert/sharp', function () {
  this.timeout(120_000);
  let dir: string;
  let original: LowbitModel;
  let ids: number[];
  const sharp = (name: string, options: Parameters<typeof sharpModel>[2]): Promise<SharpResult> =>
    sharpModel(STORIES, path.join(dir, `${name}.lowbit`), { tokenizer: TOKENIZER, ...options });
  const load = (name: string) => loadModel(path.join(dir, `${name}.lowbit`), { activations: 'f32', kvCache: 'f32' });

  before(async () => {
    dir = makeTempDir('sharp');
    original = await loadModel(STORIES, { tokenizer: TOKENIZER, activations: 'f32', kvCache: 'f32' });
    ids = original.tokenize(PROMPT, { bos: true });
  });
  after(() => {
    original.dispose();
    removeDir(dir);
  });

  it('calibration records what a layer MLP reads: its down input is silu(gate x) * up x of its recorded x', async () => {
    const source = openModel(STORIES, { tokenizer: TOKENIZER });
    const { native } = assembleModel(source, { activations: 'f32' });
    const context = new (binding().AddonContext)(native, 64, 'f32', 1);
    try {
      context.recordMlp(Int32Array.from([2]));
      await context.eval(Int32Array.from(ids), 'none');
      await context.eval(Int32Array.from([ids[1]]), 'none');  // appended, as decode steps are
      const { ffnIn, swiglu } = context.recordedMlp(2);
      const tokens = ids.length + 1, dim = 64, hidden = 172;
      assert.equal(ffnIn.length, tokens * dim);
      assert.equal(swiglu.length, tokens * hidden);
      const weight = (mat: 'gate' | 'up') => new Float32Array(source.tensors.get(layerTensorName(2, mlpRole(mat)))!.read().slice().buffer);
      const gate = weight('gate'), up = weight('up');
      for (let t = 0; t < tokens; t++) {
        for (let h = 0; h < hidden; h++) {
          let g = 0, u = 0;
          for (let j = 0; j < dim; j++) {
            g += gate[h * dim + j] * ffnIn[t * dim + j];
            u += up[h * dim + j] * ffnIn[t * dim + j];
          }
          const want = (g / (1 + Math.exp(-g))) * u;
          assert.ok(Math.abs(swiglu[t * hidden + h] - want) <= 1e-5 * (1 + Math.abs(want)), `token ${t}, unit ${h}`);
        }
      }
      assert.throws(() => context.recordedMlp(1), RangeError);
      context.recordMlp(null);
      assert.throws(() => context.recordedMlp(2), RangeError);
    } finally {
      context.dispose();
      native.dispose();
      source.close();
    }
  });

  it('full-rank svd recovery gives back the original model', async () => {
    const result = await sharp('full', { schedule: 'every-other', rank: 64, init: 'svd' });
    assert.deepEqual(result.layout.schedule, [{ target: 1, reference: 0 }, { target: 3, reference: 2 }]);
    for (const layer of result.layers) for (const p of Object.values(layer.projections)) assert.ok(p!.weightError < 1e-12);
    const model = await load('full');
    try {
      assert.ok(relativeMaxDiff(await original.logits(ids), await model.logits(ids)) < 1e-5);
      assert.deepEqual(await greedy(model, 40), await greedy(original, 40));
    } finally {
      model.dispose();
    }
  });

  it('init none is direct sharing: the target computes exactly its reference layer MLP', async () => {
    const result = await sharp('none', { schedule: '3<2,4<2', init: 'none' });
    assert.deepEqual(result.layout.ranks, { gate: 0, up: 0, down: 0 });
    const source = openModel(path.join(dir, 'none.lowbit'));
    const float = openModel(STORIES);
    const model = await load('none');
    try {
      assert.ok(![...source.tensors.keys()].some((name) => name.includes('lora') || /layers\.[34]\.mlp/.test(name)));
      await assertMatchesReference(model, directlyShared(float, result.layout.schedule), ids);
      assert.ok(relativeMaxDiff(await original.logits(ids), await model.logits(ids)) > 1e-2, 'sharing changed nothing');
    } finally {
      model.dispose();
      source.close();
      float.close();
    }
  });

  it('fused recovery matches a float64 forward of the materialised weights W_ref + B A (f32 and f16 factors)', async () => {
    for (const recovery of ['f32', 'f16'] as const) {
      await sharp(`rank16-${recovery}`, { schedule: 'later-half', rank: 'gate=16,up=8,down=24', init: 'svd', recovery });
      const file = path.join(dir, `rank16-${recovery}.lowbit`);
      const model = await load(`rank16-${recovery}`);
      try {
        assert.deepEqual(model.info.sharp?.ranks, { gate: 16, up: 8, down: 24 });
        assert.equal(model.info.tensorFormats[loraTensorName(3, 'gate', 'a')], recovery);
        await assertMatchesReference(model, materializedSource(file), ids);
      } finally {
        model.dispose();
      }
    }
  });

  // The weight error falls at every rank (Eckart-Young). The logits' does only in trend: on this
  // prompt rank 8 is further from the original than rank 2 (a partial recovery of gate, up and down
  // can be worse than less of it), so the grid is coarse.
  it('the error falls as the rank grows: in the weights and in the logits', async () => {
    const reference = await original.logits(ids);
    let lastWeight = Infinity, lastLogits = Infinity;
    for (const rank of [2, 24, 48, 64]) {
      const result = await sharp(`sweep-${rank}`, { schedule: 'every-other', rank, init: 'svd' });
      const weight = result.layers.flatMap((l) => Object.values(l.projections).map((p) => p!.weightError)).reduce((a, b) => a + b);
      const model = await load(`sweep-${rank}`);
      const logits = meanAbsDiff(reference, await model.logits(ids));
      model.dispose();
      assert.ok(weight < lastWeight && logits < lastLogits, `rank ${rank}: weight error ${weight}, logit error ${logits}`);
      [lastWeight, lastLogits] = [weight, logits];
    }
    assert.ok(lastLogits < 1e-4);
  });

  it('cov beats svd on its own objective, and svd beats cov on the weights', async () => {
    const options = { schedule: 'every-other', rank: 8, calib: CALIB, calibTokens: 1024 } as const;
    const bySvd = await sharp('obj-svd', { ...options, init: 'svd' }), byCov = await sharp('obj-cov', { ...options, init: 'cov' });
    assert.equal(byCov.calibrationTokens, 1024);
    for (const [i, layer] of byCov.layers.entries()) {
      for (const mat of ['gate', 'up', 'down'] as const) {
        const cov = layer.projections[mat]!, svd = bySvd.layers[i].projections[mat]!;
        assert.ok(cov.outputError < svd.outputError, `layer ${layer.target} ${mat}: ${cov.outputError} vs ${svd.outputError}`);
        assert.ok(svd.weightError < cov.weightError);
      }
    }
  });

  it('Single Layer Warmup lowers its loss, from cov and from a LoRA start', async () => {
    for (const init of ['cov', 'none'] as const) {
      const result = await sharp(`refine-${init}`, { schedule: 'later-half', rank: 8, init, calib: CALIB, calibTokens: 1024, refine: 60, refineLearningRate: 0.01 });
      const [layer] = result.layers;
      assert.ok(layer.lossRefined < layer.lossInit && layer.lossRefined < layer.lossShared, JSON.stringify(layer));
      if (init === 'none') assert.equal(layer.lossInit, layer.lossShared);
      assert.deepEqual(describeLowbitFile(path.join(dir, `refine-${init}.lowbit`)).sharp?.refine, 60);
    }
  });

  it('holds the reference weights once: bytes in memory drop by the shared tensors and grow by the factors', async () => {
    const result = await sharp('bytes', { schedule: 'every-other', rank: 'gate=4,up=4,down=0', init: 'svd' });
    const model = await load('bytes');
    try {
      // f32 MLP matrices; rank-4 factors A [4, 64] and B [172, 4] of gate and up in two targets
      const matrix = 64 * 172 * 4, factors = 2 * 2 * 4 * (64 + 172) * 4;
      assert.equal(model.info.bytes, original.info.bytes - 2 * 3 * matrix + factors);
      assert.deepEqual(model.info.mlp, {
        logicalParameters: 5 * 3 * 64 * 172, storedParameters: 3 * 3 * 64 * 172 + factors / 4,
        logicalBytes: 5 * 3 * matrix, storedBytes: 3 * 3 * matrix + factors,
      });
      assert.equal(result.mlp.storedParameters, model.info.mlp.storedParameters);
      assert.equal(original.info.mlp.storedBytes, original.info.mlp.logicalBytes);
    } finally {
      model.dispose();
    }
  });

  it('with --bits the shared reference is quantized once and the recovery is fitted to it', async () => {
    const result = await sharp('b4', { schedule: 'every-other', rank: 64, init: 'svd', bits: 4, method: 'rtn' });
    const file = path.join(dir, 'b4.lowbit');
    const source = materializedSource(file), float = openModel(STORIES);
    const model = await loadModel(file, { activations: 'f32', kvCache: 'f32' }), int8 = await loadModel(file);
    try {
      assert.equal(model.info.tensorFormats[layerTensorName(0, mlpRole('down'))], 'b4');
      assert.equal(model.info.tensorFormats[loraTensorName(1, 'down', 'a')], 'f32');
      // Full rank: the target's materialised weight is its original float weight again.
      const down = materializedWeight(source, 1, 'down');
      const want = float.tensors.get(layerTensorName(1, mlpRole('down')))!;
      const wantValues = new Float32Array(want.read().slice().buffer);
      assert.ok(relativeMaxDiff(wantValues, down) < 1e-5);
      await assertMatchesReference(model, source, ids);
      // int8 activations (the fused int8 kernels) stay close to the float run
      assert.ok(relativeMaxDiff(await model.logits(ids), await int8.logits(ids)) < 0.05);
      assert.equal(result.recipe.bits, 4);
      assert.match(await model.complete('Once upon a time', { temperature: 0, maxTokens: 20 }), /\S/);
    } finally {
      model.dispose();
      int8.dispose();
      float.close();
    }
  });

  it('survives save -> load -> generate, says what it is, and reports progress step by step', async () => {
    const events: { done: number; total: number; name: string }[] = [];
    await sharp('gen', { schedule: 'later-half', rank: 16, init: 'cov', calib: CALIB, calibTokens: 512, refine: 20, onProgress: (e) => events.push(e) });
    assert.deepEqual(events.map((e) => e.done), events.map((_e, i) => i + 1));
    assert.ok(events.every((e) => e.total === events.length));
    assert.deepEqual(events.slice(0, 2).map((e) => e.name), ['calibration block 1/1', 'fitted 1 target layer']);
    assert.ok(events.some((e) => e.name === loraTensorName(3, 'down', 'b')));
    const file = path.join(dir, 'gen.lowbit');
    const description = describeLowbitFile(file);
    assert.equal(description.version, 2);
    assert.deepEqual(description.sharp, { schedule: [{ target: 3, reference: 2 }], mats: ['gate', 'up', 'down'], ranks: { gate: 16, up: 16, down: 16 }, init: 'cov', refine: 20 });
    assert.equal(description.recipe.tool, 'sharp');
    const model = await loadModel(file);
    try {
      const first = await greedy(model, 30);
      assert.equal(first.length > 0, true);
      assert.deepEqual(await greedy(model, 30), first);
    } finally {
      model.dispose();
    }
  });

  it('refuses bad options and already-shared input', async () => {
    const out = path.join(dir, 'bad.lowbit');
    const cases: [Parameters<typeof sharpModel>[2], ErrorConstructor, RegExp][] = [
      [{ schedule: '3<2,2<1' }, RangeError, /layer 2 is the reference of 3 and a target itself/],
      [{ schedule: '5<4' }, RangeError, /layer 5 is not one of the model's layers 0 to 4/],
      [{ schedule: '3<3' }, RangeError, /cannot share with itself/],
      [{ schedule: '3<2,3<1' }, RangeError, /layer 3 is a target twice/],
      [{ schedule: 'sideways' }, RangeError, /later-half/],
      [{ rank: 65 }, RangeError, /rank of gate must be an integer from 0 to 64/],
      [{ rank: 'gate=4,left=2' }, RangeError, /ranks of gate, up, down/],
      [{ mats: 'gate,gate' }, RangeError, /distinct projections/],
      [{ init: 'cov' }, TypeError, /calibration text file/],
      [{ refine: 10 }, TypeError, /calibration text file/],
      [{ method: 'rtn' }, TypeError, /nothing without bits/],
      [{ init: 'pca' as never }, RangeError, /'none', 'svd', 'cov'/],
      [{ ranks: 4 } as never, TypeError, /Misspelled option "ranks" for sharpModel should be "rank"|Unknown option "ranks"/],
    ];
    for (const [options, type, pattern] of cases) {
      await assert.rejects(sharpModel(STORIES, out, { tokenizer: TOKENIZER, ...options }), (e: unknown) => e instanceof type && pattern.test((e as Error).message), JSON.stringify(options));
    }
    await assert.rejects(sharpModel(path.join(dir, 'none.lowbit'), out), (e: unknown) => e instanceof LowbitError && /shares MLP weights between layers \(SHARP\): sharp needs a model without sharing/.test(e.message));
    await assert.rejects(quantizeModel(path.join(dir, 'none.lowbit'), out, { bits: 4 }), (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_UNSUPPORTED');
    assert.equal(fs.existsSync(out), false);
  });
});
