/**
 * An independent float64 Llama forward pass, written from the architecture's definition for tests:
 * RMSNorm, RoPE (interleaved or half pairs), grouped-query causal attention, SwiGLU. Weights are
 * read with the io readers' reference dequantizers, so it shares no code with the native runtime.
 */
import { dequantizeToF32 } from '../../lib/io/dtypes';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerTensorName, type LayerRole } from '../../lib/io/llama';
import type { ModelSource } from '../../lib/io/types';

function weights(source: ModelSource, name: string): Float64Array {
  const info = source.tensors.get(name);
  if (!info) throw new Error(`missing ${name}`);
  const count = info.shape.reduce((a, b) => a * b, 1);
  return Float64Array.from(dequantizeToF32(info.dtype, info.read(), count));
}

/** y (rows) = W (rows x cols) x */
function matvec(w: Float64Array, x: Float64Array, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += w[r * cols + j] * x[j];
    y[r] = s;
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * scale * w[i]);
}

/** Logits (vocab) of every position of `tokens`, in float64. */
export function referenceLogits(source: ModelSource, tokens: readonly number[]): Float64Array[] {
  const c = source.config;
  const hd = c.headDim, qDim = c.nHeads * hd, kvDim = c.nKvHeads * hd, group = c.nHeads / c.nKvHeads;
  const embed = weights(source, EMBED_TOKENS);
  const output = source.tensors.has(LM_HEAD) ? weights(source, LM_HEAD) : embed;
  const finalNorm = weights(source, FINAL_NORM);
  const layer = (l: number, role: LayerRole) => weights(source, layerTensorName(l, role));
  const layers = Array.from({ length: c.nLayers }, (_, l) => ({
    attnNorm: layer(l, 'input_layernorm'), ffnNorm: layer(l, 'post_attention_layernorm'),
    q: layer(l, 'self_attn.q_proj'), k: layer(l, 'self_attn.k_proj'), v: layer(l, 'self_attn.v_proj'),
    o: layer(l, 'self_attn.o_proj'), gate: layer(l, 'mlp.gate_proj'), up: layer(l, 'mlp.up_proj'), down: layer(l, 'mlp.down_proj'),
  }));
  // Inverse frequencies, with Meta's Llama-3 scaling (apply_scaling in their reference code).
  const freqs = Array.from({ length: hd / 2 }, (_, i) => {
    const f = 1 / Math.pow(c.ropeTheta, (2 * i) / hd), s = c.ropeScaling;
    if (!s) return f;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < s.originalMaxPositions / s.highFreqFactor) return f;
    if (wavelen > s.originalMaxPositions / s.lowFreqFactor) return f / s.factor;
    const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
  const rotate = (v: Float64Array, heads: number, pos: number) => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < hd / 2; i++) {
        const angle = pos * freqs[i];
        const [a, b] = c.ropeStyle === 'interleaved' ? [h * hd + 2 * i, h * hd + 2 * i + 1] : [h * hd + i, h * hd + i + hd / 2];
        const x0 = v[a], x1 = v[b];
        v[a] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
        v[b] = x0 * Math.sin(angle) + x1 * Math.cos(angle);
      }
    }
  };
  const keys: Float64Array[][] = layers.map(() => []), values: Float64Array[][] = layers.map(() => []);
  const logits: Float64Array[] = [];
  tokens.forEach((token, pos) => {
    let x = embed.slice(token * c.dim, (token + 1) * c.dim);
    layers.forEach((w, l) => {
      const xb = rmsnorm(x, w.attnNorm, c.normEps);
      const q = matvec(w.q, xb, qDim, c.dim), k = matvec(w.k, xb, kvDim, c.dim), v = matvec(w.v, xb, kvDim, c.dim);
      rotate(q, c.nHeads, pos);
      rotate(k, c.nKvHeads, pos);
      keys[l].push(k);
      values[l].push(v);
      const att = new Float64Array(qDim);
      for (let h = 0; h < c.nHeads; h++) {
        const kvh = Math.floor(h / group);
        const scores = keys[l].map((kp) => {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[h * hd + i] * kp[kvh * hd + i];
          return s / Math.sqrt(hd);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        values[l].forEach((vp, p) => {
          for (let i = 0; i < hd; i++) att[h * hd + i] += (e[p] / sum) * vp[kvh * hd + i];
        });
      }
      const o = matvec(w.o, att, c.dim, qDim);
      x = x.map((xi, i) => xi + o[i]);
      const xf = rmsnorm(x, w.ffnNorm, c.normEps);
      const g = matvec(w.gate, xf, c.hiddenDim, c.dim), u = matvec(w.up, xf, c.hiddenDim, c.dim);
      const hdn = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]);
      const down = matvec(w.down, hdn, c.dim, c.hiddenDim);
      x = x.map((xi, i) => xi + down[i]);
    });
    logits.push(matvec(output, rmsnorm(x, finalNorm, c.normEps), c.vocabSize, c.dim));
  });
  return logits;
}
