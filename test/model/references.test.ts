// The runtime against independent references: llama2.c's run.c greedy outputs for every bundled
// model (from the llama2.c file, the GGUF file, a Hugging Face safetensors folder and a
// pytorch_model.bin folder of the same weights), and a float64 forward pass written in the test.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadModel, type LowbitModel } from '../../lib';
import { openModel } from '../../lib/io';
import type { ModelSource } from '../../lib/io/types';
import { writeHfModel } from '../helpers/convert';
import { type Reference, makeTempDir, modelPath, readReferences, removeDir } from '../helpers/models';
import { referenceLogits } from '../helpers/reference-forward';

const REFERENCES = readReferences();

/** Greedy generation as run.c does it: from the prompt tokens until BOS or maxPositions. */
async function greedy(model: LowbitModel, ref: Reference) {
  const generation = model.generate(ref.promptTokens, { temperature: 0, maxTokens: ref.maxPositions - ref.promptTokens.length + 1 });
  const ids: number[] = [];
  for await (const chunk of generation) ids.push(...chunk.tokens);
  return { ids, text: generation.text, stats: generation.stats! };
}

function expectReference(got: Awaited<ReturnType<typeof greedy>>, ref: Reference) {
  // run.c's last sampled id is the BOS that stopped it; lowbit stops on it without emitting it.
  const want = ref.stoppedOnBos ? ref.generatedTokens.slice(0, -1) : ref.generatedTokens;
  assert.deepEqual(got.ids, want);
  assert.equal(got.text, ref.continuation);
  assert.equal(got.stats.finishReason, ref.stoppedOnBos ? 'eos' : 'length');
}

/** Writes the model's weights as a Hugging Face folder with its SentencePiece tokenizer. */
function writeHfFolder(source: ModelSource, ref: Reference, format: 'safetensors' | 'pytorch', dir: string) {
  writeHfModel(source, dir, { format });
  const spModel = modelPath(ref.tokenizer.replace(/\.bin$/, '.model'));
  fs.copyFileSync(spModel, path.join(dir, 'tokenizer.model'));
}

describe('model: reference generations', () => {
  for (const ref of REFERENCES) {
    describe(ref.model, () => {
      it('llama2.c file reproduces run.c token for token', async () => {
        await using model = await loadModel(modelPath(ref.model), { tokenizer: modelPath(ref.tokenizer) });
        assert.deepEqual(model.tokenize(ref.prompt, { bos: true }), ref.promptTokens);
        expectReference(await greedy(model, ref), ref);
      });

      it('GGUF file with the same weights gives the same tokens', async () => {
        // llama.cpp's converter records a 128-position context; the reference runs 200 positions.
        await using model = await loadModel(modelPath(ref.sameWeightsGguf), { contextLength: ref.maxPositions });
        assert.equal(model.info.container, 'gguf');
        expectReference(await greedy(model, ref), ref);
      });

      for (const format of ['safetensors', 'pytorch'] as const) {
        it(`Hugging Face ${format} folder (rotate_half layout) gives the same tokens`, async function () {
          if (!fs.existsSync(modelPath(ref.tokenizer.replace(/\.bin$/, '.model')))) this.skip();
          const dir = makeTempDir(`hf-${format}`);
          try {
            const source = openModel(modelPath(ref.model), { tokenizer: modelPath(ref.tokenizer) });
            try {
              writeHfFolder(source, ref, format, dir);
            } finally {
              source.close();
            }
            await using model = await loadModel(dir);
            assert.equal(model.info.config.ropeStyle, 'half');
            expectReference(await greedy(model, ref), ref);
          } finally {
            removeDir(dir);
          }
        });
      }
    });
  }
});

/** max |a - b| / max |b| over one position's logits. */
function relativeError(got: Float32Array, want: Float64Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}

async function expectLogitsMatch(file: string, tokens: number[], options: Parameters<typeof loadModel>[1] = {}) {
  const source = openModel(file, { tokenizer: options.tokenizer });
  let want: Float64Array[];
  try {
    want = referenceLogits(source, tokens);
  } finally {
    source.close();
  }
  await using model = await loadModel(file, { ...options, activations: 'f32', kvCache: 'f32' });
  const got = await model.logits(tokens);
  const vocab = model.info.config.vocabSize;
  for (let p = 0; p < tokens.length; p++) {
    const err = relativeError(got.subarray(p * vocab, (p + 1) * vocab), want[p]);
    assert.ok(err <= 1e-4, `position ${p}: relative error ${err}`);
  }
  return model.info;
}

