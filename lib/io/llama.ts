/**
 * Canonical Llama tensor names (Hugging Face's), the shape each must have for a config, and the
 * checks every reader runs on the config and tensor set it produces.
 */
import { LowbitFormatError } from '../errors';
import type { LlamaConfig, RopeStyle, TensorInfo } from './types';

/** Token embedding, `[vocab, dim]`. */
export const EMBED_TOKENS = 'model.embed_tokens.weight';
/** Final RMSNorm weight, `[dim]`. */
export const FINAL_NORM = 'model.norm.weight';
/** Output projection, `[vocab, dim]`; absent when the embeddings are tied. */
export const LM_HEAD = 'lm_head.weight';

/** The per-layer tensors of a Llama block, by their Hugging Face suffix. */
export const LAYER_ROLES = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
  'input_layernorm',
  'post_attention_layernorm',
] as const;
/** A per-layer tensor role, e.g. `self_attn.q_proj`. */
export type LayerRole = (typeof LAYER_ROLES)[number];

/** `model.layers.{layer}.{role}.weight`. */
export function layerTensorName(layer: number, role: LayerRole): string {
  return `model.layers.${layer}.${role}.weight`;
}

/** Shape of a per-layer tensor, `[out, in]` for projections. */
function layerShape(config: LlamaConfig, role: LayerRole): number[] {
  const qDim = config.nHeads * config.headDim;
  const kvDim = config.nKvHeads * config.headDim;
  const shapes: Record<LayerRole, number[]> = {
    'self_attn.q_proj': [qDim, config.dim],
    'self_attn.k_proj': [kvDim, config.dim],
    'self_attn.v_proj': [kvDim, config.dim],
    'self_attn.o_proj': [config.dim, qDim],
    'mlp.gate_proj': [config.hiddenDim, config.dim],
    'mlp.up_proj': [config.hiddenDim, config.dim],
    'mlp.down_proj': [config.dim, config.hiddenDim],
    input_layernorm: [config.dim],
    post_attention_layernorm: [config.dim],
  };
  return shapes[role];
}

/** Every canonical tensor a model with `config` has, with its shape (no `lm_head` when tied). */
export function canonicalShapes(config: LlamaConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>([[EMBED_TOKENS, [config.vocabSize, config.dim]]]);
  for (let layer = 0; layer < config.nLayers; layer++) {
    for (const role of LAYER_ROLES) shapes.set(layerTensorName(layer, role), layerShape(config, role));
  }
  shapes.set(FINAL_NORM, [config.dim]);
  if (!config.tiedEmbeddings) shapes.set(LM_HEAD, [config.vocabSize, config.dim]);
  return shapes;
}

/**
 * Row order that moves a q/k projection between RoPE layouts: row r of the result is row
 * `order[r]` of the input. Hugging Face's converter permutes Meta's interleaved pairs (2i, 2i+1)
 * of each head to (i, i + half) (`permute(w, n_heads)`: head row 2i + t goes to t * half + i);
 * `to: 'interleaved'` undoes it.
 */
export function ropeRowOrder(rows: number, nHeads: number, to: RopeStyle): Int32Array {
  const headRows = rows / nHeads, half = headRows / 2;
  if (!Number.isInteger(headRows) || headRows % 2 !== 0) throw new RangeError(`cannot split ${rows} rows into ${nHeads} heads of pairs`);
  const order = new Int32Array(rows);
  for (let head = 0; head < nHeads; head++) {
    for (let i = 0; i < half; i++) {
      for (let t = 0; t < 2; t++) {
        const interleaved = head * headRows + 2 * i + t, rotateHalf = head * headRows + t * half + i;
        if (to === 'half') order[rotateHalf] = interleaved;
        else order[interleaved] = rotateHalf;
      }
    }
  }
  return order;
}

/** Rejects configs no Llama forward pass can run (non-positive sizes, heads that do not group). */
export function checkLlamaConfig(file: string, config: LlamaConfig): void {
  const counts: (keyof LlamaConfig)[] = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'headDim', 'vocabSize', 'maxSeqLen'];
  for (const key of counts) {
    const value = config[key];
    if (!(typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value < 2 ** 31)) {
      throw new LowbitFormatError(file, `${key} must be a positive integer, got ${String(value)}`, key);
    }
  }
  if (config.nHeads % config.nKvHeads !== 0) {
    throw new LowbitFormatError(file, `${config.nHeads} heads cannot share ${config.nKvHeads} kv heads`, 'nKvHeads');
  }
  if (config.headDim % 2 !== 0) throw new LowbitFormatError(file, `RoPE needs an even head size, got ${config.headDim}`, 'headDim');
  for (const key of ['normEps', 'ropeTheta'] as const) {
    if (!(Number.isFinite(config[key]) && config[key] > 0)) {
      throw new LowbitFormatError(file, `${key} must be a positive number, got ${config[key]}`, key);
    }
  }
  const scaling = config.ropeScaling;
  if (scaling !== undefined) {
    for (const [key, value] of Object.entries(scaling)) {
      if (!(Number.isFinite(value) && value > 0)) throw new LowbitFormatError(file, `must be a positive number, got ${value}`, `ropeScaling.${key}`);
    }
  }
}

/**
 * Checks that every canonical tensor of `config` is present with its exact shape (`lm_head` only
 * when untied). Other tensors (e.g. ParetoQ's `weight_clip_val`) are allowed through.
 */
export function checkLlamaTensors(file: string, config: LlamaConfig, tensors: ReadonlyMap<string, TensorInfo>): void {
  for (const [name, shape] of canonicalShapes(config)) {
    const tensor = tensors.get(name);
    if (tensor === undefined) throw new LowbitFormatError(file, 'missing tensor', name);
    if (tensor.shape.length !== shape.length || tensor.shape.some((n, i) => n !== shape[i])) {
      throw new LowbitFormatError(file, `shape [${tensor.shape.join(', ')}] should be [${shape.join(', ')}]`, name);
    }
  }
  if (config.tiedEmbeddings && tensors.has(LM_HEAD)) {
    throw new LowbitFormatError(file, 'present although the embeddings are declared tied', LM_HEAD);
  }
}

/** The shortest decimal that rounds to the same float32 (GGUF stores 1e-5 as 9.99999974e-6). */
export function shortestF32Decimal(value: number): number {
  const target = Math.fround(value);
  if (!Number.isFinite(target) || target === 0) return target;
  for (let digits = 1; digits < 17; digits++) {
    const candidate = Number(target.toPrecision(digits));
    if (Math.fround(candidate) === target) return candidate;
  }
  return target;
}
