/**
 * Reference quantisers for tests, following ggml's `quantize_row_*_ref` step by step in float32
 * (Math.fround after every operation), so their output can be compared byte for byte with files
 * made by llama-quantize and round-tripped through lib/io's dequantizers.
 */
import { f32ToF16 } from '../../lib/io/dtypes';

const f = Math.fround;

/** C's roundf: halves away from zero. */
function roundAway(x: number): number {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

function blocks(values: Float32Array, size: number): Float32Array[] {
  if (values.length % size !== 0) throw new RangeError(`${values.length} values are not whole blocks of ${size}`);
  return Array.from({ length: values.length / size }, (_, i) => values.subarray(i * size, (i + 1) * size));
}

/** Q8_0: d = amax/127, q = round(x/d). */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 34);
  const view = new DataView(out.buffer);
  blocks(values, 32).forEach((x, b) => {
    const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const d = f(amax / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    view.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(b * 34 + 2 + j, roundAway(f(x[j] * id)));
  });
  return out;
}

/** Q4_0: d = (value of largest magnitude)/−8, q = min(15, trunc(x/d + 8.5)). */
export function quantizeQ4_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 18);
  const view = new DataView(out.buffer);
  blocks(values, 32).forEach((x, b) => {
    let amax = 0;
    let max = 0;
    for (const v of x) {
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f(max / -8);
    const id = d !== 0 ? f(1 / d) : 0;
    view.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const low = Math.min(15, Math.trunc(f(f(x[j] * id) + 8.5)));
      const high = Math.min(15, Math.trunc(f(f(x[j + 16] * id) + 8.5)));
      out[b * 18 + 2 + j] = low | (high << 4);
    }
  });
  return out;
}

/** Ternary code of x at scale 1/d: −1, 0, +1 stored as 0, 1, 2. */
function trit(x: number, id: number): number {
  return roundAway(f(x * id)) + 1;
}

/** Base-3 digits (most significant first) packed as ceil(v · 256 / 243). */
function packTrits(digits: number[]): number {
  const value = digits.reduce((v, t) => v * 3 + t, 0);
  return Math.floor(((value & 0xff) * 256 + 242) / 243) & 0xff;
}

/** TQ1_0 (256 values, 54 bytes): qs[48] at 5 trits/byte, qh[4] at 4 trits/byte, then f16 d = amax. */
export function quantizeTQ1_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 256) * 54);
  const view = new DataView(out.buffer);
  blocks(values, 256).forEach((x, b) => {
    const d = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const id = d !== 0 ? f(1 / d) : 0;
    const at = b * 54;
    for (let m = 0; m < 32; m++) out[at + m] = packTrits([0, 1, 2, 3, 4].map((n) => trit(x[m + 32 * n], id)));
    for (let m = 0; m < 16; m++) out[at + 32 + m] = packTrits([0, 1, 2, 3, 4].map((n) => trit(x[160 + m + 16 * n], id)));
    // Four trits, shifted up by one trit so the first is the most significant of five.
    for (let j = 0; j < 4; j++) out[at + 48 + j] = packTrits([...[0, 1, 2, 3].map((n) => trit(x[240 + j + 4 * n], id)), 0]);
    view.setUint16(at + 52, f32ToF16(d), true);
  });
  return out;
}

/** TQ2_0 (256 values, 66 bytes): qs[64] with 4 codes of 2 bits per byte, then f16 d = amax. */
export function quantizeTQ2_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 256) * 66);
  const view = new DataView(out.buffer);
  blocks(values, 256).forEach((x, b) => {
    const d = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const id = d !== 0 ? f(1 / d) : 0;
    const at = b * 66;
    for (let group = 0; group < 2; group++) {
      for (let m = 0; m < 32; m++) {
        let byte = 0;
        for (let n = 0; n < 4; n++) byte |= (trit(x[128 * group + m + 32 * n], id) & 3) << (2 * n);
        out[at + 32 * group + m] = byte;
      }
    }
    view.setUint16(at + 64, f32ToF16(d), true);
  });
  return out;
}

/** Little-endian float32 bytes of `values`. */
export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
  return out;
}

/**
 * Largest |x − dequantized x| the reference quantisers allow for an element of a block whose stored
 * (f16) scale is `d`: half a step from rounding (a whole step where q4_0 clamps +8 to +7), plus the
 * f16 rounding of the scale (relative 2^-11) times the largest code.
 */
export function quantizationErrorBound(dtype: 'q8_0' | 'q4_0', d: number): number {
  const [steps, maxCode] = dtype === 'q8_0' ? [0.5, 127] : [1, 8];
  return (steps + maxCode * 2 ** -11) * Math.abs(d) * (1 + 2 ** -10) + 1e-7;
}
