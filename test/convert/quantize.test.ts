// `lowbit quantize`: ParetoQ checkpoints made from stories260K with the paper's formulas (fake-quantized
// bf16 safetensors; latent pytorch_model.bin + weight_clip_val in bf16 and f32) convert with --method
// exact to files whose every weight is the checkpoint's value, whose size follows from the packing,
// and that generate what the checkpoint generates; rtn/mse, --tensor-bits, and bad input.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { LowbitError, loadModel, type LowbitModel } from '../../lib';
import { quantizeModel } from '../../lib/convert/quantize';
import { openModel } from '../../lib/io';
import { dequantizeToF32 } from '../../lib/io/dtypes';
import { LAYER_ROLES, layerTensorName } from '../../lib/io/llama';
import { describeLowbitFile } from '../../lib/io/lowbit-format';
import { writeSafetensors } from '../../lib/io/safetensors-writer';
import type { ModelSource } from '../../lib/io/types';
import { hfConfigJson, hfTensors } from '../helpers/convert';
import { dequantizedSource, dequantizedWeights, expectedRowBytes, headerBytes, runCli } from '../helpers/lowbit-files';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';
import {
  type CheckpointDtype, PARETOQ_BITS, type ParetoqBits, paretoqCheckpoint, paretoqForward, stored, writeParetoqFolder,
} from '../helpers/paretoq';
import { referenceLogits } from '../helpers/reference-forward';

const STORIES = modelPath('stories260K/stories260K.bin');
const TOKENIZER = modelPath('stories260K/tok512.model');
const FORMAT_OF: Record<ParetoqBits, string> = { 1: 'b1', 1.58: 't158', 2: 'b2', 3: 'b3', 4: 'b4' };
const LINEAR_ROLES = LAYER_ROLES.filter((role) => role.includes('proj'));
const PROMPT = 'Once upon a time';

function linearNames(nLayers: number): string[] {
  return Array.from({ length: nLayers }, (_, l) => LINEAR_ROLES.map((role) => layerTensorName(l, role))).flat();
}

/** Tokens of a greedy generation. */
async function greedyTokens(model: LowbitModel, maxTokens: number): Promise<number[]> {
  const tokens: number[] = [];
  for await (const chunk of model.generate(PROMPT, { temperature: 0, maxTokens })) tokens.push(...chunk.tokens);
  return tokens;
}

/** The weights and clip values of a written checkpoint as lowbit's readers hand them out. */
function readBack(dir: string, name: string): { latent: Float32Array; alphas: Float32Array; dtype: CheckpointDtype } {
  const source = openModel(dir, { tokenizer: TOKENIZER });
  try {
    const read = (n: string) => {
      const info = source.tensors.get(n)!;
      return dequantizeToF32(info.dtype, info.read(), info.shape.reduce((a, b) => a * b, 1));
    };
    return { latent: read(name), alphas: read(`${name}_clip_val`), dtype: source.tensors.get(name)!.dtype as CheckpointDtype };
  } finally {
    source.close();
  }
}

