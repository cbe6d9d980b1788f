/**
 * Loads the native addon and types its surface. Everything native goes through `binding()`;
 * the C++ side lives in native/napi and uses the same names.
 * @internal
 */
import * as path from 'node:path';

import { LowbitError } from './errors';

export type FormatName = 'f32' | 'f16' | 'b1' | 't158' | 'b2' | 'b3' | 'b4';
export type QuantMethod = 'exact' | 'rtn' | 'mse';
export type SourceType = 'f32' | 'f16' | 'bf16';
export type ActivationMode = 'int8' | 'f32';
export type IsaName = 'ref' | 'avx2' | 'avx512' | 'neon' | 'neon-dotprod';

export interface AddonQTensorInfo {
  format: FormatName;
  rows: number;
  cols: number;
  group: number;
  bytes: number;
  isView: boolean;
  /** Rows stored in the interleaved layout (interleaved()). */
  interleaved: boolean;
}

/** A native QTensor handle (native/napi/qtensor-wrap.cpp). */
export interface AddonQTensor {
  info(): AddonQTensorInfo;
  dequantize(): Float32Array;
  /** `isa` picks a kernel set other than the active one (benchmarks). */
  matmul(x: Float32Array, n: number, threads: number, act: ActivationMode, isa?: IsaName): Promise<Float32Array>;
  matmulSync(x: Float32Array, n: number, threads: number, act: ActivationMode, isa?: IsaName): Float32Array;
  packed(): Uint8Array;
  scales(): Float32Array | null;
  codes(): Uint8Array;
  view(rowBegin: number, rowCount: number): AddonQTensor;
  /** A copy in the interleaved layout models run decode GEMVs on (docs/KERNELS.md); RangeError when the tensor cannot be. */
  interleaved(): AddonQTensor;
  dispose(): void;
}

export interface AddonQTensorStatic {
  quantize(weights: Float32Array | Uint16Array, rows: number, cols: number, format: FormatName,
    method: QuantMethod, group: number, source: SourceType, threads: number): AddonQTensor;
  quantizeAsync(weights: Float32Array | Uint16Array, rows: number, cols: number, format: FormatName,
    method: QuantMethod, group: number, source: SourceType, threads: number): Promise<AddonQTensor>;
  fromPacked(format: FormatName, rows: number, cols: number, group: number, packed: Uint8Array,
    scales: Float32Array | null): AddonQTensor;
  fromCodes(format: FormatName, rows: number, cols: number, group: number, codes: Uint8Array,
    scales: Float32Array): AddonQTensor;
}

/** Model config as native/napi/model-wrap.cpp reads it. */
export interface AddonModelConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxSeqLen: number;
  normEps: number;
  ropeTheta: number;
  ropeStyle: 'interleaved' | 'half';
  ropeScaling?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };
  /** Divisors of each pair's frequency (GGUF `rope_freqs.weight`, Llama 3.1 and later). */
  ropeFreqFactors?: Float32Array;
}

export type AddonLinearName = 'wq' | 'wk' | 'wv' | 'wo' | 'gate' | 'up' | 'down';

export interface AddonLayerWeights extends Record<AddonLinearName, AddonQTensor> {
  attnNorm: Float32Array;
  ffnNorm: Float32Array;
  /** SHARP low-rank recovery per projection: y = W x + b (a x). */
  recovery?: Partial<Record<AddonLinearName, { a: AddonQTensor; b: AddonQTensor }>>;
}

export interface AddonModelWeights {
  embedding: AddonQTensor;
  output: AddonQTensor;
  finalNorm: Float32Array;
  layers: AddonLayerWeights[];
}

export interface AddonModel {
  info(): { bytes: number };
  dispose(): void;
}

export interface AddonContext {
  eval(tokens: Int32Array, logits: 'none' | 'last' | 'all'): Promise<Float32Array | null>;
  /**
   * Evaluates the prompt, then samples and feeds back up to maxTokens tokens on a native thread,
   * calling onToken with each (and the seconds its step took); ends after a token in stopIds or
   * when the context is full. It produces a token only while allow() has allowed it.
   */
  generate(prompt: Int32Array, sampler: AddonSampler, maxTokens: number, stopIds: Int32Array,
    onToken: (token: number, seconds: number) => void): Promise<void>;
  /** Lets a running generate() produce `count` more tokens. */
  allow(count: number): void;
  truncate(keep: number): void;
  tokens(): Int32Array;
  abort(): void;
  dispose(): void;
  /** From the next eval on, records what these layers' MLPs read (null: stop). */
  recordMlp(layers: Int32Array | null): void;
  /** A recorded layer's MLP inputs: post-norm hidden states (tokens x dim) and SwiGLU products (tokens x hidden). */
  recordedMlp(layer: number): { ffnIn: Float32Array; swiglu: Float32Array };
}

/** The MLP projections SHARP shares, in the order native code numbers them. */
export type AddonMlpName = 'gate' | 'up' | 'down';

