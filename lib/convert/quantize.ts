/**
 * The quantize pipeline (`lowbit quantize`): any model lowbit reads becomes one lowbit file
 * (docs/FORMAT.md). Every linear layer of every block (q, k, v, o, gate, up, down) is quantized to
 * a ParetoQ format; embeddings and the output head stay f16 (or f32), norms f32. With method
 * `exact`, weights already on the grid (fake-quantized checkpoints) are packed exactly, and
 * latent weights with a `weight_clip_val` sibling are first put through ParetoQ's forward
 * quantizer (./paretoq.ts). One tensor is in memory at a time; quantization runs off the event loop.
 */
import * as path from 'node:path';
import { LowbitError, LowbitFormatError } from '../errors';
import { openModel } from '../io';
import { f32ToBf16, f32ToF16 } from '../io/dtypes';
import { EMBED_TOKENS, FINAL_NORM, LAYER_ROLES, LM_HEAD, type LayerRole, layerTensorName } from '../io/llama';
import {
  type LowbitFloatFormat, type LowbitRecipe, type LowbitTensorToWrite, isLowbitTensor, writeLowbitFile,
} from '../io/lowbit-format';
import { refuseShared } from '../io/sharp';
import type { LlamaConfig, ModelSource, TensorInfo } from '../io/types';
import { type QTensor, QUANT_METHODS, type QuantFormat, type QuantMethod, quantizeAsync } from '../qtensor';
import { integerIn, invalidParameter, knownOptions, oneOf, plainObject } from '../validate';
import { LOWBIT_VERSION } from '../version';
import { tokenizerToEmbed } from './embed-tokenizer';
import { type TorchFloat, fakeQuantizeRows, promotedDtype } from './paretoq';
import { type ProgressListener, recipeDate, yieldToEventLoop } from './progress';
import { type Bits, type TensorBitsRule, TensorBitsMatcher, checkTensorBits, formatOfBits, parseBits } from './recipe';
import { floatTensor, floatValues } from './source-tensors';

/** Options of `quantizeModel`. */
export interface QuantizeModelOptions {
  /**
   * Bits of the linear layers: 1, 1.58, 2, 3 or 4 (formats b1, t158, b2, b3, b4), as a number or
   * text. Latent weights whose config.json names ParetoQ's `w_bits` need those bits with `exact`.
   */
  readonly bits: number | string;
  /**
   * `exact`: the ParetoQ path, exact in the checkpoint's precision (docs/FORMAT.md); weights must
   * already be on the grid (a fake-quantized checkpoint) or come with `weight_clip_val` (latent
   * weights, put through ParetoQ's forward).
   * `rtn`, `mse`: quantize float weights (lossy). Defaults to `exact`.
   */
  readonly method?: QuantMethod;
  /** Columns per scale, a multiple of 32; 0 gives one scale per row (ParetoQ). Defaults to `0`. */
  readonly group?: number;
  /** Other bits for some layers, e.g. `'mlp.down=4,attn.*=3'` (first match wins). Defaults to none. */
  readonly tensorBits?: string | readonly TensorBitsRule[];
  /** Precision of the embeddings and output head. Defaults to `f16`. */
  readonly embeddings?: 'f16' | 'f32';
  /** A tokenizer file to embed instead of the source's. Defaults to the source's tokenizer. */
  readonly tokenizer?: string;
  /** Threads to quantize on. Defaults to the number of physical cores. */
  readonly threads?: number;
  /** Called after each stored tensor is written. Defaults to none. */
  readonly onProgress?: ProgressListener;
}

const OPTIONS = ['bits', 'method', 'group', 'tensorBits', 'embeddings', 'tokenizer', 'threads', 'onProgress'] as const;

/** What `quantizeModel` wrote. */
export interface QuantizeResult {
  readonly output: string;
  /** Size of the written file. */
  readonly bytes: number;
  /** Bytes of the source's weight tensors as stored. */
  readonly sourceWeightBytes: number;
  /** How many linear layers got each format. */
  readonly formats: Readonly<Partial<Record<QuantFormat, number>>>;
  readonly recipe: LowbitRecipe;
  readonly seconds: number;
}