describe('convert/quantize: ParetoQ checkpoints, --method exact', function () {
  this.timeout(120_000);
  let dir: string;
  let float: ModelSource;
  before(() => {
    dir = makeTempDir('quantize');
    float = openModel(STORIES);
  });
  after(() => {
    float.close();
    removeDir(dir);
  });

  for (const bits of PARETOQ_BITS) {
    const format = FORMAT_OF[bits];
    describe(`${bits}-bit (${format})`, () => {
      // Fake-quantized checkpoints in bf16 (as released) and f32, converted with --method exact.
      const fake: Record<CheckpointDtype, { dir: string; file: string; checkpoint: ReturnType<typeof paretoqCheckpoint> }> = {} as never;
      let fakeDir: string, fakeFile: string;
      before(async () => {
        for (const dtype of ['bf16', 'f32'] as const) {
          const checkpoint = paretoqCheckpoint(float, bits, 'fake-quantized', dtype, 11);
          const folder = path.join(dir, `fake-${dtype}-${bits}`);
          writeParetoqFolder(folder, float, checkpoint, 'safetensors', TOKENIZER);
          const file = `${folder}.lowbit`;
          await quantizeModel(folder, file, { bits, method: 'exact' });
          fake[dtype] = { dir: folder, file, checkpoint };
        }
        [fakeDir, fakeFile] = [fake.bf16.dir, fake.bf16.file];
      });

      /** Every linear weight of the converted file next to the checkpoint's value. */
      function compareWeights(dtype: CheckpointDtype, check: (name: string, i: number, value: number, expected: number) => void): void {
        const weights = dequantizedWeights(fake[dtype].file);
        const names = linearNames(float.config.nLayers);
        assert.deepEqual([...weights.keys()].sort(), [...names].sort());
        let compared = 0;
        for (const name of names) {
          const { format: packedAs, values } = weights.get(name)!;
          const expected = fake[dtype].checkpoint.linears.get(name)!.fake;
          assert.equal(packedAs, format, name);
          for (let i = 0; i < expected.length; i++, compared++) check(name, i, values[i], expected[i]);
        }
        assert.equal(compared, 5 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64));
      }

      it('fake-quantized f32 safetensors: every dequantized weight equals the checkpoint value', () => {
        compareWeights('f32', (name, i, value, expected) => {
          if (value !== expected) assert.fail(`${name}[${i}]: ${value} !== ${expected}`);
        });
      });

      it('fake-quantized bf16 safetensors: every weight is the checkpoint value in bf16, its own precision', () => {
        // One f32 scale d per row gives d*(c+o): that rounds to the stored bf16 value always, and is
        // that value exactly for b1 and t158 (one magnitude per row). For 2-4 bits bf16 rounded the
        // levels of alpha independently (bf16(0.75a) is rarely 3*bf16(0.25a)), so there the f32
        // weight may sit up to half a bf16 step (2^-8 relative) from the stored value.
        let inexact = 0;
        compareWeights('bf16', (name, i, value, expected) => {
          if (stored(value, 'bf16') !== expected) assert.fail(`${name}[${i}]: ${value} is not bf16 ${expected}`);
          if (value !== expected) inexact++;
        });
        if (format === 'b1' || format === 't158') assert.equal(inexact, 0);
      });

      for (const dtype of ['bf16', 'f32'] as const) {
        it(`latent ${dtype} pytorch_model.bin + weight_clip_val: equals ParetoQ's forward, computed in ${dtype}`, async () => {
          const latentDir = path.join(dir, `latent-${dtype}-${bits}`);
          const wBits = bits === 1.58 ? 0 : bits;  // ParetoQ's config.json encoding
          writeParetoqFolder(latentDir, float, paretoqCheckpoint(float, bits, 'latent', dtype, 12), 'pytorch', undefined, wBits);
          const file = path.join(dir, `latent-${dtype}-${bits}.lowbit`);
          const other = bits === 4 ? 3 : 4;
          await assert.rejects(quantizeModel(latentDir, file, { bits: other, tokenizer: TOKENIZER }),
            new RegExp(`Expected ${bits} for these latent weights \\(config.json: w_bits ${wBits};.* for bits but received ${other}`));
          const result = await quantizeModel(latentDir, file, { bits, tokenizer: TOKENIZER });
          assert.deepEqual(result.recipe.weightsFrom, { 'latent+clip': 35, 'on-grid': 0 });
          const weights = dequantizedWeights(file);
          for (const name of linearNames(float.config.nLayers)) {
            const { latent, alphas, dtype: readAs } = readBack(latentDir, name);
            assert.equal(readAs, dtype);
            const values = weights.get(name)!.values;
            const cols = latent.length / alphas.length;
            for (let i = 0; i < latent.length; i++) {
              const expected = paretoqForward(bits, latent[i], alphas[Math.floor(i / cols)], dtype);
              const same = dtype === 'f32' ? values[i] === expected : stored(values[i], 'bf16') === expected;
              if (!same) assert.fail(`${name}[${i}]: ${values[i]}, ParetoQ gives ${expected}`);
            }
          }
        });
      }

      it('the file is as large as the packing says, several times smaller than the bf16 source', () => {
        const c = float.config;
        const tokenizerBytes = fs.statSync(TOKENIZER).size;
        let linear = 0;
        for (let l = 0; l < c.nLayers; l++) {
          for (const [rows, cols] of [[64, 64], [32, 64], [32, 64], [64, 64], [172, 64], [172, 64], [64, 172]]) {
            linear += rows * (expectedRowBytes(format, cols) + 4);  // packed rows + one f32 scale per row
          }
        }
        const embedding = c.vocabSize * c.dim * 2;  // f16, tied with the head
        const norms = (2 * c.nLayers + 1) * c.dim * 4;
        const expected = headerBytes(fakeFile) + linear + embedding + norms + tokenizerBytes;
        const size = fs.statSync(fakeFile).size;
        assert.equal(size, expected);
        const source = fs.statSync(path.join(fakeDir, 'model.safetensors')).size;
        // bf16 source: 2 bytes per weight; the linear layers shrink 16/bits-fold (plus scales).
        const params = 5 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64);
        assert.ok(source > 2 * (params + c.vocabSize * c.dim));
        assert.ok(source / size > (bits <= 2 ? 3 : 2.3), `ratio ${(source / size).toFixed(2)}`);
      });

      it('lowbit info shows the recipe and the bytes of each kind of tensor', async () => {
        const { code, stdout } = await runCli(['info', fakeFile]);
        assert.equal(code, 0);
        assert.match(stdout, new RegExp(`lowbit file v1: quantize ${bits}-bit, method exact, group 0, embeddings f16`));
        assert.match(stdout, new RegExp(`made from ${path.basename(fakeDir)} by lowbit `));
        const attention = 5 * (64 * (expectedRowBytes(format, 64) + 4) * 2 + 32 * (expectedRowBytes(format, 64) + 4) * 2);
        const mlp = 5 * (2 * 172 * (expectedRowBytes(format, 64) + 4) + 64 * (expectedRowBytes(format, 172) + 4));
        const line = stdout.split('\n').find((l) => l.trim().startsWith('bytes:'))!;
        const n = (x: number) => x.toLocaleString('en-US');
        assert.ok(line.includes(`attention ${n(attention)}, mlp ${n(mlp)}, embeddings ${n(512 * 64 * 2)}, head 0, norms ${n(11 * 64 * 4)}`), line);
        assert.ok(line.endsWith(`total ${n(fs.statSync(fakeFile).size)}`), line);
        assert.match(stdout, new RegExp(`model.layers.4.mlp.down_proj.weight: ${format}`));
      });

      it('loads and generates the greedy tokens of the fake-quantized checkpoint loaded directly (f32 activations)', async () => {
        // Where the file holds the checkpoint's weights exactly (f32 checkpoints; bf16 at 1 and 1.58 bits).
        for (const dtype of format === 'b1' || format === 't158' ? ['f32', 'bf16'] as const : ['f32'] as const) {
          const converted = await loadModel(fake[dtype].file, { activations: 'f32' });
          const direct = await loadModel(fake[dtype].dir, { activations: 'f32', detectGrids: false });
          try {
            assert.equal(converted.info.container, 'lowbit');
            assert.deepEqual(converted.info.formats, { f16: 1, [format]: 35 });
            assert.deepEqual(direct.info.formats, { f32: 36 });
            assert.deepEqual(await greedyTokens(converted, 40), await greedyTokens(direct, 40), dtype);
          } finally {
            converted.dispose();
            direct.dispose();
          }
        }
      });

      it('its logits match a float64 forward pass over its dequantized weights', async () => {
        const model = await loadModel(fakeFile, { activations: 'f32', kvCache: 'f32' });
        const reference = dequantizedSource(fakeFile);
        try {
          const ids = model.tokenize(PROMPT, { bos: true });
          const logits = await model.logits(ids);
          referenceLogits(reference, ids).forEach((row, p) => {
            row.forEach((v, i) => assert.ok(Math.abs(logits[p * 512 + i] - v) <= 1e-4 * (1 + Math.abs(v)), `position ${p}, logit ${i}`));
          });
        } finally {
          model.dispose();
        }
      });
    });
  }
});

