/**
 * Storage facts of every TensorDType (one table), checked size arithmetic, exact half-precision
 * conversions, and the reference decoding of block formats (codes + scales, and dequantisation).
 * Block layouts are llama.cpp's (ggml-common.h):
 *   q8_0  (32 weights, 34 B): f16 d, int8 qs[32];                      x = d·q
 *   q4_0  (32 weights, 18 B): f16 d, u8 qs[16] (low nibbles = x[0..15], high = x[16..31]); x = d·(q−8)
 *   tq1_0 (256 weights, 54 B): u8 qs[48] (5 trits/byte), u8 qh[4] (4 trits/byte), f16 d; x = d·(t−1)
 *   tq2_0 (256 weights, 66 B): u8 qs[64] (4 × 2 bits/byte), f16 d;                          x = d·(q−1)
 */
import { LowbitFormatError } from '../errors';
import type { TensorDType } from './types';

/** How a dtype stores elements: `blockBytes` bytes hold `blockElements` consecutive elements. */
export interface DTypeLayout {
  readonly blockElements: number;
  readonly blockBytes: number;
}

/** Dtypes with a fixed layout ('lowbit' is described by its own container, docs/FORMAT.md). */
export type FixedLayoutDType = Exclude<TensorDType, 'lowbit'>;

const LAYOUTS: Readonly<Record<FixedLayoutDType, DTypeLayout>> = {
  f64: { blockElements: 1, blockBytes: 8 },
  f32: { blockElements: 1, blockBytes: 4 },
  f16: { blockElements: 1, blockBytes: 2 },
  bf16: { blockElements: 1, blockBytes: 2 },
  i64: { blockElements: 1, blockBytes: 8 },
  i32: { blockElements: 1, blockBytes: 4 },
  i16: { blockElements: 1, blockBytes: 2 },
  i8: { blockElements: 1, blockBytes: 1 },
  u8: { blockElements: 1, blockBytes: 1 },
  q8_0: { blockElements: 32, blockBytes: 34 },
  q4_0: { blockElements: 32, blockBytes: 18 },
  tq1_0: { blockElements: 256, blockBytes: 54 },
  tq2_0: { blockElements: 256, blockBytes: 66 },
};

/** The block layout of `dtype`; throws RangeError for 'lowbit', whose layout lives in its container. */
export function dtypeLayout(dtype: TensorDType): DTypeLayout {
  const layout = (LAYOUTS as Partial<Record<TensorDType, DTypeLayout>>)[dtype];
  if (layout === undefined) throw new RangeError(`dtype ${dtype} has no fixed layout`);
  return layout;
}

/** Whether elements are stored in multi-element blocks (GGUF quantized types). */
export function isBlockDType(dtype: TensorDType): boolean {
  return dtypeLayout(dtype).blockElements > 1;
}

// ---------------------------------------------------------------------------------------------
// Checked sizes

/**
 * The product of `factors`, rejected (LowbitFormatError naming `file` and `key`) when a factor is not
 * a non-negative integer, the product exceeds 2^53 − 1, or it exceeds `available` (the bytes or
 * elements the file can hold). Use it for every size computed from file contents.
 */
export function checkedSize(
  factors: readonly (number | bigint)[],
  available: number,
  file: string,
  key?: string,
): number {
  let product = 1n;
  for (const factor of factors) {
    if (typeof factor === 'number' && !Number.isSafeInteger(factor)) {
      throw new LowbitFormatError(file, `size factor ${factor} is not a safe integer`, key);
    }
    const value = BigInt(factor);
    if (value < 0n) throw new LowbitFormatError(file, `negative size factor ${factor}`, key);
    product *= value;
    // Checked after every step so a huge factor list cannot build a huge bigint.
    if (product > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new LowbitFormatError(file, `size ${factors.join(' × ')} overflows 2^53`, key);
    }
  }
  const size = Number(product);
  if (size > available) {
    throw new LowbitFormatError(file, `size ${factors.join(' × ')} = ${size} exceeds the ${available} available`, key);
  }
  return size;
}

/**
 * Bytes of a tensor of `dtype` and row-major `shape` (a scalar has shape `[]`), checked against
 * `available`. Block dtypes require the innermost dimension to be a whole number of blocks.
 */
export function tensorByteLength(
  dtype: TensorDType,
  shape: readonly number[],
  file: string,
  key?: string,
  available = Number.MAX_SAFE_INTEGER,
): number {
  const { blockElements, blockBytes } = dtypeLayout(dtype);
  if (blockElements === 1) return checkedSize([...shape, blockBytes], available, file, key);
  const row = shape.at(-1);
  if (row === undefined || row % blockElements !== 0) {
    throw new LowbitFormatError(
      file,
      `${dtype} needs an innermost dimension that is a multiple of ${blockElements}, got shape [${shape.join(', ')}]`,
      key,
    );
  }
  return checkedSize([...shape.slice(0, -1), row / blockElements, blockBytes], available, file, key);
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions (exact where the target can represent the value; round to nearest even)

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** IEEE binary16 bits → the number they encode (exact). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** A number (first rounded to float32) → binary16 bits, rounding to nearest even; overflow gives ±inf. */
export function f32ToF16(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13));
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Result is subnormal (or zero): value = significand · 2^(halfExponent − 14) units of 2^-24.
    const shift = 14 - halfExponent;
    if (shift > 24) return sign;
    return sign | roundShiftEven(mantissa | 0x800000, shift);
  }
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | ((halfExponent << 10) + roundShiftEven(mantissa, 13));
}