/** One target layer of a SHARP fit (native/napi/sharp-wrap.cpp). */
export interface AddonSharpLayer {
  layer: number;
  dim: number;
  hidden: number;
  /** The layer's original weights. */
  target: Record<AddonMlpName, Float32Array>;
  /** What the runtime multiplies instead: the reference's (dequantized) weight, or the layer's own. */
  base: Record<AddonMlpName, Float32Array>;
  /** 0: no recovery for that projection. */
  rank: Record<AddonMlpName, number>;
  /** Calibration inputs (tokens x dim, tokens x hidden) recorded from the original model. */
  ffnIn?: Float32Array;
  swiglu?: Float32Array;
}

export interface AddonSharpRequest {
  layers: AddonSharpLayer[];
  init: 'none' | 'svd' | 'cov';
  refineSteps: number;
  learningRate: number;
  batch: number;
  seed: number;
  threads: number;
}

export interface AddonSharpFit {
  recovery: Partial<Record<AddonMlpName, { a: Float32Array; b: Float32Array }>>;
  report: Record<AddonMlpName, { weightError: number; outputError: number }>;
  lossShared: number;
  lossInit: number;
  lossRefined: number;
}

export interface AddonSamplerParams {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  repeatLastN: number;
}

export interface AddonSampler {
  sample(logits: Float32Array, history?: Int32Array): number;
}

export interface AddonFormatInfo {
  name: FormatName;
  bitsPerWeight: number;
  quantized: boolean;
  codeBits: number;
  codes: number;
  offset: number;
  planeBits: number[];
}

export interface AddonCpuInfo {
  arch: string;
  /** x64: cpuid's vendor string and display family (AMD Zen 4 0x19, Zen 5 0x1a); elsewhere '' and 0. */
  vendor: string;
  family: number;
  features: Record<string, boolean>;
  physicalCores: number;
  logicalCores: number;
  defaultThreads: number;
  isa: IsaName;
  isas: IsaName[];
  /** ISAs with the interleaved GEMV: models loaded there store their quantized layer weights interleaved. */
  interleavedIsas: IsaName[];
}

export interface Binding {
  AddonQTensor: AddonQTensorStatic;
  /** Takes the weights: their handles are disposed once the model is built (it owns the storage). */
  AddonModel: new (config: AddonModelConfig, weights: AddonModelWeights, activations: ActivationMode) => AddonModel;
  AddonContext: new (model: AddonModel, contextLength: number, kvCache: 'f32' | 'f16', threads: number) => AddonContext;
  AddonSampler: new (params: AddonSamplerParams, seed: number) => AddonSampler;
  cpuInfo(): AddonCpuInfo;
  formats(): AddonFormatInfo[];
  /** Seconds per pass of reading the array in place, each thread its share. */
  measureRead(data: Uint8Array, threads: number, minSeconds: number, isa?: IsaName): number;
  /** Asks for huge pages under the array's memory, as tensors' storage has (before first touching it). */
  adviseHugePages(array: Uint8Array): void;
  /** One matmul of x by each tensor in turn, natively; returns seconds per matmul. */
  runMatmuls(tensors: AddonQTensor[], x: Float32Array, n: number, threads: number, act: ActivationMode, isa?: IsaName): number;
  sharpFit(request: AddonSharpRequest): Promise<AddonSharpFit[]>;
}

let cached: Binding | undefined;

/** The addon, loaded on first use: a prebuild for this platform if present, else the local build. */
export function binding(): Binding {
  if (!cached) {
    const root = path.join(__dirname, '..');
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const load = require('node-gyp-build') as (dir: string) => Binding;
      cached = load(root);
    } catch (cause) {
      throw new LowbitError(
        `lowbit's native addon could not be loaded for ${process.platform}-${process.arch} (Node ${process.version}).\n` +
          `  Reinstall to build it from source: npm rebuild lowbit --build-from-source\n` +
          `  (needs python3, make and a C++17 compiler).\n  Cause: ${(cause as Error).message}`,
        'LOWBIT_NATIVE', { cause });
    }
  }
  return cached;
}

/** Native errors carry a string `code`; give them lowbit's error class. */
export function nativeError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof LowbitError) return err;
  const code = (err as Error & { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('LOWBIT_')) {
    const e = err;
    const wrapped = new LowbitError(e.message, code as LowbitError['code'], { cause: e });
    wrapped.stack = e.stack;
    return wrapped;
  }
  return err;
}

/** Runs a native call, converting its coded errors. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw nativeError(err);
  }
}

/**
 * Awaits a native promise; on failure the error carries the caller's stack (captured before the
 * call, as native work runs on another thread and its errors have no user frames).
 */
export async function awaitNative<T>(start: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await callNative(start);
  } catch (err) {
    const e = nativeError(err);
    if (e instanceof Error && site.stack) e.stack = `${e.name}: ${e.message}\n${site.stack.split('\n').slice(1).join('\n')}`;
    throw e;
  }
}