describe('convert/quantize: float models, rtn and mse, --tensor-bits', function () {
  this.timeout(120_000);
  let dir: string;
  before(() => {
    dir = makeTempDir('quantize-float');
  });
  after(() => removeDir(dir));

  /** Sum of squared differences between the converted file's weights and the float model's. */
  function weightError(file: string): number {
    const float = openModel(STORIES);
    try {
      let sum = 0;
      for (const [name, { values }] of dequantizedWeights(file)) {
        const info = float.tensors.get(name)!;
        const source = dequantizeToF32(info.dtype, info.read(), values.length);
        for (let i = 0; i < values.length; i++) sum += (values[i] - source[i]) ** 2;
      }
      return sum;
    } finally {
      float.close();
    }
  }

  it('rtn and mse files load and generate; mse is closer to the float weights than rtn', async () => {
    const errors: Record<string, number> = {};
    for (const method of ['rtn', 'mse'] as const) {
      const file = path.join(dir, `${method}.lowbit`);
      const result = await quantizeModel(STORIES, file, { bits: 2, method });
      assert.deepEqual(result.recipe.weightsFrom, { float: 35 });
      errors[method] = weightError(file);
      const model = await loadModel(file);
      try {
        assert.deepEqual(model.info.formats, { f16: 1, b2: 35 });
        assert.deepEqual(model.info.tokenizer.eosIds, [2, 1], 'llama2.c models keep BOS as their stop id');
        const text = await model.complete(PROMPT, { temperature: 0, maxTokens: 20 });
        assert.ok(text.trim().length > 10, text);
      } finally {
        model.dispose();
      }
    }
    assert.ok(errors.mse < errors.rtn, JSON.stringify(errors));
  });

  it('--tensor-bits gives the matching layers their bits (first rule wins) and is recorded in the recipe', async () => {
    const file = path.join(dir, 'mixed.lowbit');
    const rules = 'layers.0.mlp.up=1,mlp.down=4,attn.*=3,mlp.gate=1.58';
    await quantizeModel(STORIES, file, { bits: 2, method: 'rtn', tensorBits: rules, embeddings: 'f32' });
    const model = await loadModel(file);
    try {
      const formats = model.info.tensorFormats;
      for (let l = 0; l < 5; l++) {
        for (const role of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) assert.equal(formats[`model.layers.${l}.self_attn.${role}.weight`], 'b3');
        assert.equal(formats[`model.layers.${l}.mlp.down_proj.weight`], 'b4');
        assert.equal(formats[`model.layers.${l}.mlp.gate_proj.weight`], 't158');
        assert.equal(formats[`model.layers.${l}.mlp.up_proj.weight`], l === 0 ? 'b1' : 'b2');
      }
      assert.equal(formats['model.embed_tokens.weight'], 'f32');
    } finally {
      model.dispose();
    }
    const { recipe } = describeLowbitFile(file);
    assert.deepEqual(recipe.tensorBits, [
      { pattern: 'layers.0.mlp.up', bits: 1 }, { pattern: 'mlp.down', bits: 4 }, { pattern: 'attn.*', bits: 3 }, { pattern: 'mlp.gate', bits: 1.58 },
    ]);
    assert.equal(recipe.embeddings, 'f32');
    await assert.rejects(quantizeModel(STORIES, file, { bits: 2, method: 'rtn', tensorBits: 'mlp.dwn=4' }),
      (e: unknown) => e instanceof RangeError && /matches linear layers|match linear layers/.test(e.message) && e.message.includes("'mlp.dwn=4'"));
  });

  it('exact refuses a float model, naming the tensor and the way out', async () => {
    const file = path.join(dir, 'exact.lowbit');
    await assert.rejects(quantizeModel(STORIES, file, { bits: 2 }),
      (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_OFF_GRID' &&
        /model\.layers\.0\.self_attn\.q_proj\.weight: it is not on the b2 grid/.test(e.message) && /--method rtn or mse/.test(e.message));
    assert.ok(!fs.existsSync(file), 'no file is left behind');
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('partial')), []);
  });

  it('an untied head identical to the embedding (MobileLLM checkpoints) is stored once, as a tied model', async () => {
    const folder = path.join(dir, 'untied');
    fs.mkdirSync(folder);
    const float = openModel(STORIES);
    try {
      const tensors = hfTensors(float);
      const embedding = tensors.find((t) => t.name === 'model.embed_tokens.weight')!;
      writeSafetensors(path.join(folder, 'model.safetensors'), [...tensors, { ...embedding, name: 'lm_head.weight' }]);
      fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(hfConfigJson({ ...float.config, tiedEmbeddings: false })));
    } finally {
      float.close();
    }
    const file = path.join(dir, 'untied.lowbit');
    const result = await quantizeModel(folder, file, { bits: 4, method: 'rtn', tokenizer: TOKENIZER });
    assert.match(String(result.recipe.head), /identical to the embedding/);
    const source = openModel(file);
    try {
      assert.equal(source.config.tiedEmbeddings, true);
      assert.equal(source.tensors.has('lm_head.weight'), false);
    } finally {
      source.close();
    }
  });

  it('reports progress after every stored tensor', async () => {
    const events: { done: number; total: number; name: string }[] = [];
    await quantizeModel(STORIES, path.join(dir, 'progress.lowbit'), { bits: 4, method: 'rtn', onProgress: (p) => events.push(p) });
    // 35 linear layers (packed + scales), 11 norms, the embedding, the tokenizer
    const total = 2 * 35 + 11 + 1 + 1;
    assert.equal(events.length, total);
    assert.deepEqual(events.map((e) => e.done), Array.from({ length: total }, (_, i) => i + 1));
    assert.ok(events.every((e) => e.total === total));
    assert.equal(events.at(-1)!.name, 'lowbit.tokenizer');
  });

  it('a lowbit file converts again (its packed weights are read back)', async () => {
    const first = path.join(dir, 'first.lowbit'), second = path.join(dir, 'second.lowbit');
    await quantizeModel(STORIES, first, { bits: 3, method: 'mse' });
    await quantizeModel(first, second, { bits: 3 });
    const a = dequantizedWeights(first), b = dequantizedWeights(second);
    for (const [name, { values }] of a) assert.deepEqual(b.get(name)!.values, values, name);
  });
});

