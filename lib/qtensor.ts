/**
 * QTensor: a rows x cols weight matrix in one of lowbit's formats, and the quantizers that make
 * one. Formats (ParetoQ grids, one scale per row or per group of columns):
 * b1 {-1,+1}, t158 {-1,0,+1}, b2 {-1.5,-0.5,0.5,1.5}, b3 {-4..3}, b4 {-8..7} times the scale;
 * f16/f32 hold plain floats. See docs/KERNELS.md for the packing.
 */
import { DisposedError } from './errors';
import { f32ToBf16, f32ToF16 } from './io/dtypes';
import {
  type ActivationMode, type AddonQTensor, awaitNative, binding, callNative, type FormatName, type QuantMethod,
} from './native';
import { integerIn, invalidParameter, knownOptions, oneOf, plainObject } from './validate';

export type { ActivationMode, FormatName, QuantMethod } from './native';
export type QuantFormat = Exclude<FormatName, 'f32' | 'f16'>;

export const QUANT_FORMATS: readonly QuantFormat[] = ['b1', 't158', 'b2', 'b3', 'b4'];
export const QUANT_METHODS: readonly QuantMethod[] = ['exact', 'rtn', 'mse'];

export interface QuantizeOptions {
  /** Target format. */
  format: QuantFormat;
  /**
   * `exact`: the weights already lie on the format's grid (ParetoQ checkpoints); packs losslessly
   * or throws a LowbitError (code LOWBIT_OFF_GRID) naming the row. `rtn`: round to nearest with
   * ParetoQ's initial scale. `mse`: per-row scale search minimising squared error.
   * Defaults to `rtn`.
   */
  method?: QuantMethod;
  /** Columns per scale, a multiple of 32; 0 gives one scale per row. Defaults to `0`. */
  group?: number;
  /** Precision of Uint16Array weights (`bf16` or `f16`); required with a Uint16Array. */
  dtype?: 'bf16' | 'f16';
  /** Threads to quantize rows on. Defaults to the number of physical cores. */
  threads?: number;
}

export interface MatmulOptions {
  /** Threads. Defaults to the number of physical cores. */
  threads?: number;
  /**
   * `int8`: activations quantized per 64 columns to int8 for integer dot products (fast; error
   * at most half an int8 step per activation). `f32`: float activations (exact up to float
   * rounding). Defaults to `int8`.
   */
  activations?: ActivationMode;
}

const QUANTIZE_OPTIONS = ['format', 'method', 'group', 'dtype', 'threads'] as const;
const MATMUL_OPTIONS = ['threads', 'activations'] as const;

function threadsOption(value: unknown): number {
  return value === undefined ? 0 : integerIn('threads', value, 1, 1024);
}

function shape(rows: unknown, cols: unknown): [number, number] {
  return [integerIn('rows', rows, 1), integerIn('cols', cols, 1)];
}

function checkWeights(weights: unknown, count: number, dtype: unknown): 'f32' | 'f16' | 'bf16' {
  if (weights instanceof Float32Array) {
    if (dtype !== undefined) throw invalidParameter('dtype', 'no dtype with a Float32Array', dtype);
  } else if (weights instanceof Uint16Array) {
    oneOf('dtype', dtype, ['bf16', 'f16'] as const);
  } else {
    throw invalidParameter('weights', 'a Float32Array, or a Uint16Array of bf16/f16 bits', weights);
  }
  if (weights.length !== count) {
    throw new RangeError(`Expected rows * cols = ${count} weights but received ${weights.length}`);
  }
  if (count > 2 ** 40) throw new RangeError(`rows * cols = ${count} is too large (limit 2^40)`);
  return (dtype as 'f16' | 'bf16' | undefined) ?? 'f32';
}

function quantizeArgs(weights: unknown, rows: unknown, cols: unknown, options: unknown) {
  const [r, c] = shape(rows, cols);
  const o = plainObject('options', options);
  knownOptions('quantize', o, QUANTIZE_OPTIONS);
  const format = oneOf('format', o.format, QUANT_FORMATS);
  const method = o.method === undefined ? 'rtn' : oneOf('method', o.method, QUANT_METHODS);
  const group = o.group === undefined ? 0 : integerIn('group', o.group, 0);
  if (group % 32 !== 0) throw invalidParameter('group', '0 or a multiple of 32', group, true);
  const source = checkWeights(weights, r * c, o.dtype);
  return [weights as Float32Array | Uint16Array, r, c, format, method, group, source, threadsOption(o.threads)] as const;
}

/** Quantizes a row-major rows x cols matrix (synchronously; see quantizeAsync for large ones). */
export function quantize(weights: Float32Array | Uint16Array, rows: number, cols: number, options: QuantizeOptions): QTensor {
  const args = quantizeArgs(weights, rows, cols, options);
  return new QTensor(callNative(() => binding().AddonQTensor.quantize(...args)));
}

