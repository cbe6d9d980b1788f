// The SIMD matmul kernels, written once over a vector-traits class `Vec` that each ISA file
// (x86/avx2.cpp, x86/avx512.cpp, arm/neon.cpp) defines with its own intrinsics and compiles with
// its own flags. No intrinsics here.
//
// Vec provides:
//   kBytes                       bytes of one weight vector load (the super-chunk of a plane)
//   Codes, Acc, Fv               vector types: packed/unpacked codes, int32 sums, float lanes
//   load(p)                      kBytes of plane data (may read past the row: buffers are padded)
//   field<W, K>(v)               field K of width W of every byte, as codes 0 .. 2^W-1
//   acc_zero(), dot(acc, c, x)   acc += sum of 4 (or 2) code*int8 products per 32-bit lane
//   f_zero(), f_scale(acc, s, f) f += float(acc) * s[lane]   (s: kBytes/4 lane scales)
//   f_scale_by(acc, s, g, f)     f += float(acc) * s[lane] * g
//   f_codes(c, x, f)             f += float(code i) * x[i] for the kBytes codes of c
//   f_add_scaled(part, g, f)     f += part * g
//   f_rows(w, x, n, f), f_rows_f16(...)  f += w[i] * x[i] over n floats (natural order)
//   hsum(f)                      sum of the lanes
//   bxor(a, b), low64(a)         for the bandwidth probe
//
// A plane of width W stores 8/W fields per byte; field K of a loaded vector holds the codes of
// the columns that act_prepare_layout placed at [super-chunk][K] in the permuted activations.
#pragma once

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels.h"

namespace lb {
namespace simd {

template <int... K, typename Fn>
inline void for_fields(std::integer_sequence<int, K...>, Fn &&fn) {
  (fn(std::integral_constant<int, K>{}), ...);
}

// Columns one vector load of a plane of width W covers: whole 64-column chunks when the vector is
// at least a chunk (8W bytes), else part of one chunk (fields then interleave within it).
template <class Vec>
constexpr int64_t super_cols(int w) {
  return std::max<int64_t>((int64_t)Vec::kBytes * 8 / w, kChunkCols);
}

// First column of super-chunk s (its chunk's first column when it is part of a chunk).
template <class Vec, int W>
inline int64_t super_first_col(int64_t s) {
  return s * Vec::kBytes / (8 * W) * kChunkCols;
}

// Scale groups the SIMD kernels take: one per row, or groups spanning whole super-chunks.
template <class Vec>
bool supports_group(format f, int64_t group) {
  if (group == 0) return true;
  const format_traits &t = traits(f);
  for (int p = 0; p < t.n_planes; p++)
    if (group % super_cols<Vec>(t.plane_bits[p]) != 0) return false;
  return true;
}

// Per-row output assembly shared by the integer and float paths:
//   grouped:    y = sum_p 2^low_p * P_p + o * sum_g d_g X_g   (group scales already inside P_p)
//   per row:    y = d * (sum_p 2^low_p * P_p + o * X)
struct row_scales_view {
  const qtensor *w;
  int64_t r;
  float offset_term(const float *group_sums) const {
    const float *d = w->row_scales(r);
    float s = 0;
    for (int64_t g = 0; g < w->n_groups(); g++) s += d[g] * group_sums[g];
    return s;
  }
};

// Sums of the activations over each scale group (X_g), from 32-column segment sums.
inline void group_sums(const qtensor &w, const float *segment_sum, float *out) {
  const int64_t n_seg = (w.cols + 31) / 32, per = w.group ? w.group / 32 : n_seg;
  for (int64_t g = 0; g < w.n_groups(); g++) {
    float s = 0;
    for (int64_t i = g * per; i < std::min(n_seg, (g + 1) * per); i++) s += segment_sum[i];
    out[g] = s;
  }
}

// ---------------------------------------------------------------------------------------------
// Integer path: R rows x N vectors of one plane.

template <class Vec, int W, int R, int N, bool GROUPED>
inline void plane_q8(const qtensor &w, int64_t r, size_t plane_offset, const act_q8::layout &L,
                     int64_t v0, float (&out)[R][N]) {
  constexpr int F = 8 / W;
  constexpr int kLanes = Vec::kBytes / 4;
  const uint8_t *rows[R];
  for (int i = 0; i < R; i++) rows[i] = w.row(r + i) + plane_offset;
  const int8_t *xq[N];
  const float *xs[N];
  for (int n = 0; n < N; n++) {
    xq[n] = L.q.data() + (v0 + n) * L.q_stride;
    xs[n] = L.lane_scale.data() + (v0 + n) * L.scale_stride;
  }
  typename Vec::Fv facc[R][N];
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) facc[i][n] = Vec::f_zero();
  for (int64_t s = 0; s < L.n_super; s++) {
    typename Vec::Codes wv[R];
    for (int i = 0; i < R; i++) wv[i] = Vec::load(rows[i] + s * Vec::kBytes);
    typename Vec::Acc acc[R][N];
    for (int i = 0; i < R; i++)
      for (int n = 0; n < N; n++) acc[i][n] = Vec::acc_zero();
    for_fields(std::make_integer_sequence<int, F>{}, [&](auto k) {
      for (int i = 0; i < R; i++) {
        const typename Vec::Codes c = Vec::template field<W, decltype(k)::value>(wv[i]);
        for (int n = 0; n < N; n++)
          acc[i][n] = Vec::dot(acc[i][n], c, xq[n] + (s * F + decltype(k)::value) * Vec::kBytes);
      }
    });
    for (int n = 0; n < N; n++) {
      const float *scale = xs[n] + s * kLanes;
      for (int i = 0; i < R; i++) {
        if constexpr (GROUPED) {
          const float g = w.row_scales(r + i)[super_first_col<Vec, W>(s) / w.group];
          facc[i][n] = Vec::f_scale_by(acc[i][n], scale, g, facc[i][n]);
        } else {
          facc[i][n] = Vec::f_scale(acc[i][n], scale, facc[i][n]);
        }
      }
    }
  }
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) out[i][n] = Vec::hsum(facc[i][n]);
}