interface ResolvedOptions {
  readonly bits: Bits;
  readonly method: QuantMethod;
  readonly group: number;
  readonly rules: readonly TensorBitsRule[];
  readonly embeddings: LowbitFloatFormat;
  readonly tokenizer: string | undefined;
  readonly threads: number | undefined;
  readonly onProgress: ProgressListener | undefined;
}

function resolveOptions(options: unknown): ResolvedOptions {
  const o = plainObject('options', options);
  knownOptions('quantizeModel', o, OPTIONS);
  const group = o.group === undefined ? 0 : integerIn('group', o.group, 0);
  if (group % 32 !== 0) throw invalidParameter('group', '0 or a multiple of 32', group, true);
  if (o.tokenizer !== undefined && typeof o.tokenizer !== 'string') throw invalidParameter('tokenizer', 'a file path', o.tokenizer);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidParameter('onProgress', 'a function', o.onProgress);
  return {
    bits: parseBits('bits', o.bits),
    method: o.method === undefined ? 'exact' : oneOf('method', o.method, QUANT_METHODS),
    group,
    rules: o.tensorBits === undefined ? [] : checkTensorBits(o.tensorBits),
    embeddings: o.embeddings === undefined ? 'f16' : oneOf('embeddings', o.embeddings, ['f16', 'f32'] as const),
    tokenizer: o.tokenizer as string | undefined,
    threads: o.threads === undefined ? undefined : integerIn('threads', o.threads, 1, 1024),
    onProgress: o.onProgress as ProgressListener | undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Reading source tensors

const HALF_DTYPES = new Set(['f16', 'bf16']);

/** f16/bf16 tensors as their raw bits (what exact packing verifies against). */
function halfBits(info: TensorInfo): Uint16Array {
  return new Uint16Array(info.read().slice().buffer);
}

/** `...proj.weight` → `...proj.weight_clip_val`: ParetoQ's learned row scales of that weight. */
function clipValName(weightName: string): string {
  return `${weightName}_clip_val`;
}

/** The per-row alphas of a latent weight, and the dtype they are stored in. */
function readClipVals(source: ModelSource, info: TensorInfo, rows: number): { alphas: Float32Array; dtype: TorchFloat } {
  const dtype = info.dtype;
  const shapeOk = (info.shape.length === 2 && info.shape[0] === rows && info.shape[1] === 1) || (info.shape.length === 1 && info.shape[0] === rows);
  if (!shapeOk || (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16')) {
    throw new LowbitFormatError(source.path, `is ${dtype} [${info.shape.join(', ')}], expected a float [${rows}, 1]`, info.name);
  }
  return { alphas: floatValues(source, info), dtype };
}

// ---------------------------------------------------------------------------------------------
// Quantizing one linear layer

/** Rows fake-quantized between two turns of the event loop. */
const ROWS_PER_TURN = 256;

/** Latent weights through ParetoQ's forward, in the dtype PyTorch would compute it in. */
async function fakeQuantized(source: ModelSource, info: TensorInfo, clip: TensorInfo, format: QuantFormat,
  rows: number, cols: number): Promise<{ values: Float32Array; dtype: TorchFloat }> {
  if (info.dtype !== 'f32' && info.dtype !== 'f16' && info.dtype !== 'bf16') {
    throw new LowbitFormatError(source.path, `latent weights must be f32, f16 or bf16, not ${info.dtype}`, info.name);
  }
  const { alphas, dtype: clipDtype } = readClipVals(source, clip, rows);
  const dtype = promotedDtype(info.dtype, clipDtype);
  const weights = floatValues(source, info);
  const values = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r += ROWS_PER_TURN) {
    try {
      fakeQuantizeRows(format, dtype, weights, alphas, cols, r, Math.min(rows, r + ROWS_PER_TURN), values);
    } catch (error) {
      throw new LowbitFormatError(source.path, (error as Error).message, info.name, { cause: error });
    }
    await yieldToEventLoop();
  }
  return { values, dtype };
}

function toHalfBits(values: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array {
  const encode = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  return Uint16Array.from(values, encode);
}

interface LinearJob {
  readonly info: TensorInfo;
  readonly clip: TensorInfo | undefined;
  readonly format: QuantFormat;
  readonly rows: number;
  readonly cols: number;
}

/** The weights handed to the quantizer, in the precision exact packing must reproduce. */
async function quantizerInput(source: ModelSource, job: LinearJob, method: QuantMethod): Promise<{ weights: Float32Array | Uint16Array; dtype?: 'f16' | 'bf16' }> {
  if (method === 'exact' && job.clip !== undefined) {
    const { values, dtype } = await fakeQuantized(source, job.info, job.clip, job.format, job.rows, job.cols);
    return dtype === 'f32' ? { weights: values } : { weights: toHalfBits(values, dtype), dtype };
  }
  if (HALF_DTYPES.has(job.info.dtype)) return { weights: halfBits(job.info), dtype: job.info.dtype as 'f16' | 'bf16' };
  return { weights: floatValues(source, job.info) };
}

async function quantizeLinear(source: ModelSource, job: LinearJob, o: ResolvedOptions): Promise<QTensor> {
  const { weights, dtype } = await quantizerInput(source, job, o.method);
  try {
    return await quantizeAsync(weights, job.rows, job.cols, {
      format: job.format, method: o.method, group: o.group, ...(dtype && { dtype }), ...(o.threads && { threads: o.threads }),
    });
  } catch (error) {
    if (!(error instanceof LowbitError) || error.code !== 'LOWBIT_OFF_GRID') throw error;
    const what = job.clip ? 'its ParetoQ fake-quantized values are' : 'it is';
    throw new LowbitError(
      `${source.path}: ${job.info.name}: ${what} not on the ${job.format} grid (${error.message}). ` +
        `--method exact packs ParetoQ checkpoints at their own bits (is --bits right?); use --method rtn or mse to quantize a float model`,
      'LOWBIT_OFF_GRID', { cause: error });
  }
}

function linearTensor(source: ModelSource, job: LinearJob, o: ResolvedOptions): LowbitTensorToWrite {
  let quantized: QTensor | undefined;
  return {
    name: job.info.name, format: job.format, shape: [job.rows, job.cols], group: o.group,
    async *data() {
      quantized = await quantizeLinear(source, job, o);
      yield quantized.packed();
    },
    scales() {
      const scales = quantized!.scales()!;
      quantized!.dispose();
      return scales;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The plan

function sameBytes(a: TensorInfo, b: TensorInfo): boolean {
  return a.dtype === b.dtype && a.byteLength === b.byteLength && Buffer.from(a.read()).equals(Buffer.from(b.read()));
}

/** MobileLLM-style checkpoints declare an untied head that is byte-identical to the embedding: store it once. */
function dedupedConfig(source: ModelSource): { config: LlamaConfig; headDeduplicated: boolean } {
  const head = source.tensors.get(LM_HEAD), embedding = source.tensors.get(EMBED_TOKENS)!;
  if (source.config.tiedEmbeddings || head === undefined || !sameBytes(head, embedding)) return { config: source.config, headDeduplicated: false };
  return { config: { ...source.config, tiedEmbeddings: true }, headDeduplicated: true };
}

const LINEAR_ROLES = new Set<LayerRole>(['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
  'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']);

interface Plan {
  readonly tensors: LowbitTensorToWrite[];
  readonly formats: Partial<Record<QuantFormat, number>>;
  /** How many linear layers were latent (with clip values). */
  readonly latent: number;
  /** The bits chosen for the latent ones. */
  readonly latentBits: Bits[];
}

function planTensors(source: ModelSource, config: LlamaConfig, matcher: TensorBitsMatcher, o: ResolvedOptions): Plan {
  const tensor = (name: string) => source.tensors.get(name)!;
  const tensors: LowbitTensorToWrite[] = [floatTensor(source, tensor(EMBED_TOKENS), o.embeddings)];
  const formats: Partial<Record<QuantFormat, number>> = {};
  const latentBits: Bits[] = [];
  for (let layer = 0; layer < config.nLayers; layer++) {
    for (const role of LAYER_ROLES) {
      const info = tensor(layerTensorName(layer, role));
      if (!LINEAR_ROLES.has(role)) {
        tensors.push(floatTensor(source, info, 'f32'));
        continue;
      }
      const bits = matcher.bitsFor(layer, role);
      const format = formatOfBits(bits);
      const clip = source.tensors.get(clipValName(info.name));
      if (clip !== undefined) latentBits.push(bits);
      formats[format] = (formats[format] ?? 0) + 1;
      tensors.push(linearTensor(source, { info, clip, format, rows: info.shape[0], cols: info.shape[1] }, o));
    }
  }
  tensors.push(floatTensor(source, tensor(FINAL_NORM), 'f32'));
  if (!config.tiedEmbeddings) tensors.push(floatTensor(source, tensor(LM_HEAD), o.embeddings));
  return { tensors, formats, latent: latentBits.length, latentBits };
}

function sourceWeightBytes(source: ModelSource): number {
  let sum = 0;
  for (const info of source.tensors.values()) sum += info.byteLength + (isLowbitTensor(info) ? info.readScales().byteLength : 0);
  return sum;
}

/** ParetoQ's `w_bits` encoding (config.json of its training runs): 0 is ternary. */
const PARETOQ_W_BITS: Readonly<Record<number, Bits>> = { 0: 1.58, 1: 1, 2: 2, 3: 3, 4: 4 };

/**
 * Latent weights reproduce the training forward only at the bits they were trained for: a
 * config.json naming ParetoQ's `w_bits` must agree with the bits chosen for every latent layer.
 */
function checkTrainedBits(source: ModelSource, plan: Plan, o: ResolvedOptions): void {
  const wBits = source.metadata.get('w_bits');
  const trained = typeof wBits === 'number' ? PARETOQ_W_BITS[wBits] : undefined;
  if (o.method !== 'exact' || trained === undefined) return;
  const other = plan.latentBits.find((bits) => bits !== trained);
  if (other !== undefined) {
    throw invalidParameter('bits', `${trained} for these latent weights (config.json: w_bits ${String(wBits)}; --method exact reproduces ParetoQ's forward at the trained bits)`, other, true);
  }
}

/** Where exact weights came from, for the recipe. */
function weightsFrom(o: ResolvedOptions, plan: Plan, linears: number): Record<string, number> {
  if (o.method !== 'exact') return { float: linears, ...(plan.latent > 0 && { latentClipValuesIgnored: plan.latent }) };
  return { 'latent+clip': plan.latent, 'on-grid': linears - plan.latent };
}

/**
 * Converts the model at `input` (any container lowbit reads) into one lowbit file at `output`.
 * Rejects with a LowbitError (code LOWBIT_OFF_GRID) naming the tensor when method `exact` finds
 * weights off the grid, and with a LowbitFormatError for unreadable input.
 */
export async function quantizeModel(input: string, output: string, options: QuantizeModelOptions): Promise<QuantizeResult> {
  if (typeof input !== 'string') throw invalidParameter('input', 'a model file or folder path', input);
  if (typeof output !== 'string' || output === '') throw invalidParameter('output', 'a file path', output);
  const o = resolveOptions(options);
  const started = performance.now();
  const source = openModel(input, { tokenizer: o.tokenizer });
  try {
    refuseShared(source, 'quantize');
    const tokenizer = tokenizerToEmbed(source);
    const { config, headDeduplicated } = dedupedConfig(source);
    const matcher = new TensorBitsMatcher(o.rules, o.bits);
    const plan = planTensors(source, config, matcher, o);
    matcher.checkAllUsed();
    checkTrainedBits(source, plan, o);
    const recipe: LowbitRecipe = {
      tool: 'quantize', bits: o.bits, method: o.method, group: o.group, tensorBits: o.rules, embeddings: o.embeddings,
      source: path.basename(input), lowbitVersion: LOWBIT_VERSION, date: recipeDate(),
      weightsFrom: weightsFrom(o, plan, 7 * config.nLayers),
      ...(headDeduplicated && { head: 'identical to the embedding: stored once (tied)' }),
    };
    const bytes = await writeLowbitFile(output, { config, tokenizer, recipe, tensors: plan.tensors }, {
      onTensorWritten: (done, total, name) => o.onProgress?.({ done, total, name }),
    });
    return {
      output, bytes, sourceWeightBytes: sourceWeightBytes(source), formats: plan.formats, recipe,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    source.close();
  }
}
