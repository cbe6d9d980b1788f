// Scalar reference kernels: the definition every SIMD and CUDA kernel is tested against. Plain
// loops over natural column order, never optimised.
//
// Integer path, per output row and vector, with plane p's quantized activations
// q_p[j] * s_p[j] (a scale per column: the layout's class scale, or a 64-column block's):
//   y = sum_g d_g * ( sum_p 2^low_p * sum_{j in g} field_p(c_j) * q_p[j] * s_p[j]  +  o * sum_{j in g} x_j )
// Float path: y = sum_j dequantized(w_j) * x_j. Both accumulate in double.
#include <cstring>
#include <vector>

#include "../../core/fastmath.h"
#include "../kernels.h"

namespace lb {
namespace {

void gemm_q8_ref(const gemm_q8_args &p) {
  const qtensor &w = *p.w;
  const act_q8 &a = *p.a;
  const format_traits &t = traits(w.fmt);
  const int64_t cols = w.cols, g = w.group ? w.group : cols, n_seg = (cols + 31) / 32;
  std::vector<uint8_t> codes(cols);
  for (int64_t r = p.r0; r < p.r1; r++) {
    unpack_row(w.fmt, w.row(r), cols, codes.data());
    const float *d = w.row_scales(r);
    for (int64_t v = 0; v < a.n; v++) {
      double y = 0;
      for (int64_t j0 = 0; j0 < cols; j0 += g) {
        const int64_t j1 = std::min(cols, j0 + g);
        double dot = 0, sum = 0;
        int low = 0;
        for (int pl = 0; pl < t.n_planes; pl++) {
          const int wbits = t.plane_bits[pl];
          const act_q8_plane &act = a.planes[width_slot(wbits)];
          const int8_t *q = act.q.data() + v * act.q_stride;
          const float *s = act.scale.data() + v * act.scale_stride;
          for (int64_t j = j0; j < j1; j++) {
            const int field = (codes[j] >> low) & ((1 << wbits) - 1);
            dot += (double)(field << low) * q[j] * s[j];
          }
          low += wbits;
        }
        for (int64_t sg = j0 / 32; sg < (j1 + 31) / 32 && sg < n_seg; sg++) sum += a.segment_sum[v * n_seg + sg];
        y += d[j0 / g] * (dot + t.offset * sum);
      }
      p.y[v * p.ldy + r] = (float)y;
    }
  }
}

void gemm_f32_ref(const gemm_f32_args &p) {
  const qtensor &w = *p.w;
  const act_f32 &a = *p.a;
  const int64_t cols = w.cols;
  std::vector<float> row(cols);
  for (int64_t r = p.r0; r < p.r1; r++) {
    qtensor_dequantize(w, r, r + 1, row.data());
    for (int64_t v = 0; v < a.n; v++) {
      const float *x = a.x + v * cols;
      double y = 0;
      for (int64_t j = 0; j < cols; j++) y += (double)row[j] * x[j];
      p.y[v * p.ldy + r] = (float)y;
    }
  }
}

void prepare_q8_ref(const float *x, int64_t n, int64_t cols, int, act_q8_plane &out, int) {
  act_quantize_natural(x, n, cols, out);
}

void prepare_f32_ref(const float *, int64_t, int64_t, int, act_f32_plane &out, int) {
  out.built = true;  // the reference reads act_f32::x in natural order
}

inline float cache_value(float v) { return v; }
inline float cache_value(uint16_t v) { return f16_to_f32(v); }

template <class T>
void attention_scores_ref(const kv_columns<T> &keys, const float *q, int nq, float *s, int64_t ld_s) {
  for (int i = 0; i < nq; i++)
    for (int64_t p = 0; p < keys.count; p++) {
      double dot = 0;
      for (int64_t j = 0; j < keys.n; j++)
        dot += (double)cache_value(keys.data[key_index(p, j, keys.tile_stride)]) * q[i * keys.n + j];
      s[i * ld_s + p] = (float)dot;
    }
}

template <class T>
void attention_mix_ref(const kv_rows<T> &kv, const float *a, int64_t ld_a, int nq, float *y) {
  for (int i = 0; i < nq; i++)
    for (int64_t p = 0; p < kv.count; p++)
      for (int64_t j = 0; j < kv.n; j++)
        y[i * kv.n + j] += a[i * ld_a + p] * cache_value(kv.data[row_index(p, kv.stride, kv.tile_stride) + j]);
}

bool supports_any_group(format, int64_t) { return true; }

uint64_t read_bytes_ref(const uint8_t *p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0, v[4];
  for (size_t i = 0; i + 32 <= n; i += 32) {
    std::memcpy(v, p + i, 32);
    a ^= v[0], b ^= v[1], c ^= v[2], d ^= v[3];
  }
  return a ^ b ^ c ^ d;
}

void to_f16_ref(const float *x, int64_t n, uint16_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = f32_to_f16(x[i]);
}

void silu_mul_ref(float *gate, const float *up, int64_t n) { silu_mul(gate, up, n); }
float softmax_ref(float *v, int n) { return softmax(v, n); }

kernel_table make_ref_table() {
  kernel_table k{};
  k.id = ISA_REF;
  for (int f = 0; f < FORMAT_COUNT; f++) {
    k.gemm_q8[f] = traits((format)f).quantized ? gemm_q8_ref : nullptr;
    k.gemm_f32[f] = gemm_f32_ref;
  }
  k.prepare_q8 = prepare_q8_ref;
  k.prepare_f32 = prepare_f32_ref;
  k.supports_group = supports_any_group;
  k.read_bytes = read_bytes_ref;
  k.to_f16 = to_f16_ref;
  k.silu_mul = silu_mul_ref;
  k.softmax = softmax_ref;
  k.attention_f32 = {attention_scores_ref<float>, attention_mix_ref<float>};
  k.attention_f16 = {attention_scores_ref<uint16_t>, attention_mix_ref<uint16_t>};
  return k;
}

}  // namespace

const kernel_table &kernels_ref() {
  static const kernel_table table = make_ref_table();
  return table;
}

}  // namespace lb