template <class Vec, int W, int R, int N, bool GROUPED>
inline void plane_f32(const qtensor &w, int64_t r, size_t plane_offset, const act_f32::layout &L,
                      int64_t v0, float (&out)[R][N]) {
  constexpr int F = 8 / W;
  const uint8_t *rows[R];
  for (int i = 0; i < R; i++) rows[i] = w.row(r + i) + plane_offset;
  typename Vec::Fv facc[R][N];
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) facc[i][n] = Vec::f_zero();
  for (int64_t s = 0; s < L.n_super; s++) {
    for (int i = 0; i < R; i++) {
      const typename Vec::Codes wv = Vec::load(rows[i] + s * Vec::kBytes);
      typename Vec::Fv part[N];
      for (int n = 0; n < N; n++) part[n] = Vec::f_zero();
      for_fields(std::make_integer_sequence<int, F>{}, [&](auto k) {
        const typename Vec::Codes c = Vec::template field<W, decltype(k)::value>(wv);
        for (int n = 0; n < N; n++) {
          const float *x = L.x.data() + (v0 + n) * L.stride + (s * F + decltype(k)::value) * Vec::kBytes;
          part[n] = Vec::f_codes(c, x, part[n]);
        }
      });
      for (int n = 0; n < N; n++) {
        if constexpr (GROUPED) {
          const float g = w.row_scales(r + i)[super_first_col<Vec, W>(s) / w.group];
          facc[i][n] = Vec::f_add_scaled(part[n], g, facc[i][n]);
        } else {
          facc[i][n] = Vec::f_add_scaled(part[n], 1.0f, facc[i][n]);
        }
      }
    }
  }
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) out[i][n] = Vec::hsum(facc[i][n]);
}

// One R x N tile of a quantized format, all planes. PlaneFn is plane_q8 or plane_f32.
template <class Vec, format FMT, int R, int N, bool GROUPED, bool INTEGER, class Act>
inline void tile(const qtensor &w, const Act &a, const float *gsums, int64_t r, int64_t v0,
                 float *y, int64_t ldy) {
  float total[R][N] = {};
  size_t plane_offset = 0;
  int low_bits = 0;
  for_fields(std::make_integer_sequence<int, kFormatTraits[FMT].n_planes>{}, [&](auto p) {
    constexpr int W = kFormatTraits[FMT].plane_bits[decltype(p)::value];
    float part[R][N];
    if constexpr (INTEGER)
      plane_q8<Vec, W, R, N, GROUPED>(w, r, plane_offset, a.layouts[width_slot(W)], v0, part);
    else
      plane_f32<Vec, W, R, N, GROUPED>(w, r, plane_offset, a.layouts[width_slot(W)], v0, part);
    for (int i = 0; i < R; i++)
      for (int n = 0; n < N; n++) total[i][n] += (float)(1 << low_bits) * part[i][n];
    plane_offset += plane_row_bytes(W, w.cols);
    low_bits += W;
  });
  const int64_t ng = w.n_groups();
  for (int i = 0; i < R; i++) {
    const row_scales_view rs{&w, r + i};
    for (int n = 0; n < N; n++) {
      const float off = kFormatTraits[FMT].offset * rs.offset_term(gsums + (v0 + n) * ng);
      const float scale = GROUPED ? 1.0f : w.row_scales(r + i)[0];
      y[(v0 + n) * ldy + r + i] = scale * total[i][n] + off;
    }
  }
}