/** `value >> shift`, rounded to nearest, ties to even. */
function roundShiftEven(value: number, shift: number): number {
  const kept = Math.floor(value / 2 ** shift);
  const rest = value - kept * 2 ** shift;
  const half = 2 ** (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

/** bfloat16 bits → the number they encode (exact: bf16 is the top half of a float32). */
export function bf16ToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/** A number (first rounded to float32) → bfloat16 bits, rounding to nearest even; NaN stays NaN. */
export function f32ToBf16(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40;
  return Math.floor((bits + 0x7fff + ((bits >>> 16) & 1)) / 0x10000) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// Reference decoding: plain loops, the definition the native kernels are tested against.

/** Float storage types, decoded element by element. */
const FLOAT_DECODERS: Partial<Record<TensorDType, (bytes: DataView, i: number) => number>> = {
  f32: (bytes, i) => bytes.getFloat32(4 * i, true),
  f64: (bytes, i) => bytes.getFloat64(8 * i, true),
  f16: (bytes, i) => f16ToF32(bytes.getUint16(2 * i, true)),
  bf16: (bytes, i) => bf16ToF32(bytes.getUint16(2 * i, true)),
};

/**
 * A block format seen as unsigned codes: element = d · (code + offset), with d the block's f16 scale
 * at byte `scaleAt` of the block; `codes` reads the block's codes in element order and `pack`
 * writes them (the inverse).
 */
interface BlockCodec {
  readonly offset: number;
  readonly scaleAt: number;
  codes(bytes: DataView, at: number, out: Uint8Array, o: number): void;
  pack(codes: Uint8Array, o: number, bytes: DataView, at: number): void;
}

const BLOCK_CODECS: Partial<Record<TensorDType, BlockCodec>> = {
  q8_0: {
    offset: -128,
    scaleAt: 0,
    codes(bytes, at, out, o) {
      for (let j = 0; j < 32; j++) out[o + j] = bytes.getInt8(at + 2 + j) + 128;
    },
    pack(codes, o, bytes, at) {
      for (let j = 0; j < 32; j++) bytes.setInt8(at + 2 + j, codes[o + j] - 128);
    },
  },
  q4_0: {
    offset: -8,
    scaleAt: 0,
    codes(bytes, at, out, o) {
      // Low nibbles are elements 0..15, high nibbles 16..31.
      for (let j = 0; j < 16; j++) {
        const q = bytes.getUint8(at + 2 + j);
        out[o + j] = q & 0x0f;
        out[o + j + 16] = q >> 4;
      }
    },
    pack(codes, o, bytes, at) {
      for (let j = 0; j < 16; j++) bytes.setUint8(at + 2 + j, codes[o + j] | (codes[o + j + 16] << 4));
    },
  },
  tq1_0: {
    offset: -1,
    scaleAt: 52,
    codes(bytes, at, out, o) {
      // qs[0..32) hold elements 0..160 (trit n of byte m is element 32n + m), qs[32..48) the next 80
      // (16n + m), qh[0..4) the last 16 (4 trits each, element 4n + m).
      for (const [start, width] of [[0, 32], [32, 16]] as const) {
        for (let n = 0; n < 5; n++) {
          for (let m = 0; m < width; m++) out[o++] = tritAt(bytes.getUint8(at + start + m), n);
        }
      }
      for (let n = 0; n < 4; n++) {
        for (let m = 0; m < 4; m++) out[o++] = tritAt(bytes.getUint8(at + 48 + m), n);
      }
    },
    pack(codes, o, bytes, at) {
      const trits = (first: number, count: number, stride: number) =>
        Array.from({ length: 5 }, (_, n) => (n < count ? codes[o + first + stride * n] : 0));
      for (let m = 0; m < 32; m++) bytes.setUint8(at + m, packTrits(trits(m, 5, 32)));
      for (let m = 0; m < 16; m++) bytes.setUint8(at + 32 + m, packTrits(trits(160 + m, 5, 16)));
      // qh: four trits each, shifted up one trit so the first is the most significant of five.
      for (let m = 0; m < 4; m++) bytes.setUint8(at + 48 + m, packTrits(trits(240 + m, 4, 4)));
    },
  },
  tq2_0: {
    offset: -1,
    scaleAt: 64,
    codes(bytes, at, out, o) {
      // Byte 32g + m holds elements 128g + 32l + m in bits 2l..2l+1. Code 3 is undefined in ggml
      // (it dequantizes to 2d) and is passed on as it is.
      for (let group = 0; group < 2; group++) {
        for (let l = 0; l < 4; l++) {
          for (let m = 0; m < 32; m++) out[o + 128 * group + 32 * l + m] = (bytes.getUint8(at + 32 * group + m) >> (2 * l)) & 3;
        }
      }
    },
    pack(codes, o, bytes, at) {
      for (let group = 0; group < 2; group++) {
        for (let m = 0; m < 32; m++) {
          let byte = 0;
          for (let l = 0; l < 4; l++) byte |= (codes[o + 128 * group + 32 * l + m] & 3) << (2 * l);
          bytes.setUint8(at + 32 * group + m, byte);
        }
      }
    },
  },
};

/**
 * Trit `n` (0 = most significant) of a TQ1_0 byte. The byte stores ceil(v · 256 / 243) for a base-3
 * number v, so multiplying by 3^n (mod 256) brings trit n to the top, and (q · 3) >> 8 reads it.
 */
function tritAt(byte: number, n: number): number {
  const q = (byte * 3 ** n) & 0xff;
  return (q * 3) >> 8;
}

/** Five base-3 digits (most significant first) as a TQ1_0 byte: ceil(v * 256 / 243). */
function packTrits(digits: readonly number[]): number {
  const value = digits.reduce((v, t) => v * 3 + t, 0);
  return Math.floor((value * 256 + 242) / 243) & 0xff;
}

/** A view of the bytes `count` elements of `dtype` need; throws RangeError when they are not there. */
function elementBytes(dtype: TensorDType, bytes: Uint8Array, count: number): DataView {
  const { blockElements, blockBytes } = dtypeLayout(dtype);
  if (!Number.isSafeInteger(count) || count < 0 || count % blockElements !== 0) {
    throw new RangeError(`${dtype} needs a multiple of ${blockElements} elements, got ${count}`);
  }
  const needed = (count / blockElements) * blockBytes;
  if (bytes.length < needed) throw new RangeError(`${count} ${dtype} elements need ${needed} bytes, got ${bytes.length}`);
  return new DataView(bytes.buffer, bytes.byteOffset, needed);
}

/** Codes and per-block scales of a block format: element i = scales[block of i] · (codes[i] + offset). */
export interface BlockCodes {
  readonly codes: Uint8Array;
  readonly scales: Float32Array;
  /** −128 for q8_0, −8 for q4_0, −1 for tq1_0 and tq2_0. */
  readonly offset: number;
}

/**
 * Splits `count` elements of a block format (q8_0, q4_0, tq1_0, tq2_0) into one unsigned code per
 * element and one float scale per block, so a loader can repack them without rounding.
 */
export function blockCodes(dtype: TensorDType, bytes: Uint8Array, count: number): BlockCodes {
  const codec = BLOCK_CODECS[dtype];
  if (codec === undefined) throw new RangeError(`${dtype} is not a block format`);
  const view = elementBytes(dtype, bytes, count);
  const { blockElements, blockBytes } = dtypeLayout(dtype);
  const codes = new Uint8Array(count);
  const scales = new Float32Array(count / blockElements);
  for (let block = 0; block < scales.length; block++) {
    scales[block] = f16ToF32(view.getUint16(block * blockBytes + codec.scaleAt, true));
    codec.codes(view, block * blockBytes, codes, block * blockElements);
  }
  return { codes, scales, offset: codec.offset };
}

/**
 * The inverse of `blockCodes`: writes codes (one per element) and one scale per block as a block
 * format. Scales are stored as f16, so a scale that is not an f16 value is rounded.
 */
export function encodeBlocks(dtype: TensorDType, codes: Uint8Array, scales: Float32Array): Uint8Array {
  const codec = BLOCK_CODECS[dtype];
  if (codec === undefined) throw new RangeError(`${dtype} is not a block format`);
  const { blockElements, blockBytes } = dtypeLayout(dtype);
  if (codes.length !== scales.length * blockElements) {
    throw new RangeError(`${scales.length} ${dtype} blocks need ${scales.length * blockElements} codes, got ${codes.length}`);
  }
  const out = new Uint8Array(scales.length * blockBytes);
  const view = new DataView(out.buffer);
  for (let block = 0; block < scales.length; block++) {
    view.setUint16(block * blockBytes + codec.scaleAt, f32ToF16(scales[block]), true);
    codec.pack(codes, block * blockElements, view, block * blockBytes);
  }
  return out;
}

/**
 * Decodes `count` elements stored as `dtype` (little-endian, llama.cpp block layouts) to float32.
 * Supports f32, f64, f16, bf16, q8_0, q4_0, tq1_0 and tq2_0; `count` must be a whole number of blocks.
 */
export function dequantizeToF32(dtype: TensorDType, bytes: Uint8Array, count: number): Float32Array {
  const decode = FLOAT_DECODERS[dtype];
  if (decode !== undefined) {
    const view = elementBytes(dtype, bytes, count);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = decode(view, i);
    return out;
  }
  if (BLOCK_CODECS[dtype] === undefined) throw new RangeError(`cannot dequantize ${dtype}`);
  const { codes, scales, offset } = blockCodes(dtype, bytes, count);
  const blockElements = dtypeLayout(dtype).blockElements;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = scales[Math.floor(i / blockElements)] * (codes[i] + offset);
  return out;
}
