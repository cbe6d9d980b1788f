// Scalar reference kernels: the definition every SIMD and CUDA kernel is tested against. Plain
// loops over natural column order, never optimised.
//
// Integer path, per output row and vector, with segments of 32 columns (each inside one 64-column
// activation chunk and one scale group, see qtensor_check_shape):
//   y = sum_g d_g * ( sum_{seg in g} chunk_scale(seg) * sum_{j in seg} c_j q_j  +  o * X_g )
// where X_g = sum_{seg in g} segment_sum(seg) is the quantized activations' sum over the group.
// Float path: y = sum_g d_g * sum_{j in g} (c_j + o) x_j, accumulated in double.
#include <cstring>
#include <vector>

#include "../kernels.h"

namespace lb {
namespace {

void gemm_q8_ref(const gemm_q8_args &p) {
  const qtensor &w = *p.w;
  const act_q8 &a = *p.a;
  const format_traits &t = traits(w.fmt);
  const int64_t cols = w.cols, g = w.group ? w.group : cols;
  std::vector<uint8_t> codes(cols);
  for (int64_t r = p.r0; r < p.r1; r++) {
    unpack_row(w.fmt, w.row(r), cols, codes.data());
    const float *d = w.row_scales(r);
    for (int64_t v = 0; v < a.n; v++) {
      const int8_t *q = a.q.data() + v * cols;
      float y = 0;
      for (int64_t j0 = 0; j0 < cols; j0 += g) {
        const int64_t j1 = std::min(cols, j0 + g);
        float dot = 0, sum = 0;
        for (int64_t s = j0; s < j1; s += 32) {
          int32_t acc = 0;
          for (int64_t j = s; j < std::min(j1, s + 32); j++) acc += (int32_t)codes[j] * q[j];
          dot += a.chunk_scale[v * a.n_chunks + s / kChunkCols] * (float)acc;
          sum += a.segment_sum[v * a.n_segments + s / 32];
        }
        y += d[j0 / g] * (dot + t.offset * sum);
      }
      p.y[v * p.ldy + r] = y;
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

bool supports_any_group(format, int64_t) { return true; }

uint64_t read_bytes_ref(const uint8_t *p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0, v[4];
  for (size_t i = 0; i + 32 <= n; i += 32) {
    std::memcpy(v, p + i, 32);
    a ^= v[0], b ^= v[1], c ^= v[2], d ^= v[3];
  }
  return a ^ b ^ c ^ d;
}

kernel_table make_ref_table() {
  kernel_table k{};
  k.id = ISA_REF;
  k.vector_bytes = 0;
  for (int f = 0; f < FORMAT_COUNT; f++) {
    k.gemm_q8[f] = traits((format)f).quantized ? gemm_q8_ref : nullptr;
    k.gemm_f32[f] = gemm_f32_ref;
  }
  k.supports_group = supports_any_group;
  k.read_bytes = read_bytes_ref;
  return k;
}

}  // namespace

const kernel_table &kernels_ref() {
  static const kernel_table table = make_ref_table();
  return table;
}

}  // namespace lb
