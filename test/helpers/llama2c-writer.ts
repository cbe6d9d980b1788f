/**
 * Test-only writer of llama2.c checkpoints from a float32 ModelSource: the legacy export (7 × int32
 * header, run.c's order, freq_cis tables) or export.py's "version 1" (256-byte header, its order).
 */
import * as fs from 'node:fs';
import { ByteWriter } from '../../lib/io/byte-writer';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, type LayerRole, layerTensorName } from '../../lib/io/llama';
import { LLAMA2C_MAGIC } from '../../lib/io/llama2c';
import type { ModelSource } from '../../lib/io/types';
import { f32Bytes } from './quantize';

/** Writes `model` (f32 tensors, interleaved q/k) as a llama2.c file. */
export function writeLlama2c(path: string, model: ModelSource, version: 0 | 1): void {
  const c = model.config;
  const out = new ByteWriter();
  const shared = c.tiedEmbeddings;
  const layers = (role: LayerRole) => {
    for (let layer = 0; layer < c.nLayers; layer++) out.raw(tensor(layerTensorName(layer, role)));
  };
  const tensor = (name: string) => {
    const info = model.tensors.get(name);
    if (info === undefined || info.dtype !== 'f32') throw new RangeError(`${name} must be an f32 tensor`);
    return info.read();
  };
  const sizes = [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads];
  if (version === 0) {
    for (const n of [...sizes, shared ? c.vocabSize : -c.vocabSize, c.maxSeqLen]) out.i32(n);
    out.raw(tensor(EMBED_TOKENS));
    layers('input_layernorm');
    layers('self_attn.q_proj');
    layers('self_attn.k_proj');
    layers('self_attn.v_proj');
    layers('self_attn.o_proj');
    layers('post_attention_layernorm');
    layers('mlp.gate_proj');
    layers('mlp.down_proj');
    layers('mlp.up_proj');
    out.raw(tensor(FINAL_NORM));
    // freq_cis_real and freq_cis_imag as export.py writes them: cos/sin of pos · theta^(-2i/headDim).
    for (const trig of [Math.cos, Math.sin]) {
      const values: number[] = [];
      for (let pos = 0; pos < c.maxSeqLen; pos++) {
        for (let i = 0; i < c.headDim / 2; i++) values.push(trig(pos * c.ropeTheta ** ((-2 * i) / c.headDim)));
      }
      out.raw(f32Bytes(values));
    }
  } else {
    out.u32(LLAMA2C_MAGIC).i32(1);
    for (const n of [...sizes, c.vocabSize, c.maxSeqLen]) out.i32(n);
    out.u8(shared ? 1 : 0).padTo(256);
    layers('input_layernorm');
    layers('post_attention_layernorm');
    out.raw(tensor(FINAL_NORM));
    out.raw(tensor(EMBED_TOKENS));
    layers('self_attn.q_proj');
    layers('self_attn.k_proj');
    layers('self_attn.v_proj');
    layers('self_attn.o_proj');
    layers('mlp.gate_proj');
    layers('mlp.down_proj');
    layers('mlp.up_proj');
  }
  if (!shared) out.raw(tensor(LM_HEAD));
  fs.writeFileSync(path, out.bytes());
}
