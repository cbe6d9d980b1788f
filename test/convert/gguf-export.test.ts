// GGUF export for the peer benchmark: the exported file computes the same function as the lowbit
// file (b4 -> Q4_0, t158 -> TQ2_0 / TQ1_0 exactly; anything -> F16), checked by loading both.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';

import { loadModel } from '../../lib';
import { exportGguf, type GgufLinearType } from '../../lib/convert/gguf-export';
import { synthModel } from '../../lib/convert/synth';
import { openModel } from '../../lib/io';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const VOCABULARY = modelPath('stories260K/stories260K-f32.gguf');  // tok512's pieces as GGUF metadata

async function sameLogits(a: string, b: string, tolerance: number) {
  const tokens = [1, 403, 407, 261, 378, 300, 12];
  await using ma = await loadModel(a, { activations: 'f32' });
  await using mb = await loadModel(b, { activations: 'f32' });
  const la = await ma.logits(tokens), lb = await mb.logits(tokens);
  let diff = 0, scale = 0;
  for (let i = 0; i < la.length; i++) {
    diff = Math.max(diff, Math.abs(la[i] - lb[i]));
    scale = Math.max(scale, Math.abs(la[i]));
  }
  assert.ok(diff <= tolerance * scale, `logits differ by ${diff} (scale ${scale})`);
}

describe('convert/gguf-export', () => {
  let dir: string;
  before(() => (dir = makeTempDir('gguf-export')));
  after(() => removeDir(dir));

  // An f16 export of b2 weights loads as b2 again: lowbit finds the grid in the f16 values.
  const cases: [number, GgufLinearType, string][] = [[4, 'q4_0', 'b4'], [1.58, 'tq2_0', 't158'], [1.58, 'tq1_0', 't158'], [2, 'f16', 'b2']];
  for (const [bits, type, loaded] of cases) {
    it(`${bits}-bit weights as ${type} compute the same function`, async () => {
      const lowbit = path.join(dir, `m${bits}.lowbit`), gguf = path.join(dir, `m${bits}-${type}.gguf`);
      await synthModel(lowbit, { shape: 'tiny-256', bits, seed: 5 });
      exportGguf(lowbit, gguf, { linear: type, vocabulary: VOCABULARY });
      const source = openModel(gguf);
      try {
        assert.equal(source.tensors.get('model.layers.0.mlp.down_proj.weight')!.dtype, type);
        assert.equal(source.config.ropeStyle, 'interleaved');  // q/k rows were re-paired
      } finally {
        source.close();
      }
      await using model = await loadModel(gguf);
      assert.equal(model.info.tensorFormats['model.layers.1.self_attn.q_proj.weight'], loaded);
      // Block types hold the codes and f16 scales exactly; F16 rounds weights like d * 1.5 (12 bits).
      await sameLogits(lowbit, gguf, type === 'f16' ? 2e-3 : 1e-4);
    });
  }

  it('refuses a format with no exact block form', async () => {
    const lowbit = path.join(dir, 'b2.lowbit');
    await synthModel(lowbit, { shape: 'tiny-256', bits: 2, seed: 5 });
    assert.throws(() => exportGguf(lowbit, path.join(dir, 'x.gguf'), { linear: 'q4_0', vocabulary: VOCABULARY }), /b2 \(group 0, 256 columns\) has no exact q4_0 form/);
  });
});
