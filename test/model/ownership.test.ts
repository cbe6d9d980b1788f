/**
 * A native model takes the tensors it is built from: it copies the small ones into its arena and
 * interleaves in place, so it must own their storage. Their JS handles are disposed once it is
 * built (a handle used twice, as SHARP shares a layer's weight, is consumed once). The copy itself
 * is checked bit for bit by native/tests/test-model.cpp.
 */
import { strict as assert } from 'node:assert';

import { type AddonQTensor, binding } from '../../lib/native';

const dim = 64, hidden = 128, vocab = 48, heads = 2;

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 30 - 1;
  });
}

function build(seed: number) {
  const q = (rows: number, cols: number, format: 'f32' | 'b2' | 'b4', k: number): AddonQTensor => {
    const w = random(rows * cols, seed + k);
    if (format === 'f32') return binding().AddonQTensor.fromPacked('f32', rows, cols, 0, new Uint8Array(w.buffer), null);
    return binding().AddonQTensor.quantize(w, rows, cols, format, 'rtn', 0, 'f32', 1);
  };
  const shared = q(hidden, dim, 'b2', 5);
  const layer = {
    attnNorm: new Float32Array(dim).fill(1), ffnNorm: new Float32Array(dim).fill(1),
    wq: q(dim, dim, 'b4', 1), wk: q(dim, dim, 'b2', 2), wv: q(dim, dim, 'b2', 3), wo: q(dim, dim, 'b4', 4),
    gate: shared, up: shared, down: q(dim, hidden, 'b2', 6),
  };
  const weights = { embedding: q(vocab, dim, 'f32', 7), output: q(vocab, dim, 'f32', 8), finalNorm: new Float32Array(dim).fill(1), layers: [layer] };
  const config = {
    dim, hiddenDim: hidden, nLayers: 1, nHeads: heads, nKvHeads: heads, headDim: dim / heads, vocabSize: vocab,
    maxSeqLen: 64, normEps: 1e-5, ropeTheta: 10000, ropeStyle: 'interleaved' as const,
  };
  return { weights, config, handles: [layer.wq, layer.wk, layer.wv, layer.wo, shared, layer.down, weights.embedding, weights.output] };
}

async function logits(seed: number): Promise<{ values: Float32Array; handles: AddonQTensor[] }> {
  const { weights, config, handles } = build(seed);
  const model = new (binding().AddonModel)(config, weights, 'int8');
  const context = new (binding().AddonContext)(model, 64, 'f32', 2);
  try {
    return { values: (await context.eval(Int32Array.from([1, 7, 3]), 'last'))!, handles };
  } finally {
    context.dispose();
    model.dispose();
  }
}

describe('model: a native model owns its tensors', () => {
  it('disposes the handles it was built from, shared ones included, and computes with their storage', async () => {
    const { values, handles } = await logits(11);
    for (const t of handles) assert.throws(() => t.info(), (e: Error & { code?: string }) => e.code === 'LOWBIT_DISPOSED');
    assert.equal(values.length, vocab);
    assert.ok(values.every(Number.isFinite) && values.some((v) => v !== 0));
  });
});
