/**
 * ParetoQ-style checkpoints for tests, made from a bundled float model with the paper's forward
 * quantizers written out again from facebookresearch/ParetoQ models/utils_quant.py (independently
 * of lib/convert/paretoq.ts): each elementwise torch op in float32, its result stored in the
 * tensor's dtype. Two kinds, as research notes A4 describe them:
 * - `fake-quantized`: every tensor in the dtype (bf16, like the released checkpoints), each linear
 *   row holding only the values alpha * level;
 * - `latent`: latent weights plus `<proj>.weight_clip_val` [out, 1] (what the training code saves).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LAYER_ROLES, layerTensorName } from '../../lib/io/llama';
import { writeSafetensors } from '../../lib/io/safetensors-writer';
import type { ModelSource } from '../../lib/io/types';
import { type HfTensor, hfConfigJson, hfTensors } from './convert';
import { seededRandom } from './env';
import { writePytorchCheckpoint } from './pytorch-writer';

export const PARETOQ_BITS = [1, 1.58, 2, 3, 4] as const;
export type ParetoqBits = (typeof PARETOQ_BITS)[number];
export type CheckpointDtype = 'bf16' | 'f32';

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** bf16 bits of a float32 value: round to nearest even on the upper 16 bits. */
export function bf16Bits(value: number): number {
  scratch[0] = value;
  const u = scratchBits[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBf16Bits(bits: number): number {
  scratchBits[0] = bits << 16;
  return scratch[0];
}

/** A float32 op result as a tensor of `dtype` stores it. */
export function stored(value: number, dtype: CheckpointDtype): number {
  const f = Math.fround(value);
  return dtype === 'f32' ? f : fromBf16Bits(bf16Bits(f));
}

/** torch.round: halves go to the even neighbour. */
function torchRound(x: number): number {
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
}

/** The forward pass of QuantizeLinear for one weight (ParetoQ's w_bits: 0 = 1.58, 1, 2, 3, 4). */
export function paretoqForward(bits: ParetoqBits, w: number, alphaIn: number, dtype: CheckpointDtype): number {
  const R = (x: number) => stored(x, dtype);
  const eps = R(0.00001);
  const alpha = alphaIn > eps ? alphaIn : eps; // torch.where(alpha > eps, alpha, eps)
  if (bits === 1) return R(Math.sign(w) * alpha); // LsqBinaryTernaryExtension: input.sign() * alpha
  if (bits === 3 || bits === 4) {
    const Qn = -(2 ** (bits - 1)), Qp = 2 ** (bits - 1) - 1;
    const q = Math.min(Math.max(torchRound(R(w / alpha)), Qn), Qp); // (input / alpha).round().clamp(Qn, Qp)
    return R(q * alpha);
  }
  // StretchedElasticQuant: w_bits 0 (ternary) has n_levels 1.5, shift 0; w_bits 2 has 2 and 0.5.
  const nLevels = bits === 1.58 ? 1.5 : 2;
  const shift = bits === 1.58 ? 0 : 0.5;
  const clipVal = R(1 - 1e-2);
  const clamped = Math.min(Math.max(R(w / alpha), -clipVal), clipVal);
  const rounded = torchRound(R(R(clamped * nLevels) - shift));
  const qw = R(R(rounded + shift) / nLevels);
  return R(qw * alpha);
}

/** ParetoQ's initial row scale (train.py, research notes A2 table), times a spread of learned values. */
function initialAlpha(bits: ParetoqBits, row: ArrayLike<number>, jitter: number): number {
  let max = 0, sum = 0;
  for (let i = 0; i < row.length; i++) {
    max = Math.max(max, Math.abs(row[i]));
    sum += Math.abs(row[i]);
  }
  const init = bits === 1 ? sum / row.length : bits === 3 ? max / 3 : bits === 4 ? max / 7 : max;
  return init * jitter;
}

const LINEAR_ROLES = LAYER_ROLES.filter((role) => role.includes('proj'));

function linearNames(source: ModelSource): Set<string> {
  const names = new Set<string>();
  for (let l = 0; l < source.config.nLayers; l++) for (const role of LINEAR_ROLES) names.add(layerTensorName(l, role));
  return names;
}

function floatsOf(tensor: HfTensor): Float32Array {
  if (tensor.dtype !== 'f32') throw new Error(`${tensor.name}: expected an f32 source`);
  return new Float32Array(tensor.data.slice().buffer);
}

function encode(values: ArrayLike<number>, dtype: CheckpointDtype): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(Float32Array.from(values).buffer);
  return new Uint8Array(Uint16Array.from(values as number[], bf16Bits).buffer);
}

/** A checkpoint in HF layout (q/k permuted) made from the f32 model `source`. */
export interface ParetoqCheckpoint {
  readonly tensors: HfTensor[];
  /** Per linear weight: the latent weights and alphas as stored (both kinds), and the fake-quantized values. */
  readonly linears: Map<string, { latent: Float32Array; alphas: Float32Array; fake: Float32Array; rows: number; cols: number }>;
}

export function paretoqCheckpoint(source: ModelSource, bits: ParetoqBits, kind: 'fake-quantized' | 'latent',
  dtype: CheckpointDtype, seed: number): ParetoqCheckpoint {
  const random = seededRandom(seed);
  const linear = linearNames(source);
  const linears: ParetoqCheckpoint['linears'] = new Map();
  const tensors: HfTensor[] = [];
  for (const tensor of hfTensors(source)) {
    const values = floatsOf(tensor);
    const latent = Float32Array.from(values, (v) => stored(v, dtype));
    if (!linear.has(tensor.name)) {
      tensors.push({ ...tensor, dtype, data: encode(latent, dtype) });
      continue;
    }
    const [rows, cols] = tensor.shape;
    const alphas = new Float32Array(rows), fake = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      // Learned scales end up around the initial one: 0.7x .. 1.1x exercises the clamps too.
      alphas[r] = stored(initialAlpha(bits, latent.subarray(r * cols, (r + 1) * cols), 0.7 + 0.4 * random.uniform()), dtype);
      for (let j = r * cols; j < (r + 1) * cols; j++) fake[j] = paretoqForward(bits, latent[j], alphas[r], dtype);
    }
    linears.set(tensor.name, { latent, alphas, fake, rows, cols });
    if (kind === 'fake-quantized') {
      tensors.push({ ...tensor, dtype, data: encode(fake, dtype) });
    } else {
      tensors.push({ ...tensor, dtype, data: encode(latent, dtype) });
      tensors.push({ name: `${tensor.name}_clip_val`, dtype, shape: [rows, 1], data: encode(alphas, dtype) });
    }
  }
  return { tensors, linears };
}

/**
 * Writes a checkpoint as a HF folder: config.json (with ParetoQ's `w_bits` when given: 0 is
 * ternary), the weights, and `tokenizer` as tokenizer.model when given.
 */
export function writeParetoqFolder(dir: string, source: ModelSource, checkpoint: ParetoqCheckpoint,
  format: 'safetensors' | 'pytorch', tokenizer?: string, wBits?: number): string {
  fs.mkdirSync(dir, { recursive: true });
  const config = { ...hfConfigJson(source.config, source), ...(wBits !== undefined && { w_bits: wBits }) };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const weights = path.join(dir, format === 'safetensors' ? 'model.safetensors' : 'pytorch_model.bin');
  if (format === 'safetensors') writeSafetensors(weights, checkpoint.tensors, { format: 'pt' });
  else writePytorchCheckpoint(weights, checkpoint.tensors);
  if (tokenizer) fs.copyFileSync(tokenizer, path.join(dir, 'tokenizer.model'));
  return weights;
}
