// The SIMD matmul kernels and activation layouts, written once over a vector-traits class `Vec`
// that each ISA file (x86/avx2.cpp, x86/avx512.cpp, arm/neon*.cpp) defines with its intrinsics and
// compiles with its own flags. No intrinsics here.
//
// Vec provides:
//   kBytes                        bytes of one weight vector load (a super-chunk of a plane)
//   kAccs                         accumulators per row and field class, cycled over super-chunks
//   kFieldsInPlace                fields are masked in place (code << W*K) and each field keeps its
//                                 own sums, scaled by 2^-(W*K) at the end: one AND per field, no
//                                 shift (needs an unsigned-byte dot product: VPDPBUSD)
//   kSums                         integer sums (and field masks) a tile may keep in registers
//   kGemvRows, kGemmRows, kGemmVecs   tile shapes: rows x vectors (rows shrink to fit kSums)
//   Codes, Part, Sum, Fv          packed/unpacked codes, per-load partial sums, 32-bit row sums
//                                 (lane l = bytes 4l..4l+3 of each load), float lanes
//   load(p)                       kBytes of plane data (may read past the row: buffers are padded)
//   field<W, K>(v)                field K of width W of every byte, as codes 0 .. 2^W-1
//   field_in_place<W, K>(v)       field K left in place (code << W*K), when kFieldsInPlace
//   sum_zero(), dot(acc, codes, x)   acc += sum over each lane's bytes of code * int8 x
//   kPartIsSum                    dot accumulates 32-bit sums directly; otherwise it adds narrow
//                                 partials (part_zero()) that part_end(sum, part) widens into sum
//   f_zero(), f_scale(sum, s, f)  f += float(sum) * s[lane];  f_scale_by(sum, s, g, f) also * g
//   f_codes(c, x, f)              f += float(code i) * x[i] over the kBytes codes
//   f_add_scaled(part, g, f)      f += part * g
//   kFloats, f_load(p), f_fma(a, b, c), f_add(a, b)   float lanes per Fv; kFloats floats loaded
//                                 from f32 or widened from f16; a * b + c; a + b
//   f_set1(v), f_store(p, f)      v in every lane; store kFloats floats
//   hsum(f)                       sum of the lanes
//   bxor(a, b), low64(a)          for the bandwidth probe
//   kInterleaved                  has the interleaved GEMV's primitives (a load holds kBytes / 4
//                                 rows, one 32-bit lane each):
//   kInterleaveSums               sums it keeps in flight (parts x chains x fields), and
//   kInterleaveSumsMax            the most its registers hold
//   Bcast, broadcast4(x)          the 4 int8 at x for every 32-bit lane (a register holding
//                                 them in every lane, or the address where the multiply loads
//                                 and broadcasts them itself)
//   dot4(acc, codes, xb)          acc += per lane, its 4 codes x the 4 int8 of xb
//   sum_add(a, b), f_scale1(sum, s, f)   a + b;  f += float(sum) * s
//   kFusedB3                      has store(p, codes) and the two primitives below (3-bit GEMM
//                                 in one pass):
//   b3_high(p)                    from the 1-bit plane bytes of one 2-bit super-chunk (kBytes / 2
//                                 at p), each column's high bit at bit 2K of the byte where field
//                                 K of the 2-bit load holds the column's low bits
//   b3_codes<K>(lo, high)         the full 3-bit codes (0..7) of field K of a 2-bit load
//
// A plane of width W stores 8/W fields per byte; field K of a loaded vector holds the codes of the
// columns that layout_columns() places at [super-chunk][K] of the permuted activations.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/cpu.h"
#include "../core/fastmath.h"
#include "../core/pool.h"
#include "kernels.h"

// Kernel bodies are lambdas over compile-time indices; they must inline so that accumulators
// stay in registers.
#define LB_INLINE __attribute__((always_inline))