/** As quantize(), on a background thread. */
export async function quantizeAsync(weights: Float32Array | Uint16Array, rows: number, cols: number,
  options: QuantizeOptions): Promise<QTensor> {
  const args = quantizeArgs(weights, rows, cols, options);
  return new QTensor(await awaitNative(() => binding().AddonQTensor.quantizeAsync(...args)));
}

/**
 * A tensor from packed codes and scales in lowbit's layout (docs/KERNELS.md), or from raw
 * f16/f32 values; validates sizes, scales and codes.
 */
export function tensorFromPacked(format: FormatName, rows: number, cols: number, group: number, packed: Uint8Array,
  scales: Float32Array | null): QTensor {
  oneOf('format', format, ['f32', 'f16', ...QUANT_FORMATS]);
  shape(rows, cols);
  integerIn('group', group, 0);
  if (!(packed instanceof Uint8Array)) throw invalidParameter('packed', 'a Uint8Array', packed);
  return new QTensor(callNative(() => binding().AddonQTensor.fromPacked(format, rows, cols, group, packed, scales)));
}

export class QTensor {
  /** @internal */
  readonly native: AddonQTensor;
  readonly format: FormatName;
  readonly rows: number;
  readonly cols: number;
  /** Columns per scale (0: one scale per row). */
  readonly group: number;
  /** Bytes of packed codes and scales (what a file stores). */
  readonly bytes: number;
  #disposed = false;

  /** @internal */
  constructor(native: AddonQTensor) {
    this.native = native;
    const info = native.info();
    this.format = info.format;
    this.rows = info.rows;
    this.cols = info.cols;
    this.group = info.group;
    this.bytes = info.bytes;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  #live(): AddonQTensor {
    if (this.#disposed) throw new DisposedError('QTensor');
    return this.native;
  }

  /**
   * The weights, row-major: as float32 values d * (c + o), or rounded to `f16`/`bf16` bits. A
   * tensor quantized with method `exact` from f16/bf16 weights gives back its input bit for bit
   * that way (and from f32 weights, as float32).
   */
  dequantize(): Float32Array;
  dequantize(dtype: 'f32'): Float32Array;
  dequantize(dtype: 'f16' | 'bf16'): Uint16Array;
  dequantize(dtype: 'f32' | 'f16' | 'bf16' = 'f32'): Float32Array | Uint16Array {
    oneOf('dtype', dtype, ['f32', 'f16', 'bf16'] as const);
    const values = this.#live().dequantize();
    if (dtype === 'f32') return values;
    const round = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
    return Uint16Array.from(values, round);
  }

  /** Codes (0 .. 2^bits-1), one byte per weight, row-major. Quantized formats only. */
  codes(): Uint8Array {
    return callNative(() => this.#live().codes());
  }

  /** Scales, rows x groups (null for f16/f32). */
  scales(): Float32Array | null {
    return this.#live().scales();
  }

  /** The packed bytes of all rows, as a file stores them. */
  packed(): Uint8Array {
    return this.#live().packed();
  }

  /** y = x W^T for n vectors x (n x cols, row-major); returns n x rows. Runs off the event loop. */
  async matmul(x: Float32Array, n = 1, options?: MatmulOptions): Promise<Float32Array> {
    const [threads, act] = this.#matmulArgs(x, n, options);
    return awaitNative(() => this.#live().matmul(x, n, threads, act));
  }

  /** As matmul(), blocking the calling thread: for small matrices and tests. */
  matmulSync(x: Float32Array, n = 1, options?: MatmulOptions): Float32Array {
    const [threads, act] = this.#matmulArgs(x, n, options);
    return callNative(() => this.#live().matmulSync(x, n, threads, act));
  }

  /** Rows [rowBegin, rowBegin + rowCount) sharing this tensor's storage (no copy). */
  view(rowBegin: number, rowCount: number): QTensor {
    integerIn('rowBegin', rowBegin, 0, this.rows - 1);
    integerIn('rowCount', rowCount, 1, this.rows - rowBegin);
    return new QTensor(this.#live().view(rowBegin, rowCount));
  }

  /** Frees the native memory now (views keep what they share alive). Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #matmulArgs(x: unknown, n: unknown, options: unknown): [number, ActivationMode] {
    this.#live();
    if (!(x instanceof Float32Array)) throw invalidParameter('x', 'a Float32Array', x);
    integerIn('n', n, 1);
    if (x.length !== (n as number) * this.cols) {
      throw new RangeError(`Expected n * cols = ${(n as number) * this.cols} values in x but received ${x.length}`);
    }
    const o = plainObject('options', options);
    knownOptions('matmul', o, MATMUL_OPTIONS);
    // Float weights (f16, f32) always multiply float activations.
    const act = o.activations === undefined ? 'int8' : oneOf('activations', o.activations, ['int8', 'f32'] as const);
    return [threadsOption(o.threads), act];
  }
}