describe('model: logits against a float64 forward pass', () => {
  const tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376];

  it('stories260K (f32 weights)', async () => {
    await expectLogitsMatch(modelPath('stories260K/stories260K.bin'), tokens, { tokenizer: modelPath('stories260K/tok512.bin') });
  });

  it('llama2xs Q4_0 GGUF: Q4_0 becomes b4 with groups of 32, exactly', async () => {
    const info = await expectLogitsMatch(modelPath('llama2xs/llama2xs-Q4_0.gguf'), tokens);
    assert.equal(info.tensorFormats['model.layers.0.mlp.down_proj.weight'], 'b4');
  });

  it('babyllama Q8_0 GGUF', async () => {
    await expectLogitsMatch(modelPath('babyllama-tok105/babyllama-tok105-Q8_0.gguf'), [1, 20, 31, 42, 7, 9]);
  });

  it('heads of 64 (grouped-query, 2 query heads per kv head), prefill in several attention blocks', async () => {
    // tiny-256: head_dim 64, the width the attention kernels keep in registers; 10 tokens span
    // two blocks of queries with different causal limits.
    const { synthModel } = await import('../../lib/convert/synth');
    const { exportGguf } = await import('../../lib/convert/gguf-export');
    const dir = makeTempDir('attention-64');
    try {
      // As Q4_0 GGUF, which the float64 reference reads.
      const lowbit = path.join(dir, 'tiny.lowbit'), file = path.join(dir, 'tiny.gguf');
      await synthModel(lowbit, { shape: 'tiny-256', bits: 4, seed: 7 });
      exportGguf(lowbit, file, { linear: 'q4_0', vocabulary: modelPath('stories260K/stories260K-f32.gguf') });
      const info = await expectLogitsMatch(file, tokens);
      assert.equal(info.config.headDim, 64);
    } finally {
      removeDir(dir);
    }
  });

  it('Llama-3 RoPE scaling as GGUF rope_freqs factors (what llama.cpp writes) gives the same logits', async () => {
    const { readGgufHeader, FileSource, writeGguf } = await import('../../lib/io');
    const scaling = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 32 };
    // llama.cpp's converter: each pair's frequency divisor from Meta's apply_scaling.
    const headDim = 8, theta = 10000;
    const factors = Float32Array.from({ length: headDim / 2 }, (_, i) => {
      const wavelen = 2 * Math.PI * Math.pow(theta, (2 * i) / headDim);
      if (wavelen < scaling.originalMaxPositions / scaling.highFreqFactor) return 1;
      if (wavelen > scaling.originalMaxPositions / scaling.lowFreqFactor) return scaling.factor;
      const smooth = (scaling.originalMaxPositions / wavelen - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
      return 1 / ((1 - smooth) / scaling.factor + smooth);
    });
    const dir = makeTempDir('rope-freqs');
    try {
      const file = modelPath('stories260K/stories260K-f32.gguf');
      const source = FileSource.open(file);
      let header;
      try {
        header = readGgufHeader(source);
      } finally {
        source.close();
      }
      const bytes = fs.readFileSync(file);
      const gguf = path.join(dir, 'scaled.gguf');
      const { ggufTyped } = await import('../../lib/io');
      writeGguf(gguf, [...header.metadata].map(([k, v]) => [k, ggufTyped(header.types.get(k)!, v)] as const), [
        ...header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: bytes.subarray(t.offset, t.offset + t.byteLength) })),
        { name: 'rope_freqs.weight', dtype: 'f32' as const, shape: [headDim / 2], data: new Uint8Array(factors.buffer) },
      ]);
      const reference = openModel(modelPath('stories260K/stories260K.bin'), { tokenizer: modelPath('stories260K/tok512.bin') });
      let want: Float64Array[];
      try {
        want = referenceLogits({ ...reference, config: { ...reference.config, ropeScaling: scaling } } as ModelSource, tokens);
      } finally {
        reference.close();
      }
      await using model = await loadModel(gguf, { activations: 'f32', kvCache: 'f32' });
      const got = await model.logits(tokens);
      const vocab = model.info.config.vocabSize;
      for (let p = 0; p < tokens.length; p++) {
        const err = relativeError(got.subarray(p * vocab, (p + 1) * vocab), want[p]);
        assert.ok(err <= 1e-4, `position ${p}: relative error ${err}`);
      }
    } finally {
      removeDir(dir);
    }
  });

  it('Llama-3 RoPE scaling in a Hugging Face folder', async () => {
    const dir = makeTempDir('rope-scaling');
    try {
      const source = openModel(modelPath('stories260K/stories260K.bin'), { tokenizer: modelPath('stories260K/tok512.bin') });
      try {
        const scaled = { ...source, config: { ...source.config, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 32 } } };
        writeHfModel(scaled as ModelSource, dir, { format: 'safetensors' });
      } finally {
        source.close();
      }
      fs.copyFileSync(modelPath('stories260K/tok512.model'), path.join(dir, 'tokenizer.model'));
      const info = await expectLogitsMatch(dir, tokens);
      assert.equal(info.config.ropeScaling?.factor, 8);
    } finally {
      removeDir(dir);
    }
  });
});