namespace lb {
namespace simd {

template <int... K, typename Fn>
LB_INLINE inline void for_each(std::integer_sequence<int, K...>, Fn &&fn) {
  (fn(std::integral_constant<int, K>{}), ...);
}
template <int COUNT, typename Fn>
LB_INLINE inline void unrolled(Fn &&fn) {
  for_each(std::make_integer_sequence<int, COUNT>{}, fn);
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

// How a plane of width W is summed: F fields per byte, KC field classes (F when fields stay in
// place, else 1), A accumulators cycled over super-chunks. Activation class of position (s, k, i):
// ((s % A) * KC + (KC > 1 ? k : 0)) * lanes + i / 4.
template <class Vec, int W>
struct plane_shape {
  static constexpr int F = 8 / W;
  static constexpr int KC = Vec::kFieldsInPlace ? F : 1;
  static constexpr int A = Vec::kAccs;
  static constexpr int kLanes = Vec::kBytes / 4;
  // Rows per pass that keep R x N x A x KC sums and the KC field masks within the register
  // budget (a power of two).
  static constexpr int rows(int R, int N) {
    int r = R;
    while (r > 1 && r * N * A * KC + (KC > 1 ? KC : 0) > Vec::kSums) r /= 2;
    return r;
  }
};

// Scale groups the SIMD kernels take: one per row, or groups spanning whole super-chunks.
template <class Vec>
bool supports_group(format f, int64_t group) {
  if (group == 0) return true;
  const format_traits &t = traits(f);
  for (int p = 0; p < t.n_planes; p++)
    if (group % super_cols<Vec>(t.plane_bits[p]) != 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Activation layouts

// x (cols) permuted into out (n_super * fields * V): contiguous pieces of whole chunks are copied,
// the last, partial chunk goes through the column map.
template <class Vec>
void permute(const float *x, int64_t cols, int w, float *out) {
  constexpr int V = Vec::kBytes;
  const int fields = 8 / w, chunk_bytes = 8 * w, piece = std::min(V, chunk_bytes);
  const std::vector<int32_t> &map = layout_columns(cols, w, V);
  const int64_t n_super = (int64_t)map.size() / (fields * V);
  for (int64_t s = 0; s < n_super; s++) {
    for (int k = 0; k < fields; k++) {
      float *dst = out + (s * fields + k) * V;
      for (int p0 = 0; p0 < V; p0 += piece) {
        const int64_t pos = s * V + p0, chunk = pos / chunk_bytes;
        if ((chunk + 1) * kChunkCols <= cols) {
          std::memcpy(dst + p0, x + chunk * kChunkCols + chunk_bytes * k + pos % chunk_bytes, piece * sizeof(float));
        } else {
          const int32_t *m = map.data() + (s * fields + k) * V + p0;
          for (int i = 0; i < piece; i++) dst[p0 + i] = m[i] >= 0 ? x[m[i]] : 0.0f;
        }
      }
    }
  }
}

// dst[i] = round(src[i] * inv[i]) for n values (restrict lets the loop vectorize).
LB_INLINE inline void quantize_run(const float *__restrict src, const float *__restrict inv, int8_t *__restrict dst,
                                   int n) {
  for (int i = 0; i < n; i++) dst[i] = (int8_t)(int32_t)round_even(src[i] * inv[i]);
}

// m[i] = max(m[i], |src[i]|). Written as a select so that it vectorizes (std::max left a branch in
// this loop, and activation preparation ran scalar).
LB_INLINE inline void max_abs_run(const float *__restrict src, float *__restrict m, int n) {
  for (int i = 0; i < n; i++) {
    const float a = std::fabs(src[i]);
    m[i] = a > m[i] ? a : m[i];
  }
}

// Runs fn(v, scratch) for every vector v, on the pool when there are many (prefill): a scratch
// vector per thread.
template <class Fn>
void for_each_vector(int64_t n, int threads, std::vector<float> &scratch, size_t scratch_size, Fn fn) {
  if (n < 8 || threads <= 1) {
    scratch.resize(scratch_size);
    for (int64_t v = 0; v < n; v++) fn(v, scratch.data());
    return;
  }
  const int64_t per = 4, tasks = (n + per - 1) / per;
  thread_pool::global().run(tasks, threads, [&](int64_t t) {
    static thread_local std::vector<float> local;
    local.resize(scratch_size);
    for (int64_t v = t * per; v < std::min(n, (t + 1) * per); v++) fn(v, local.data());
  });
}

// int8 per activation class (plane_shape): the scale of a class is its largest |x| / 127.
template <class Vec, int W>
void prepare_q8_plane(const float *x, int64_t n, int64_t cols, act_q8_plane &out, int threads) {
  using P = plane_shape<Vec, W>;
  constexpr int V = Vec::kBytes, A = P::A, KC = P::KC, F = P::F, lanes = P::kLanes;
  out.shape = act_shape{V, A, KC};
  out.n_super = ((int64_t)plane_row_bytes(W, cols) + V - 1) / V;
  out.q_stride = out.n_super * F * V;
  out.scale_stride = A * KC * lanes;
  out.q.resize(n * out.q_stride);
  out.scale.resize(n * out.scale_stride);
  for_each_vector(n, threads, out.scratch, out.q_stride, [&](int64_t v, float *xf) {
    permute<Vec>(x + v * cols, cols, W, xf);
    float amax[A * KC][V] = {};
    for (int64_t s = 0; s < out.n_super; s++)
      for (int k = 0; k < F; k++) max_abs_run(xf + (s * F + k) * V, amax[(s % A) * KC + (KC > 1 ? k : 0)], V);
    float inv[A * KC][V];
    float *scale = out.scale.data() + v * out.scale_stride;
    for (int c = 0; c < A * KC; c++) {
      // A field kept in place sums code << W*kc; its class scale carries the 2^-(W*kc).
      const float field_factor = 1.0f / (float)(1 << (W * (c % KC)));
      for (int l = 0; l < lanes; l++) {
        const float *m = &amax[c][4 * l];
        const float lane_max = std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
        scale[c * lanes + l] = lane_max / 127.0f * field_factor;
        for (int b = 0; b < 4; b++) inv[c][4 * l + b] = lane_max > 0 ? 127.0f / lane_max : 0.0f;
      }
    }
    int8_t *q = out.q.data() + v * out.q_stride;
    for (int64_t s = 0; s < out.n_super; s++)
      for (int k = 0; k < F; k++) {
        const int64_t at = (s * F + k) * V;
        quantize_run(xf + at, inv[(s % A) * KC + (KC > 1 ? k : 0)], q + at, V);
      }
  });
  out.built = true;
}

template <class Vec>
void prepare_q8(const float *x, int64_t n, int64_t cols, int w, act_q8_plane &out, int threads) {
  if (w == 1) prepare_q8_plane<Vec, 1>(x, n, cols, out, threads);
  else if (w == 2) prepare_q8_plane<Vec, 2>(x, n, cols, out, threads);
  else prepare_q8_plane<Vec, 4>(x, n, cols, out, threads);
}

// int8 per interleaved class (act_interleaved): field k of a chunk is the run of 8W columns
// starting at 8W*k, so each class is a few contiguous runs (cols: whole chunks). (Templates over
// Vec, as everything here: a function compiled once per ISA file must not merge across them.)
template <class Vec, int W>
void prepare_interleaved_plane(const float *x, int64_t cols, act_interleaved &out) {
  constexpr int F = 8 / W, run = 8 * W;
  const int64_t chunks = cols / kChunkCols, blocks = interleaved_blocks(chunks, W);
  out.q.resize(cols);
  out.scale.resize(blocks * F);
  // Eight interleaved partial sums: the loop vectorizes (one running sum is a serial chain).
  float part[8] = {};
  for (int64_t j = 0; j < cols; j += 8)  // cols: whole chunks
    for (int i = 0; i < 8; i++) part[i] += x[j + i];
  out.x_sum = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t c0 = interleaved_block_first(b, W), c1 = interleaved_block_end(b, chunks, W);
    float amax[F][run] = {};
    for (int64_t c = c0; c < c1; c++)
      for (int k = 0; k < F; k++) max_abs_run(x + c * kChunkCols + k * run, amax[k], run);
    float inv[F][run];
    for (int k = 0; k < F; k++) {
      float m = 0;
      for (int i = 0; i < run; i++) m = std::max(m, amax[k][i]);
      out.scale[b * F + k] = m / 127.0f;
      std::fill_n(inv[k], run, m > 0 ? 127.0f / m : 0.0f);
    }
    for (int64_t c = c0; c < c1; c++)
      for (int k = 0; k < F; k++) quantize_run(x + c * kChunkCols + k * run, inv[k], out.q.data() + c * kChunkCols + k * run, run);
  }
  out.built = true;
}

template <class Vec>
void prepare_interleaved(const float *x, int64_t cols, int w, act_interleaved &out) {
  if (w == 1) prepare_interleaved_plane<Vec, 1>(x, cols, out);
  else if (w == 2) prepare_interleaved_plane<Vec, 2>(x, cols, out);
  else prepare_interleaved_plane<Vec, 4>(x, cols, out);
}

template <class Vec>
void prepare_f32(const float *x, int64_t n, int64_t cols, int w, act_f32_plane &out, int threads) {
  constexpr int V = Vec::kBytes;
  const int fields = 8 / w;
  out.n_super = ((int64_t)plane_row_bytes(w, cols) + V - 1) / V;
  out.stride = out.n_super * fields * V;
  out.x.resize(n * out.stride);
  std::vector<float> unused;
  for_each_vector(n, threads, unused, 0, [&](int64_t v, float *) { permute<Vec>(x + v * cols, cols, w, out.x.data() + v * out.stride); });
  out.built = true;
}

// Float dot product of a row (f32 or f16) with a float vector x of n values: four independent
// FMA chains, plain (unmasked) loads; the last n % kFloats columns go scalar. (Tiling several rows
// per pass measured slower from DRAM here: interleaved streams defeat the hardware prefetcher.)
inline float widen(float v) { return v; }
inline float widen(uint16_t h) { return f16_to_f32(h); }

template <class Vec, class T>
LB_INLINE inline float dot_row(const T *w, const float *x, int64_t n) {
  constexpr int L = Vec::kFloats, K = 4;
  typename Vec::Fv acc[K];
  for (int k = 0; k < K; k++) acc[k] = Vec::f_zero();
  int64_t i = 0;
  for (; i + K * L <= n; i += K * L)
    for (int k = 0; k < K; k++) acc[k] = Vec::f_fma(Vec::f_load(w + i + k * L), Vec::f_load(x + i + k * L), acc[k]);
  for (; i + L <= n; i += L) acc[0] = Vec::f_fma(Vec::f_load(w + i), Vec::f_load(x + i), acc[0]);
  float tail = 0;
  for (; i < n; i++) tail += widen(w[i]) * x[i];
  return Vec::hsum(Vec::f_add(Vec::f_add(acc[0], acc[1]), Vec::f_add(acc[2], acc[3]))) + tail;
}

// Attention over a KV cache (kernel_table::attention_f32 / attention_f16).
// Scores over tiled, transposed keys: for a run of NB vectors of positions (within one tile) and Q
// queries, each head dimension j adds the tile's key row j (NB loads shared by the Q queries)
// times q[i][j] (a broadcast) into Q x NB accumulators. The last vector may cover positions past
// count (inside its tile), computed but not stored.
template <class Vec, class T, int Q, int NB>
LB_INLINE inline void score_run(const kv_columns<T> &keys, const float *q, float *s, int64_t ld_s, int64_t p) {
  constexpr int L = Vec::kFloats;
  const int64_t n = keys.n, count = keys.count;
  const T *tile = keys.data + key_index(p, 0, keys.tile_stride);
  typename Vec::Fv acc[Q][NB];
  for (int k = 0; k < Q; k++)
    for (int b = 0; b < NB; b++) acc[k][b] = Vec::f_zero();
  for (int64_t j = 0; j < n; j++) {
    typename Vec::Fv key[NB];
    for (int b = 0; b < NB; b++) key[b] = Vec::f_load(tile + j * kKeyTile + b * L);
    for (int k = 0; k < Q; k++) {
      const typename Vec::Fv qj = Vec::f_set1(q[k * n + j]);
      for (int b = 0; b < NB; b++) acc[k][b] = Vec::f_fma(key[b], qj, acc[k][b]);
    }
  }
  const int64_t stored = std::min<int64_t>(NB * L, count - p);
  for (int k = 0; k < Q; k++) {
    float *out = s + k * ld_s + p;
    if (stored == NB * L) {
      for (int b = 0; b < NB; b++) Vec::f_store(out + b * L, acc[k][b]);
    } else {
      float part[NB * L];
      for (int b = 0; b < NB; b++) Vec::f_store(part + b * L, acc[k][b]);
      std::copy_n(part, stored, out);
    }
  }
}

// Runs of two vectors of positions, then one; queries in blocks of four, then one block of the
// rest (a GQA group of 3, as MobileLLM's, computes no fourth query to throw away). The queries come
// scaled (once per token, by the model), so the inner loop broadcasts them straight from memory.
template <class Vec, class T>
void attention_scores(const kv_columns<T> &keys, const float *q, int nq, float *s, int64_t ld_s) {
  constexpr int L = Vec::kFloats;
  static_assert(kKeyTile % (2 * L) == 0, "a run of positions must stay inside a key tile");
  const int64_t n = keys.n, count = keys.count;
  auto run = [&](auto vectors, int64_t p) LB_INLINE {
    constexpr int NB = decltype(vectors)::value;
    int i = 0;
    for (; i + 4 <= nq; i += 4) score_run<Vec, T, 4, NB>(keys, q + i * n, s + i * ld_s, ld_s, p);
    const float *qi = q + i * n;
    float *si = s + i * ld_s;
    switch (nq - i) {
      case 3: score_run<Vec, T, 3, NB>(keys, qi, si, ld_s, p); break;
      case 2: score_run<Vec, T, 2, NB>(keys, qi, si, ld_s, p); break;
      case 1: score_run<Vec, T, 1, NB>(keys, qi, si, ld_s, p); break;
    }
  };
  int64_t p = 0;
  for (; p + 2 * L <= count; p += 2 * L) run(std::integral_constant<int, 2>(), p);
  for (; p < count; p += L) run(std::integral_constant<int, 1>(), p);
}

// Weighted sum of value rows, y[i] += sum_p a[i][p] * value(p), for blocks of QB queries x NB
// vectors of head dimensions: the accumulators stay in registers over all positions and each value
// load (widened once from f16) serves the QB queries. Head dimensions past the last whole vector
// go scalar.
template <class Vec, class T, int QB, int NB>
LB_INLINE inline void mix_block(const kv_rows<T> &kv, const float *a, int64_t ld_a, float *y, int64_t j) {
  constexpr int L = Vec::kFloats;
  typename Vec::Fv acc[QB][NB];
  for (int k = 0; k < QB; k++)
    for (int b = 0; b < NB; b++) acc[k][b] = Vec::f_zero();
  for (int64_t p = 0; p < kv.count; p++) {
    typename Vec::Fv value[NB];
    const T *row = kv.data + row_index(p, kv.stride, kv.tile_stride) + j;
    for (int b = 0; b < NB; b++) value[b] = Vec::f_load(row + b * L);
    for (int k = 0; k < QB; k++) {
      const typename Vec::Fv weight = Vec::f_set1(a[k * ld_a + p]);
      for (int b = 0; b < NB; b++) acc[k][b] = Vec::f_fma(value[b], weight, acc[k][b]);
    }
  }
  for (int k = 0; k < QB; k++)
    for (int b = 0; b < NB; b++) {
      float *out = y + k * kv.n + j + b * L;
      Vec::f_store(out, Vec::f_add(Vec::f_load(out), acc[k][b]));
    }
}

template <class Vec, class T, int QB>
void mix_queries(const kv_rows<T> &kv, const float *a, int64_t ld_a, float *y) {
  // Four vectors per query with AVX-512 (16 accumulators of its 32 registers), two elsewhere
  // (AVX2 has 16 registers in all).
  constexpr int L = Vec::kFloats, NB = L >= 16 ? 4 : 2;
  int64_t j = 0;
  for (; j + NB * L <= kv.n; j += NB * L) mix_block<Vec, T, QB, NB>(kv, a, ld_a, y, j);
  for (; j + L <= kv.n; j += L) mix_block<Vec, T, QB, 1>(kv, a, ld_a, y, j);
  for (; j < kv.n; j++)
    for (int k = 0; k < QB; k++) {
      float sum = 0;
      for (int64_t p = 0; p < kv.count; p++) sum += a[k * ld_a + p] * widen(kv.data[row_index(p, kv.stride, kv.tile_stride) + j]);
      y[k * kv.n + j] += sum;
    }
}

template <class Vec, class T>
void attention_mix(const kv_rows<T> &kv, const float *a, int64_t ld_a, int nq, float *y) {
  int i = 0;
  for (; i + 4 <= nq; i += 4) mix_queries<Vec, T, 4>(kv, a + i * ld_a, ld_a, y + i * kv.n);
  const float *ai = a + i * ld_a;
  float *yi = y + i * kv.n;
  switch (nq - i) {  // a GQA group of 3 (MobileLLM) stays one block
    case 3: mix_queries<Vec, T, 3>(kv, ai, ld_a, yi); break;
    case 2: mix_queries<Vec, T, 2>(kv, ai, ld_a, yi); break;
    case 1: mix_queries<Vec, T, 1>(kv, ai, ld_a, yi); break;
  }
}

// ---------------------------------------------------------------------------------------------
// Output assembly shared by the integer and float paths:
//   per row:  y = d * (sum_p 2^low_p * P_p + o * X)
//   grouped:  y = sum_p 2^low_p * P_p + o * sum_g d_g X_g   (group scales already inside P_p)
// X = sums of the float activations (over the row or group).

inline float offset_sum(const qtensor &w, int64_t r, const float *group_sums) {
  const float *d = w.row_scales(r);
  float s = 0;
  for (int64_t g = 0; g < w.n_groups(); g++) s += d[g] * group_sums[g];
  return s;
}

inline void group_sums(const qtensor &w, const float *segment_sum, float *out) {
  const int64_t n_seg = (w.cols + 31) / 32, per = w.group ? w.group / 32 : n_seg;
  for (int64_t g = 0; g < w.n_groups(); g++) {
    float s = 0;
    for (int64_t i = g * per; i < std::min(n_seg, (g + 1) * per); i++) s += segment_sum[i];
    out[g] = s;
  }
}

// Where one plane of a tile's rows lies: row i of the tile at first + i * stride (the stride is
// computed once per call: a format's row size sums its planes, which costs too much per tile).
struct plane_rows {
  const uint8_t *first;
  size_t stride;
  const uint8_t *row(int i) const { return first + i * stride; }
};

// ---------------------------------------------------------------------------------------------
// Integer path: RP rows x N vectors of one plane per pass, each row summed in integer registers
// (A accumulators x KC field classes) and turned to float once at the end (or at group ends).

template <class Vec, int W, int RP, int N, bool GROUPED>
LB_INLINE inline void plane_q8_pass(const qtensor &w, int64_t r, plane_rows pr, const act_q8_plane &L, int64_t v0,
                                    float factor, float *out /* [RP][N], += factor * sums */) {
  using P = plane_shape<Vec, W>;
  constexpr int F = P::F, A = P::A, KC = P::KC, V = Vec::kBytes, kLanes = P::kLanes;
  const uint8_t *rows[RP];
  for (int i = 0; i < RP; i++) rows[i] = pr.row(i);
  const int8_t *xq[N];
  const float *xs[N];
  for (int n = 0; n < N; n++) {
    xq[n] = L.q.data() + (v0 + n) * L.q_stride;
    xs[n] = L.scale.data() + (v0 + n) * L.scale_stride;
  }
  typename Vec::Sum sum[RP][N][A][KC];
  typename Vec::Fv facc[RP][N];
  for (int i = 0; i < RP; i++)
    for (int n = 0; n < N; n++) {
      facc[i][n] = Vec::f_zero();
      for (int a = 0; a < A; a++)
        for (int kc = 0; kc < KC; kc++) sum[i][n][a][kc] = Vec::sum_zero();
    }
  // Folds the sums into facc with their class scales (times the group scale when grouped) and
  // clears them.
  auto fold = [&](int i, float group_scale) LB_INLINE {
    for (int n = 0; n < N; n++)
      for (int a = 0; a < A; a++)
        for (int kc = 0; kc < KC; kc++) {
          const float *s = xs[n] + (a * KC + kc) * kLanes;
          if constexpr (GROUPED) facc[i][n] = Vec::f_scale_by(sum[i][n][a][kc], s, group_scale, facc[i][n]);
          else facc[i][n] = Vec::f_scale(sum[i][n][a][kc], s, facc[i][n]);
          sum[i][n][a][kc] = Vec::sum_zero();
        }
  };
  const int64_t n_super = L.n_super;
  // The rows of the next tile, one tile ahead: rows are contiguous, so this streams the matrix
  // ahead of use. Hardware prefetchers alone lose track of RP interleaved short streams (0.3 of
  // DRAM bandwidth without this). Each line is requested twice, a step apart (64-byte steps also
  // ask for the next line; narrower vectors already touch a line twice or more): with one request
  // per line AVX-512 streamed 2- and 4-bit rows at 0.65-0.8 of DRAM bandwidth and AVX2, asking
  // twice per line, at 0.93 (likely dropped prefetches when the miss queue is full); with two,
  // llama-1b 2-bit decodes 17% faster on one core. prefetcht0/nta measured far worse than t2.
  const size_t ahead = std::max<size_t>(RP * pr.stride, 8192);
  auto step = [&](int64_t s, auto acc_index) LB_INLINE {
    constexpr int a = decltype(acc_index)::value;
    typename Vec::Codes wv[RP];
#pragma GCC unroll 16
    for (int i = 0; i < RP; i++) {
      __builtin_prefetch(rows[i] + ahead + s * V, 0, 1);
      if constexpr (V >= 64) __builtin_prefetch(rows[i] + ahead + s * V + 64, 0, 1);
      wv[i] = Vec::load(rows[i] + s * V);
    }
    if constexpr (Vec::kPartIsSum) {
      // The dot product accumulates straight into the row sums.
      unrolled<F>([&](auto k) LB_INLINE {
        constexpr int K = decltype(k)::value, kc = KC > 1 ? K : 0;
#pragma GCC unroll 16
        for (int i = 0; i < RP; i++) {
          typename Vec::Codes c;
          if constexpr (KC > 1) c = Vec::template field_in_place<W, K>(wv[i]);
          else c = Vec::template field<W, K>(wv[i]);
#pragma GCC unroll 16
          for (int n = 0; n < N; n++) sum[i][n][a][kc] = Vec::dot(sum[i][n][a][kc], c, xq[n] + (s * F + K) * V);
        }
      });
    } else {
      // Narrow partial sums of one load, widened into the row sums once.
      typename Vec::Part part[RP][N];
      for (int i = 0; i < RP; i++)
        for (int n = 0; n < N; n++) part[i][n] = Vec::part_zero();
      unrolled<F>([&](auto k) LB_INLINE {
        constexpr int K = decltype(k)::value;
        for (int i = 0; i < RP; i++) {
          const typename Vec::Codes c = Vec::template field<W, K>(wv[i]);
          for (int n = 0; n < N; n++) part[i][n] = Vec::dot(part[i][n], c, xq[n] + (s * F + K) * V);
        }
      });
      for (int i = 0; i < RP; i++)
        for (int n = 0; n < N; n++) Vec::part_end(sum[i][n][a][0], part[i][n]);
    }
    if constexpr (GROUPED) {
      const int64_t g = super_first_col<Vec, W>(s) / w.group;
      if (s + 1 == n_super || super_first_col<Vec, W>(s + 1) / w.group != g)
        for (int i = 0; i < RP; i++) fold(i, w.row_scales(r + i)[g]);
    }
  };
  int64_t s = 0;
  for (; s + A <= n_super; s += A) unrolled<A>([&](auto a) LB_INLINE { step(s + decltype(a)::value, a); });
  unrolled<A>([&](auto a) LB_INLINE {
    if (s + decltype(a)::value < n_super) step(s + decltype(a)::value, a);
  });
  for (int i = 0; i < RP; i++) {
    if constexpr (!GROUPED) fold(i, 1.0f);
    for (int n = 0; n < N; n++) out[i * N + n] += factor * Vec::hsum(facc[i][n]);
  }
}

template <class Vec, int W, int R, int N, bool GROUPED>
inline void plane_q8(const qtensor &w, int64_t r, plane_rows pr, const act_q8_plane &L, int64_t v0,
                     float factor, float (&out)[R][N]) {
  constexpr int RP = plane_shape<Vec, W>::rows(R, N);
  for (int i = 0; i < R; i += RP)
    plane_q8_pass<Vec, W, RP, N, GROUPED>(w, r + i, plane_rows{pr.row(i), pr.stride}, L, v0, factor, &out[i][0]);
}

// Float path: codes widened to float and multiplied with float activations.
template <class Vec, int W, int R, int N, bool GROUPED>
inline void plane_f32(const qtensor &w, int64_t r, plane_rows pr, const act_f32_plane &L, int64_t v0,
                      float factor, float (&out)[R][N]) {
  constexpr int F = 8 / W;
  const uint8_t *rows[R];
  for (int i = 0; i < R; i++) rows[i] = pr.row(i);
  typename Vec::Fv facc[R][N];
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) facc[i][n] = Vec::f_zero();
  for (int64_t s = 0; s < L.n_super; s++) {
    for (int i = 0; i < R; i++) {
      const typename Vec::Codes wv = Vec::load(rows[i] + s * Vec::kBytes);
      typename Vec::Fv part[N];
      for (int n = 0; n < N; n++) part[n] = Vec::f_zero();
      unrolled<F>([&](auto k) LB_INLINE {
        const typename Vec::Codes c = Vec::template field<W, decltype(k)::value>(wv);
        for (int n = 0; n < N; n++) {
          const float *x = L.x.data() + (v0 + n) * L.stride + (s * F + decltype(k)::value) * Vec::kBytes;
          part[n] = Vec::f_codes(c, x, part[n]);
        }
      });
      const float g = GROUPED ? w.row_scales(r + i)[super_first_col<Vec, W>(s) / w.group] : 1.0f;
      for (int n = 0; n < N; n++) facc[i][n] = Vec::f_add_scaled(part[n], g, facc[i][n]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) out[i][n] += factor * Vec::hsum(facc[i][n]);
}

// One R x N tile of a quantized format, all planes (stride: w.row_stride()).
template <class Vec, format FMT, int R, int N, bool GROUPED, bool INTEGER, class Act>
inline void tile(const qtensor &w, size_t stride, const Act &a, const float *gsums, int64_t r, int64_t v0, float *y,
                 int64_t ldy) {
  float total[R][N] = {};
  const uint8_t *first = w.row(r, stride);
  size_t plane_offset = 0;
  int low_bits = 0;
  unrolled<kFormatTraits[FMT].n_planes>([&](auto p) LB_INLINE {
    constexpr int W = kFormatTraits[FMT].plane_bits[decltype(p)::value];
    // Each plane adds its scalar sums, times 2^low_bits, straight into total: a vector load of
    // sums just stored one by one would stall on store forwarding.
    const float factor = (float)(1 << low_bits);
    const plane_rows rows{first + plane_offset, stride};
    if constexpr (INTEGER)
      plane_q8<Vec, W, R, N, GROUPED>(w, r, rows, a.planes[width_slot(W)], v0, factor, total);
    else
      plane_f32<Vec, W, R, N, GROUPED>(w, r, rows, a.planes[width_slot(W)], v0, factor, total);
    plane_offset += plane_row_bytes(W, w.cols);
    low_bits += W;
  });
  const int64_t ng = w.n_groups();
  for (int i = 0; i < R; i++)
    for (int n = 0; n < N; n++) {
      const float off = kFormatTraits[FMT].offset * offset_sum(w, r + i, gsums + (v0 + n) * ng);
      const float scale = GROUPED ? 1.0f : w.row_scales(r + i)[0];
      y[(v0 + n) * ldy + r + i] = scale * total[i][n] + off;
    }
}

// Interleaved GEMV (qtensor_interleave): the 64 bytes of word m of a group hold that word of its
// 16 rows, one 32-bit lane each (P vector loads of kBytes). Field K of a word of width W covers 4
// columns adjacent in natural order (8W*K + 4m .. + 3 of its chunk), so it is multiplied by one
// 4-byte broadcast of the natural-order activations: no permuted copy of x. b3 reads fused words
// (qtensor.h) the same way, against the 1-bit activations. A pass takes PP of the P parts with
// kInterleaveSums sums in all (enough dot-product chains in flight); the sums fold into float
// once per block of interleaved_block_cols columns (the activation classes), and the group ends
// with one multiply by its row scales and a store: none of the per-row horizontal sums and folds
// that cost the row-major kernels about as much as a 1152-column row's data. A group is one
// sequential stream, left to the hardware prefetcher: a software prefetch 8 KiB ahead made 4-bit
// rows 30% slower from DRAM (one thread) and 10% slower in cache, and changed nothing for 1 and 2
// bits on 4096-column rows. (It made b3's two planes 40% faster from DRAM, when they were two
// streams.) Long 1-bit rows are the exception (kInterleavedAhead).

// The sums of one-plane words of width W for PP parts, A chains per field.
template <class Vec, int W, int PP, int A>
struct plane_sums {
  static constexpr int F = 8 / W, S = 2 * W;  // fields per byte, 4-byte words per row and chunk
  static_assert(S % A == 0, "whole chains per chunk");
  const act_interleaved *x;  // its activations
  typename Vec::Sum acc[PP][A][F];

  LB_INLINE void zero() {
    for (int q = 0; q < PP; q++)
      for (int a = 0; a < A; a++)
        for (int k = 0; k < F; k++) acc[q][a][k] = Vec::sum_zero();
  }
  // Chunk c's words in `group`, parts p0 .. p0 + PP - 1.
  LB_INLINE void chunk(const uint8_t *group, int64_t c, int p0) {
    const uint8_t *words = group + c * S * 4 * kInterleaveRows;
    const int8_t *xc = x->q.data() + c * kChunkCols;
    unrolled<S>([&](auto j_c) LB_INLINE {
      constexpr int j = decltype(j_c)::value, a = j % A;
      typename Vec::Codes codes[PP];
      for (int q = 0; q < PP; q++) codes[q] = Vec::load(words + j * 4 * kInterleaveRows + (p0 + q) * Vec::kBytes);
      unrolled<F>([&](auto k_c) LB_INLINE {
        constexpr int K = decltype(k_c)::value;
        const typename Vec::Bcast xb = Vec::broadcast4(xc + 8 * W * K + 4 * j);
        for (int q = 0; q < PP; q++) {
          typename Vec::Codes field;
          if constexpr (Vec::kFieldsInPlace) field = Vec::template field_in_place<W, K>(codes[q]);
          else field = Vec::template field<W, K>(codes[q]);
          acc[q][a][K] = Vec::dot4(acc[q][a][K], field, xb);
        }
      });
    });
  }
  // Block b's sums into f, times their class scales.
  LB_INLINE void fold(int64_t b, typename Vec::Fv (&f)[PP]) {
    unrolled<F>([&](auto k_c) LB_INLINE {
      constexpr int K = decltype(k_c)::value;
      // fields in place sum code << W*K
      const float s = x->scale[b * F + K] / (Vec::kFieldsInPlace ? (float)(1 << (W * K)) : 1.0f);
      for (int q = 0; q < PP; q++) {
        typename Vec::Sum total = acc[q][0][K];
        for (int a = 1; a < A; a++) total = Vec::sum_add(total, acc[q][a][K]);
        f[q] = Vec::f_scale1(total, s, f[q]);
      }
    });
  }
};

// The sums of fused 3-bit words (qtensor.h) for PP parts, against the 1-bit activations: one per
// class K < 6 (a whole code in place) and two for each of classes 6 and 7 (the code's low two
// bits, and its high bit, which weighs 4): 10 multiply-adds per 8 codes, where b3's row-major
// planes take 16.
template <class Vec, int PP>
struct fused3_sums {
  struct field_spec {
    int word, w, k, cls, weight;  // word (A, B, C), field width and index, activation class
  };
  static constexpr int kSums = 10;
  static constexpr field_spec kFields[kSums] = {{0, 3, 0, 0, 1}, {0, 3, 1, 1, 1}, {1, 3, 0, 2, 1}, {1, 3, 1, 3, 1},
                                                {2, 3, 0, 4, 1}, {2, 3, 1, 5, 1}, {0, 2, 3, 6, 1}, {1, 2, 3, 7, 1},
                                                {2, 1, 6, 6, 4}, {2, 1, 7, 7, 4}};
  static constexpr int S = 6;  // words per chunk: two sets of A, B, C
  const act_interleaved *x;
  typename Vec::Sum acc[PP][kSums];

  LB_INLINE void zero() {
    for (int q = 0; q < PP; q++)
      for (int i = 0; i < kSums; i++) acc[q][i] = Vec::sum_zero();
  }
  LB_INLINE void chunk(const uint8_t *group, int64_t c, int p0) {
    const int8_t *xc = x->q.data() + c * kChunkCols;
    unrolled<2>([&](auto m_c) LB_INLINE {
      constexpr int m = decltype(m_c)::value;
      const uint8_t *words = group + (c * S + 3 * m) * 4 * kInterleaveRows;
      typename Vec::Codes v[PP][3];
      for (int q = 0; q < PP; q++)
        for (int i = 0; i < 3; i++) v[q][i] = Vec::load(words + i * 4 * kInterleaveRows + (p0 + q) * Vec::kBytes);
      unrolled<kSums>([&](auto i_c) LB_INLINE {
        constexpr int i = decltype(i_c)::value;
        constexpr field_spec F = kFields[i];
        const typename Vec::Bcast xb = Vec::broadcast4(xc + 8 * F.cls + 4 * m);
        for (int q = 0; q < PP; q++) {
          typename Vec::Codes field;
          if constexpr (Vec::kFieldsInPlace) field = Vec::template field_in_place<F.w, F.k>(v[q][F.word]);
          else field = Vec::template field<F.w, F.k>(v[q][F.word]);
          acc[q][i] = Vec::dot4(acc[q][i], field, xb);
        }
      });
    });
  }
  LB_INLINE void fold(int64_t b, typename Vec::Fv (&f)[PP]) {
    unrolled<kSums>([&](auto i_c) LB_INLINE {
      constexpr int i = decltype(i_c)::value;
      constexpr field_spec F = kFields[i];
      const float s = x->scale[b * 8 + F.cls] * F.weight / (Vec::kFieldsInPlace ? (float)(1 << (F.w * F.k)) : 1.0f);
      for (int q = 0; q < PP; q++) f[q] = Vec::f_scale1(acc[q][i], s, f[q]);
    });
  }
};

// The sums a format's interleaved words need, PP parts a pass.
template <class Vec, format FMT>
struct interleaved_sums {
  static constexpr int W = kFormatTraits[FMT].plane_bits[0];
  static constexpr int per_part = interleaved_fused(FMT) ? fused3_sums<Vec, 1>::kSums : 8 / W;
  static constexpr int P = kInterleaveRows / (Vec::kBytes / 4);  // parts of a group
  static constexpr int PP = std::max(1, std::min(P, Vec::kInterleaveSums / per_part));
  // Chains per field: enough for kInterleaveSums sums, and two where the registers hold them: with
  // one, the two words of a 1-bit chunk queue on one multiply-add chain (6% slower on AVX-512).
  static constexpr int chains_wanted = Vec::kInterleaveSums / (PP * per_part);
  static constexpr int chains_room = Vec::kInterleaveSumsMax / (PP * per_part);
  static constexpr int A = std::max({1, chains_wanted, std::min(2, chains_room)});
  static_assert(P % PP == 0, "whole parts per pass");
  using type = std::conditional_t<interleaved_fused(FMT), fused3_sums<Vec, PP>, plane_sums<Vec, W, PP, A>>;
};

// 1-bit codes in 64-byte loads (AVX-512) are also requested 8 KiB ahead in software. The kernel
// takes them at about the rate one core reads DRAM, and on long rows the hardware prefetcher fell
// behind: 4096 x 11008 read at 0.5-0.7 of the bandwidth on one thread and 0.6-0.8 on two (a
// 16-row group's 22 KiB of codes and the 11 KiB of activations no longer fit L1 together), 0.7-0.8
// and 0.9-1.0 with the requests; the other shapes within noise. Wider codes measured 20-30% slower
// with them on one thread (b2, t158, b4).
template <class Vec, format FMT>
constexpr bool kInterleavedAhead = Vec::kBytes == 64 && !interleaved_fused(FMT) && kFormatTraits[FMT].plane_bits[0] == 1;
constexpr size_t kInterleavedAheadBytes = 8 << 10;
// A group's row scales (one line of 16 floats, read at the group's end) are a second, sparse
// stream; requested four groups ahead, DRAM-bound GEMVs ran 1-3% faster on short rows (1152-1280
// columns, the kernel bench's mean +1.5%); end to end within noise.
constexpr int64_t kScalesAhead = 4 * kInterleaveRows;

template <class Vec, format FMT>
void gemv_interleaved(const gemm_q8_args &p) {
  using Info = interleaved_sums<Vec, FMT>;
  constexpr int L = Vec::kBytes / 4, P = Info::P, PP = Info::PP;
  typename Info::type sums{&p.a->interleaved[width_slot(interleaved_act_width(FMT))], {}};
  const qtensor &w = *p.w;
  const size_t stride = w.row_stride();
  const typename Vec::Fv offset = Vec::f_set1(kFormatTraits[FMT].offset * sums.x->x_sum);
  constexpr int AW = interleaved_act_width(FMT);
  const int64_t chunks = w.cols / kChunkCols, blocks = interleaved_blocks(chunks, AW);
  const size_t chunk_bytes = stride / chunks * kInterleaveRows;  // a chunk's words of a group
  for (int64_t r = p.r0; r < p.r1; r += kInterleaveRows) {
    if (r + kScalesAhead < w.rows) __builtin_prefetch(w.row_scales(r + kScalesAhead), 0, 3);
    const uint8_t *group = w.data->data() + (size_t)r * stride;
    for (int p0 = 0; p0 < P; p0 += PP) {
      typename Vec::Fv f[PP];
      for (int q = 0; q < PP; q++) f[q] = Vec::f_zero();
      for (int64_t b = 0; b < blocks; b++) {
        sums.zero();
        const int64_t c1 = interleaved_block_end(b, chunks, AW);
        for (int64_t c = interleaved_block_first(b, AW); c < c1; c++) {
          if constexpr (kInterleavedAhead<Vec, FMT>)
            for (size_t at = 0; at < chunk_bytes; at += 64) __builtin_prefetch(group + c * chunk_bytes + kInterleavedAheadBytes + at, 0, 1);
          sums.chunk(group, c, p0);
        }
        sums.fold(b, f);
      }
      // y = d * (sum + offset * X), L rows per store
      for (int q = 0; q < PP; q++) {
        const int64_t row = r + (p0 + q) * L;
        Vec::f_store(p.y + row, Vec::f_fma(Vec::f_add(f[q], offset), Vec::f_load(w.row_scales(row)), Vec::f_zero()));
      }
    }
  }
}

// Cache blocking of a GEMM: rows [r0, r1) x vectors [0, n) as blocks of about kBlockBytes of
// weights (rows, a multiple of row_align) by kBlockBytes of activations (vectors, a multiple of
// vec_align), fn(r0, r1, v0, v1) for each, vectors inner: a block's weights and activations stay
// in L2 while the other side sweeps them. Without it every tile of rows read all n vectors'
// activations again from L3 (a 512-token prompt's are 4 MiB for 8192 columns).
constexpr size_t kBlockBytes = 128 << 10;
template <class Fn>
void for_each_block(int64_t r0, int64_t r1, int64_t n, int row_align, int vec_align, size_t row_bytes,
                    size_t vec_bytes, Fn fn) {
  auto block = [](size_t item_bytes, int align) {
    return std::max<int64_t>(align, (int64_t)(kBlockBytes / std::max<size_t>(item_bytes, 1)) / align * align);
  };
  const int64_t rb = block(row_bytes, row_align), vb = block(vec_bytes, vec_align);
  for (int64_t r = r0; r < r1; r += rb)
    for (int64_t v = 0; v < n; v += vb) fn(r, std::min(r1, r + rb), v, std::min(n, v + vb));
}

// Bytes of int8 activations one vector of `a` holds over every plane width built.
inline size_t act_vector_bytes(const act_q8 &a) {
  size_t bytes = 0;
  for (const act_q8_plane &p : a.planes)
    if (p.built) bytes += p.q_stride;
  return bytes;
}
inline size_t act_vector_bytes(const act_f32 &a) {
  size_t bytes = 0;
  for (const act_f32_plane &p : a.planes)
    if (p.built) bytes += p.stride * sizeof(float);
  return bytes;
}

// Rows [r0, r1) x vectors [v0, v1): R x N tiles, then the leftover rows and vectors one at a time.
template <class Vec, format FMT, int R, int N, bool GROUPED, bool INTEGER, class Act>
void run_tiles(const qtensor &w, const Act &a, const float *gsums, int64_t r0, int64_t r1, int64_t v0, int64_t v1,
               float *y, int64_t ldy) {
  const size_t stride = w.row_stride();
  int64_t r = r0;
  for (; r + R <= r1; r += R) {
    // Scales live apart from the codes, where the code prefetch does not reach: fetch them a few
    // tiles ahead, or each new line of them stalls a tile on a DRAM miss.
    __builtin_prefetch(w.row_scales(std::min(r + 8 * R, w.rows - 1)), 0, 1);
    int64_t v = v0;
    for (; v + N <= v1; v += N) tile<Vec, FMT, R, N, GROUPED, INTEGER>(w, stride, a, gsums, r, v, y, ldy);
    for (; v < v1; v++) tile<Vec, FMT, R, 1, GROUPED, INTEGER>(w, stride, a, gsums, r, v, y, ldy);
  }
  for (; r < r1; r++)
    for (int64_t v = v0; v < v1; v++) tile<Vec, FMT, 1, 1, GROUPED, INTEGER>(w, stride, a, gsums, r, v, y, ldy);
}

// run_tiles over all vectors, in cache blocks when there are several.
template <class Vec, format FMT, int R, int N, bool GROUPED, bool INTEGER, class Act>
void run_blocks(const qtensor &w, const Act &a, const float *gsums, int64_t r0, int64_t r1, float *y, int64_t ldy) {
  if (a.n == 1) return run_tiles<Vec, FMT, R, N, GROUPED, INTEGER>(w, a, gsums, r0, r1, 0, 1, y, ldy);
  for_each_block(r0, r1, a.n, R, N, w.row_stride(), act_vector_bytes(a),
                 [&](int64_t rb0, int64_t rb1, int64_t vb0, int64_t vb1) {
                   run_tiles<Vec, FMT, R, N, GROUPED, INTEGER>(w, a, gsums, rb0, rb1, vb0, vb1, y, ldy);
                 });
}

// GEMM (several vectors) one field per pass: a tile of RB rows x NB vectors keeps one sum each
// (24 registers), so every code load feeds NB dot products and every activation load RB; with a
// sum per field class in registers only 2 x 2 or 2 x 3 tiles fit. The rows' codes stay in L1/L2
// between passes. `Src` prepares a block of rows once, before the first of the vector blocks that
// sweep it (start), says how many bytes a prepared row takes (row_bytes, which sizes the block),
// and gives field K's codes of row i of the block, super-chunk s, as the kernels of plane width W
// would extract them, and the factor its sums take (times the class scale). One scale per row.
constexpr int kFieldTileRows = 4, kFieldTileVecs = 6;
template <class Vec, int W, class Src>
void gemm_by_field(const qtensor &w, const act_q8 &a, const float *gsums, int64_t r0, int64_t r1, float *y,
                   int64_t ldy, Src &src) {
  using P = plane_shape<Vec, W>;
  constexpr int F = P::F, V = Vec::kBytes, kLanes = P::kLanes;
  constexpr int RB = kFieldTileRows, NB = kFieldTileVecs;
  static_assert(Vec::kAccs == 1 && P::KC == F, "classes per field, one accumulator");
  const act_q8_plane &L = a.planes[width_slot(W)];
  const int64_t n_super = L.n_super;
  auto tile = [&](auto rows_c, auto vecs_c, int i0, int64_t v0) LB_INLINE {
    constexpr int R = decltype(rows_c)::value, N = decltype(vecs_c)::value;
    typename Vec::Fv f[R][N];
    for (int i = 0; i < R; i++)
      for (int n = 0; n < N; n++) f[i][n] = Vec::f_zero();
    unrolled<F>([&](auto k) LB_INLINE {
      constexpr int K = decltype(k)::value;
      typename Vec::Sum sum[R][N];
      for (int i = 0; i < R; i++)
        for (int n = 0; n < N; n++) sum[i][n] = Vec::sum_zero();
      for (int64_t s = 0; s < n_super; s++) {
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
          const typename Vec::Codes c = src.template codes<K>(i0 + i, s);
#pragma GCC unroll 8
          for (int n = 0; n < N; n++)
            sum[i][n] = Vec::dot(sum[i][n], c, L.q.data() + (v0 + n) * L.q_stride + (s * F + K) * V);
        }
      }
      for (int i = 0; i < R; i++)
        for (int n = 0; n < N; n++)
          f[i][n] = Vec::f_scale_by(sum[i][n], L.scale.data() + (v0 + n) * L.scale_stride + K * kLanes,
                                    Src::template factor<K>(), f[i][n]);
    });
    for (int i = 0; i < R; i++)
      for (int n = 0; n < N; n++) {
        const int64_t row = src.first + i0 + i;
        const float off = src.offset * offset_sum(w, row, gsums + v0 + n);
        y[(v0 + n) * ldy + row] = w.row_scales(row)[0] * Vec::hsum(f[i][n]) + off;
      }
  };
  using std::integral_constant;
  for_each_block(r0, r1, a.n, RB, NB, src.row_bytes(), L.q_stride, [&](int64_t rb0, int64_t rb1, int64_t vb0, int64_t vb1) {
    if (vb0 == 0) src.start(rb0, rb1 - rb0);  // vector blocks are inner: the first one of a row block
    for (int64_t r = rb0; r < rb1; r += RB) {
      const int rows = (int)std::min<int64_t>(RB, rb1 - r), i0 = (int)(r - rb0);
      int64_t v = vb0;
      if (rows == RB) {  // whole tiles, then fewer vectors; leftover rows one at a time
        for (; v + NB <= vb1; v += NB) tile(integral_constant<int, RB>{}, integral_constant<int, NB>{}, i0, v);
        for (; v + 2 <= vb1; v += 2) tile(integral_constant<int, RB>{}, integral_constant<int, 2>{}, i0, v);
        for (; v < vb1; v++) tile(integral_constant<int, RB>{}, integral_constant<int, 1>{}, i0, v);
      } else {
        for (int i = 0; i < rows; i++)
          for (v = vb0; v < vb1; v++) tile(integral_constant<int, 1>{}, integral_constant<int, 1>{}, i0 + i, v);
      }
    }
  });
}

// Codes of a one-plane format, each field masked in place from the packed rows (the class scales
// of in-place layouts carry the 2^-(W*K)).
template <class Vec, format FMT>
struct plane_fields {
  static constexpr int W = kFormatTraits[FMT].plane_bits[0];
  static constexpr float offset = kFormatTraits[FMT].offset;
  const qtensor &w;
  size_t stride;
  int64_t first = 0;
  const uint8_t *block = nullptr;
  size_t row_bytes() const { return stride; }
  void start(int64_t r, int64_t) {
    first = r;
    block = w.row(r, stride);
  }
  template <int K>
  typename Vec::Codes codes(int i, int64_t s) const {
    return Vec::template field_in_place<W, K>(Vec::load(block + i * stride + s * Vec::kBytes));
  }
  template <int K>
  static constexpr float factor() { return 1.0f; }
};

// 3-bit codes: the two planes of a block's rows merged once into bytes of full codes (b3_high,
// b3_codes), field by field in the 2-bit plane's order, to be multiplied with the 2-bit
// activation layout: one dot product per 64 codes, where the plane by plane kernels extract both
// planes again for every tile of vectors and sum each apart. A block of rows is merged once for
// all its vector blocks (its merged codes, a byte per weight, size the block). Where:
// b3_gemm_fusable() (kernels.h).
template <class Vec>
struct b3_merged {
  static constexpr int F = 4, V = Vec::kBytes;
  static constexpr float offset = kFormatTraits[FORMAT_B3].offset;
  const qtensor &w;
  size_t stride;
  int64_t n_super, first = 0;
  std::vector<uint8_t> &merged;  // [row][field][super-chunk][V]: a pass reads in address order
  size_t row_bytes() const { return (size_t)F * n_super * V; }
  void start(int64_t r, int64_t count) {
    first = r;
    merged.resize(count * row_bytes());
    for (int64_t i = 0; i < count; i++) {
      const uint8_t *lo = w.row(r + i, stride), *hi = lo + plane_row_bytes(2, w.cols);
      for (int64_t s = 0; s < n_super; s++) {
        const typename Vec::Codes low = Vec::load(lo + s * V), high = Vec::b3_high(hi + s * (V / 2));
        unrolled<F>([&](auto k) LB_INLINE {
          constexpr int K = decltype(k)::value;
          Vec::store(merged.data() + ((i * F + K) * n_super + s) * V, Vec::template b3_codes<K>(low, high));
        });
      }
    }
  }
  template <int K>
  typename Vec::Codes codes(int i, int64_t s) const {
    return Vec::load(merged.data() + ((i * F + K) * n_super + s) * V);
  }
  // the in-place class scales carry 2^-(2K); these codes are not shifted
  template <int K>
  static constexpr float factor() { return (float)(1 << (2 * K)); }
};

template <class Vec, format FMT, bool INTEGER, class Args>
void gemm_quant(const Args &p) {
  const qtensor &w = *p.w;
  const auto &a = *p.a;
  // X_g for every vector and group: row independent, so once per call of this row range.
  const int64_t ng = w.n_groups(), n_seg = (w.cols + 31) / 32;
  static thread_local std::vector<float> gsums;
  gsums.resize(a.n * ng);
  for (int64_t v = 0; v < a.n; v++) group_sums(w, a.segment_sum.data() + v * n_seg, &gsums[v * ng]);
  constexpr int GR = Vec::kGemvRows, MR = Vec::kGemmRows, MN = Vec::kGemmVecs;
  // 1-bit GEMMs by field: with eight field classes the plane-by-plane tiles hold one row. (2- and
  // 4-bit GEMMs measured 10-25% slower by field: their tiles hold 2-4 rows, and a by-field pass
  // re-reads each row once per field.)
  if constexpr (INTEGER && Vec::kFieldsInPlace && FMT == FORMAT_B1) {
    if (a.n >= kFieldTileVecs && !w.group) {
      plane_fields<Vec, FMT> src{w, w.row_stride()};
      return gemm_by_field<Vec, plane_fields<Vec, FMT>::W>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy, src);
    }
  }
  if constexpr (FMT == FORMAT_B3 && INTEGER && Vec::kFusedB3) {
    if (b3_gemm_fusable(w, a.n)) {
      static thread_local std::vector<uint8_t> merged;
      b3_merged<Vec> src{w, w.row_stride(), a.planes[width_slot(2)].n_super, 0, merged};
      return gemm_by_field<Vec, 2>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy, src);
    }
  }
  if (a.n == 1) {
    if (w.group) run_blocks<Vec, FMT, GR, 1, true, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
    else run_blocks<Vec, FMT, GR, 1, false, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
  } else {
    if (w.group) run_blocks<Vec, FMT, MR, MN, true, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
    else run_blocks<Vec, FMT, MR, MN, false, INTEGER>(w, a, gsums.data(), p.r0, p.r1, p.y, p.ldy);
  }
}

// ---------------------------------------------------------------------------------------------
// Float weights (f32, f16) x float activations, natural order.

// Each row's lines are requested AHEAD bytes ahead in software (rows are contiguous), with
// __builtin_prefetch's LOCALITY (1: prefetcht2, into L2; 0: prefetchnta, into L1 past the other
// caches). Left to the hardware prefetcher, one Zen 4 core streamed an f16 output head
// (32000 x 1152) from DRAM at 0.64 of the read bandwidth and two cores at 0.57 when the reads ran
// fast (55 GB/s); 8 KiB ahead into L2, 0.94-1.0 in both (4 KiB ahead: 0.74). The head is a third
// of a MobileLLM-600M decode step's bytes. Which request suits depends on the core
// (gemm_float_for).
template <class Vec, bool HALF, size_t AHEAD, int LOCALITY>
void gemm_float(const gemm_f32_args &p) {
  const qtensor &w = *p.w;
  const act_f32 &a = *p.a;
  using T = std::conditional_t<HALF, uint16_t, float>;
  const size_t row_bytes = w.row_stride();
  const char *last = reinterpret_cast<const char *>(w.row(w.rows - 1)) + row_bytes;
  for (int64_t r = p.r0; r < p.r1; r++) {
    const char *row = reinterpret_cast<const char *>(w.row(r));
    for (const char *line = row + AHEAD; line < std::min(row + AHEAD + row_bytes, last); line += 64)
      __builtin_prefetch(line, 0, LOCALITY);
    for (int64_t v = 0; v < a.n; v++)
      p.y[v * p.ldy + r] = dot_row<Vec>(reinterpret_cast<const T *>(row), a.x + v * w.cols, w.cols);
  }
}

// The float GEMM for this core. Zen 5 (AMD family 1Ah) streams poorly behind requests into L2:
// there the f16 head above read at 0.67 of one core's read bandwidth with them and at 0.87-0.93
// with none, and at 0.95-0.98 requested 6 KiB ahead into L1 (4 KiB: 0.93-0.95); on two cores in a
// fast spell (reads of 71-76 GB/s) 0.62-0.75 against 0.88-1.04. End to end, `llama-1b` 2-bit
// decoded 10-14% faster on one thread (roofline 0.75-0.81 -> 0.84-0.87). Requests into L1 measured
// far worse than into L2 on Zen 4 (the row-major GEMV's, above), which keeps its setting.
template <class Vec, bool HALF>
gemm_f32_fn gemm_float_for(const cpu_features &c) {
  if (c.vendor == "AuthenticAMD" && c.family == 0x1a) return gemm_float<Vec, HALF, 6144, 0>;
  return gemm_float<Vec, HALF, 8192, 1>;
}

// f32 -> f16 (round to nearest even), whole vectors then the scalar definition for the tail.
template <class Vec>
void to_f16(const float *x, int64_t n, uint16_t *out) {
  int64_t i = 0;
  for (; i + Vec::kFloats <= n; i += Vec::kFloats) Vec::f_store(out + i, Vec::f_load(x + i));
  for (; i < n; i++) out[i] = f32_to_f16(x[i]);
}

// The same loops as the reference's, compiled with this ISA's vectors (templates: see above).
template <class Vec>
void silu_mul(float *gate, const float *up, int64_t n) {
  lb::silu_mul(gate, up, n);
}
template <class Vec>
float softmax(float *v, int n) {
  return lb::softmax(v, n);
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

// The table of an ISA: every format through the templates above.
template <class Vec>
kernel_table make_table(isa id) {
  kernel_table k{};
  k.id = id;
  k.shape = act_shape{Vec::kBytes, Vec::kAccs};
  k.gemm_f32[FORMAT_F32] = gemm_float_for<Vec, false>(cpu());
  k.gemm_f32[FORMAT_F16] = gemm_float_for<Vec, true>(cpu());
  unrolled<FORMAT_COUNT>([&](auto f) {
    constexpr format F = (format)decltype(f)::value;
    if constexpr (kFormatTraits[F].quantized) {
      k.gemm_q8[F] = gemm_quant<Vec, F, true, gemm_q8_args>;
      k.gemm_f32[F] = gemm_quant<Vec, F, false, gemm_f32_args>;
      if constexpr (Vec::kInterleaved) k.gemv_interleaved[F] = gemv_interleaved<Vec, F>;
    }
  });
  k.prepare_q8 = prepare_q8<Vec>;
  k.prepare_f32 = prepare_f32<Vec>;
  if constexpr (Vec::kInterleaved) k.prepare_interleaved = prepare_interleaved<Vec>;
  k.supports_group = supports_group<Vec>;
  k.read_bytes = read_bytes<Vec>;
  k.to_f16 = to_f16<Vec>;
  k.silu_mul = silu_mul<Vec>;
  k.softmax = softmax<Vec>;
  k.fused_b3 = Vec::kFusedB3;
  k.attention_f32 = {attention_scores<Vec, float>, attention_mix<Vec, float>};
  k.attention_f16 = {attention_scores<Vec, uint16_t>, attention_mix<Vec, uint16_t>};
  return k;
}

}  // namespace simd
}  // namespace lb
