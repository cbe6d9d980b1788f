/**
 * Method `exact` reproduces every weight in its source precision: d·(c + o) rounded to bf16 is the
 * checkpoint's bf16 value. Of the scales that do so, the native search keeps the largest, which can
 * sit a float32 ulp away from the checkpoint's own scale. This pass picks, per row (or group), a
 * scale for which d·(c + o) is the stored value itself in float32 wherever one exists (always for
 * 1 and 1.58 bits; for 2-4 bits when the checkpoint's levels are exact multiples of one scale), so
 * the runtime multiplies by exactly the checkpoint's weights. Codes never change.
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../io/dtypes';
import { binding, callNative } from '../native';
import { QTensor } from '../qtensor';

/** The weights an exact quantization was given, as float32 values, and the rounding of their precision. */
function sourceValues(weights: Float32Array | Uint16Array, dtype: 'f16' | 'bf16' | undefined): { values: Float32Array; round: (x: number) => number } {
  if (dtype === undefined) return { values: weights as Float32Array, round: Math.fround };
  if (dtype === 'bf16') {
    // bf16 is the top half of a float32.
    const widened = Uint32Array.from(weights as Uint16Array, (bits) => bits << 16);
    return { values: new Float32Array(widened.buffer), round: (x) => bf16ToF32(f32ToBf16(x)) };
  }
  return { values: Float32Array.from(weights as Uint16Array, f16ToF32), round: (x) => f16ToF32(f32ToF16(x)) };
}

/**
 * The scale for one group of weights that reproduces the most of them exactly in float32. Exact
 * quantization gives each distinct value its own code, so a group is at most 16 (code, value) pairs.
 */
function bestScale(values: Float32Array, codes: Uint8Array, begin: number, end: number, offset: number,
  current: number, round: (x: number) => number, valueOfCode: Float64Array): number {
  valueOfCode.fill(NaN);
  for (let j = begin; j < end; j++) valueOfCode[codes[j]] = values[j];
  const exactCount = (d: number) => {
    let exact = 0;
    for (let c = 0; c < valueOfCode.length; c++) {
      const v = valueOfCode[c];
      if (Number.isNaN(v)) continue;
      const w = Math.fround(d * (c + offset));
      if (round(w) !== v) return -1;  // must still reproduce every value in source precision
      if (w === v) exact++;
    }
    return exact;
  };
  const used = valueOfCode.reduce((n, v) => (Number.isNaN(v) ? n : n + 1), 0);
  let best = current, bestExact = exactCount(current);
  for (let c = 0; c < valueOfCode.length && bestExact < used; c++) {
    if (Number.isNaN(valueOfCode[c]) || c + offset === 0) continue;
    const d = Math.fround(valueOfCode[c] / (c + offset));
    const exact = exactCount(d);
    if (exact > bestExact) [best, bestExact] = [d, exact];
  }
  return best;
}

/**
 * `quantized` (an exact quantization of `weights`) with scales that reproduce the weights exactly in
 * float32 where possible; returns `quantized` itself when no scale changes, else a new tensor (and
 * disposes `quantized`).
 */
export function exactScales(quantized: QTensor, weights: Float32Array | Uint16Array, dtype: 'f16' | 'bf16' | undefined): QTensor {
  const { rows, cols, group, format } = quantized;
  const traits = binding().formats().find((f) => f.name === format)!;
  const valueOfCode = new Float64Array(traits.codes);
  const { values, round } = sourceValues(weights, dtype);
  const codes = quantized.codes(), scales = quantized.scales()!;
  const width = group === 0 ? cols : group;
  const groups = Math.ceil(cols / width);
  let changed = false;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < groups; k++) {
      const begin = r * cols + k * width, end = Math.min(r * cols + cols, begin + width);
      const d = bestScale(values, codes, begin, end, traits.offset, scales[r * groups + k], round, valueOfCode);
      if (d !== scales[r * groups + k]) {
        scales[r * groups + k] = d;
        changed = true;
      }
    }
  }
  if (!changed) return quantized;
  const refined = new QTensor(callNative(() => binding().AddonQTensor.fromCodes(format, rows, cols, group, codes, scales)));
  quantized.dispose();
  return refined;
}