// Rows [r0, r1) x all vectors: R x N tiles, then the leftover rows and vectors one at a time.
template <class Vec, format FMT, int R, int N, bool GROUPED, bool INTEGER, class Act>
void run_tiles(const qtensor &w, const Act &a, const float *gsums, int64_t r0, int64_t r1,
               float *y, int64_t ldy) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) {
    int64_t v = 0;
    for (; v + N <= a.n; v += N) tile<Vec, FMT, R, N, GROUPED, INTEGER>(w, a, gsums, r, v, y, ldy);
    for (; v < a.n; v++) tile<Vec, FMT, R, 1, GROUPED, INTEGER>(w, a, gsums, r, v, y, ldy);
  }
  for (; r < r1; r++)
    for (int64_t v = 0; v < a.n; v++) tile<Vec, FMT, 1, 1, GROUPED, INTEGER>(w, a, gsums, r, v, y, ldy);
}

template <class Vec, format FMT, bool INTEGER, class Args>
void gemm_quant(const Args &p) {
  const qtensor &w = *p.w;
  const auto &a = *p.a;
  // X_g for every vector and group: row independent, so once per call of this row range.
  const int64_t ng = w.n_groups(), n_seg = (w.cols + 31) / 32;
  std::vector<float> gsums(a.n * ng);
  for (int64_t v = 0; v < a.n; v++) group_sums(w, a.segment_sum.data() + v * n_seg, &gsums[v * ng]);
  // Decode (one vector): 4 rows share each activation load. Prefill: 2 rows x 4 vectors.
  if (a.n == 1) {
    if (w.group) run_tiles<Vec, FMT, 4, 1, true, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
    else run_tiles<Vec, FMT, 4, 1, false, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
  } else {
    if (w.group) run_tiles<Vec, FMT, Vec::kGemmRows, Vec::kGemmVecs, true, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
    else run_tiles<Vec, FMT, Vec::kGemmRows, Vec::kGemmVecs, false, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
  }
}

// ---------------------------------------------------------------------------------------------
// Float weights (f32, f16) x float activations, natural order.

template <class Vec, bool HALF>
void gemm_float(const gemm_f32_args &p) {
  const qtensor &w = *p.w;
  const act_f32 &a = *p.a;
  const int64_t cols = w.cols;
  for (int64_t r = p.r0; r < p.r1; r++) {
    for (int64_t v = 0; v < a.n; v++) {
      const float *x = a.x + v * cols;
      typename Vec::Fv f = Vec::f_zero();
      if constexpr (HALF)
        f = Vec::f_rows_f16(reinterpret_cast<const uint16_t *>(w.row(r)), x, cols, f);
      else
        f = Vec::f_rows(reinterpret_cast<const float *>(w.row(r)), x, cols, f);
      p.y[v * p.ldy + r] = Vec::hsum(f);
    }
  }
}

// Streaming read for bandwidth measurement: four independent XOR chains of full vectors.
template <class Vec>
uint64_t read_bytes(const uint8_t *p, size_t n) {
  typename Vec::Codes a = Vec::load(p), b = a, c = a, d = a;
  for (size_t i = 4 * Vec::kBytes; i + 4 * Vec::kBytes <= n; i += 4 * Vec::kBytes) {
    a = Vec::bxor(a, Vec::load(p + i));
    b = Vec::bxor(b, Vec::load(p + i + Vec::kBytes));
    c = Vec::bxor(c, Vec::load(p + i + 2 * Vec::kBytes));
    d = Vec::bxor(d, Vec::load(p + i + 3 * Vec::kBytes));
  }
  return Vec::low64(Vec::bxor(Vec::bxor(a, b), Vec::bxor(c, d)));
}

// The table of an ISA: every quantized format through the templates above.
template <class Vec>
kernel_table make_table(isa id) {
  kernel_table k{};
  k.id = id;
  k.vector_bytes = Vec::kBytes;
  k.gemm_f32[FORMAT_F32] = gemm_float<Vec, false>;
  k.gemm_f32[FORMAT_F16] = gemm_float<Vec, true>;
#define LB_QUANT_FORMAT(F)                                           \
  k.gemm_q8[F] = gemm_quant<Vec, F, true, gemm_q8_args>;             \
  k.gemm_f32[F] = gemm_quant<Vec, F, false, gemm_f32_args>;
  LB_QUANT_FORMAT(FORMAT_B1)
  LB_QUANT_FORMAT(FORMAT_T158)
  LB_QUANT_FORMAT(FORMAT_B2)
  LB_QUANT_FORMAT(FORMAT_B3)
  LB_QUANT_FORMAT(FORMAT_B4)
#undef LB_QUANT_FORMAT
  k.supports_group = supports_group<Vec>;
  k.read_bytes = read_bytes<Vec>;
  return k;
}

}  // namespace simd
}  // namespace lb