describe('lowbit quantize (CLI)', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = makeTempDir('quantize-cli');
  });
  after(() => removeDir(dir));

  it('writes the file and one summary line on stderr (no progress bar when stderr is not a terminal)', async () => {
    const out = path.join(dir, 'cli.lowbit');
    const { code, stdout, stderr } = await runCli(['quantize', STORIES, out, '--bits', '1.58', '--method', 'rtn', '--threads', '1']);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, '');
    assert.match(stderr, /^\[lowbit\] wrote .*cli\.lowbit: [\d.]+ MiB .*linear layers 35 t158; method rtn; [\d.]+ s\n$/);
    const model = await loadModel(out);
    assert.deepEqual(model.info.formats, { f16: 1, t158: 35 });
    model.dispose();
  });

  const bad: [string, string[], RegExp][] = [
    ['no --bits', ['--method', 'rtn'], /^lowbit: quantize needs --bits 1\|1\.58\|2\|3\|4$/],
    ['--bits 5', ['--bits', '5'], /^lowbit: Expected one of 1, 1\.58, 2, 3, 4 for bits but received '5' of type string$/],
    ['--bits two', ['--bits', 'two'], /^lowbit: Expected one of 1, 1\.58, 2, 3, 4 for bits but received 'two' of type string$/],
    ['--method best', ['--bits', '2', '--method', 'best'], /^lowbit: Expected one of 'exact', 'rtn', 'mse' for method but received 'best'/],
    ['--group 33', ['--bits', '2', '--method', 'rtn', '--group', '33'], /^lowbit: Expected 0 or a multiple of 32 for group but received 33/],
    ['--embeddings bf8', ['--bits', '2', '--embeddings', 'bf8'], /^lowbit: Expected one of 'f16', 'f32' for embeddings/],
    ['--tensor-bits without =', ['--bits', '2', '--tensor-bits', 'mlp.down4'], /^lowbit: Expected rules PATTERN=BITS .* for tensorBits rule 1 but received 'mlp.down4'/],
    ['--tensor-bits 5 bits', ['--bits', '2', '--tensor-bits', 'mlp.down=5'], /^lowbit: Expected one of 1, 1\.58, 2, 3, 4 for the bits of tensorBits rule 'mlp.down'/],
    ['an unknown option', ['--bits', '2', '--frobnicate'], /^lowbit: Unknown option '--frobnicate'/],
    ['exact on a float model', ['--bits', '4'], /^lowbit: .*q_proj\.weight: it is not on the b4 grid .*use --method rtn or mse/],
  ];
  for (const [what, args, pattern] of bad) {
    it(`${what}: one clear line on stderr, exit code 1, no file`, async () => {
      const out = path.join(dir, 'bad.lowbit');
      const { code, stderr } = await runCli(['quantize', STORIES, out, ...args]);
      assert.equal(code, 1);
      assert.equal(stderr.split('\n').length, 2, stderr);  // one line and its newline
      assert.match(stderr.trimEnd(), pattern);
      assert.ok(!fs.existsSync(out));
    });
  }

  it('a missing input or a missing output path: one line, exit code 1', async () => {
    const missing = await runCli(['quantize', path.join(dir, 'nope.bin'), path.join(dir, 'x.lowbit'), '--bits', '2']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^lowbit: .*nope\.bin: cannot open: .*\n$/);
    const noOutput = await runCli(['quantize', STORIES, '--bits', '2']);
    assert.equal(noOutput.code, 1);
    assert.equal(noOutput.stderr, 'lowbit: quantize needs an input model and an output file, got 1 paths\n');
  });
});
