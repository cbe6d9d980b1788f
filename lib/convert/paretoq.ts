/**
 * ParetoQ's forward quantizers (facebookresearch/ParetoQ models/utils_quant.py; research notes A2)
 * applied to latent weights W and their learned per-row scale alpha (`weight_clip_val`, [out, 1]),
 * computed the way PyTorch computes them for a tensor of the given dtype: each elementwise op in
 * float32, its result rounded to the dtype. The output is the fake-quantized weight the training
 * code's forward pass uses, value for value.
 *
 *   1-bit    (LSQ, num_bits 1): W_q = alpha * sign(W)
 *   1.58-bit (SEQ, num_bits 0): W_q = alpha * round(1.5 * clamp(W/alpha, ±0.99)) / 1.5
 *   2-bit    (SEQ, num_bits 2): W_q = alpha * (round(2 * clamp(W/alpha, ±0.99) - 0.5) + 0.5) / 2
 *   3/4-bit  (LSQ):             W_q = alpha * clamp(round(W/alpha), -2^(b-1), 2^(b-1) - 1)
 *
 * with alpha = where(alpha > 1e-5, alpha, 1e-5) and round = torch.round (half to even).
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../io/dtypes';
import type { QuantFormat } from '../qtensor';

/** Float dtypes PyTorch computes these ops in. */
export type TorchFloat = 'f32' | 'f16' | 'bf16';

/** Rounds a float32 op result to `dtype` (f32: the op result itself, correctly rounded). */
export function roundingTo(dtype: TorchFloat): (x: number) => number {
  switch (dtype) {
    case 'f32':
      return Math.fround;
    case 'bf16':
      return (x) => bf16ToF32(f32ToBf16(x));
    case 'f16':
      return (x) => f16ToF32(f32ToF16(x));
  }
}

/** The dtype `a op b` runs in: PyTorch promotes two different float dtypes to float32. */
export function promotedDtype(a: TorchFloat, b: TorchFloat): TorchFloat {
  return a === b ? a : 'f32';
}

/** torch.round: to nearest, ties to even; negative values that round to zero give -0, as in C. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  const rounded = rest < 0.5 ? floor : rest > 0.5 ? floor + 1 : floor % 2 === 0 ? floor : floor + 1;
  return rounded === 0 && x < 0 ? -0 : rounded;
}

/** StretchedElasticQuant's constants; `undefined` for the LSQ formats. */
const SEQ: Partial<Record<QuantFormat, { levels: number; shift: number }>> = {
  t158: { levels: 1.5, shift: 0 },
  b2: { levels: 2, shift: 0.5 },
};

/** LsqBinaryTernaryExtension's clamp range (Qn, Qp) for 3 and 4 bits. */
const LSQ_RANGE: Partial<Record<QuantFormat, [number, number]>> = { b3: [-4, 3], b4: [-8, 7] };

/** The code applying one format's forward to a row: w -> W_q for a fixed alpha. */
function rowQuantizer(format: QuantFormat, round: (x: number) => number): (w: number, alpha: number) => number {
  const seq = SEQ[format];
  if (seq) {
    const clip = round(1 - 1e-2);
    const { levels, shift } = seq;
    return (w, alpha) => {
      const u = Math.min(Math.max(round(w / alpha), -clip), clip);
      const k = roundHalfEven(round(round(u * levels) - shift));
      return round(round(round(k + shift) / levels) * alpha);
    };
  }
  if (format === 'b1') return (w, alpha) => round(Math.sign(w) * alpha);
  const [qn, qp] = LSQ_RANGE[format]!;
  return (w, alpha) => round(Math.min(Math.max(roundHalfEven(round(w / alpha)), qn), qp) * alpha);
}

/**
 * Fake-quantizes rows [rowBegin, rowEnd) of `weights` (rows x cols, values representable in
 * `dtype`) with per-row `alphas` into `out` (same layout). Non-finite weights or scales throw a
 * RangeError naming the row: the training code never produces them.
 */
export function fakeQuantizeRows(format: QuantFormat, dtype: TorchFloat, weights: ArrayLike<number>, alphas: ArrayLike<number>,
  cols: number, rowBegin: number, rowEnd: number, out: Float32Array): void {
  const round = roundingTo(dtype);
  const eps = round(1e-5);
  const quantizeOne = rowQuantizer(format, round);
  for (let r = rowBegin; r < rowEnd; r++) {
    if (!Number.isFinite(alphas[r])) throw new RangeError(`weight_clip_val of row ${r} is ${alphas[r]}`);
    const alpha = alphas[r] > eps ? alphas[r] : eps;
    for (let j = r * cols; j < (r + 1) * cols; j++) {
      if (!Number.isFinite(weights[j])) throw new RangeError(`row ${r}, column ${j - r * cols} is ${weights[j]}`);
      out[j] = quantizeOne(weights[j], alpha);
    }
  }
}
