// The matmul driver: prepares activations once per call (int8 per 64-column chunk, permuted to the
// active ISA's layout), then splits output rows across the thread pool.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "../core/pool.h"
#include "kernels.h"

namespace lb {

// ---------------------------------------------------------------------------------------------
// Activation layouts

namespace {

// For plane width w and vectors of V bytes: which natural column feeds position (s, k, i) of the
// permuted activations (s: super-chunk, k: field, i: byte of the loaded weight vector), or -1.
// Inverts the packing rule of formats.h. Cached: a model asks for a handful of shapes.
std::shared_ptr<const std::vector<int32_t>> layout_columns(int64_t cols, int w, int V) {
  static std::mutex mutex;
  static std::map<std::tuple<int64_t, int, int>, std::shared_ptr<const std::vector<int32_t>>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto &slot = cache[{cols, w, V}];
  if (slot) return slot;
  const int fields = 8 / w, chunk_bytes = 8 * w;
  const int64_t n_super = ((int64_t)plane_row_bytes(w, cols) + V - 1) / V;
  auto map = std::make_shared<std::vector<int32_t>>(n_super * fields * V, -1);
  for (int64_t s = 0; s < n_super; s++) {
    for (int i = 0; i < V; i++) {
      const int64_t p = s * V + i;  // byte position within the plane
      const int64_t chunk = p / chunk_bytes, j = p % chunk_bytes;
      const int64_t start = chunk * kChunkCols;
      if (start >= cols) continue;
      const int64_t width = std::min<int64_t>(kChunkCols, cols - start);
      const int64_t stride = (width * w + 7) / 8;
      if (j >= stride) continue;
      for (int k = 0; k < fields; k++) {
        if (j + stride * k < width) (*map)[(s * fields + k) * V + i] = (int32_t)(start + j + stride * k);
      }
    }
  }
  slot = map;
  return slot;
}

template <typename T, typename Layout>
void fill_layout(Layout &l, const T *natural, int64_t n, int64_t cols, int w, int V) {
  auto map = layout_columns(cols, w, V);
  l.vector_bytes = V;
  l.n_super = ((int64_t)plane_row_bytes(w, cols) + V - 1) / V;
  const int64_t stride = (int64_t)map->size();
  std::vector<T> &dst = [&]() -> std::vector<T> & {
    if constexpr (std::is_same<T, int8_t>::value) return l.q; else return l.x;
  }();
  dst.assign(n * stride, T(0));
  for (int64_t v = 0; v < n; v++) {
    const T *src = natural + v * cols;
    T *out = dst.data() + v * stride;
    for (int64_t i = 0; i < stride; i++) {
      const int32_t c = (*map)[i];
      if (c >= 0) out[i] = src[c];
    }
  }
  if constexpr (std::is_same<T, int8_t>::value) l.q_stride = stride; else l.stride = stride;
}

}  // namespace

// Round half to even without a libm call, so the loop vectorizes: adding 1.5 * 2^23 leaves the
// rounded integer in the low mantissa bits for |v| < 2^22 (activations here are within +-127).
static inline float round_even(float v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

void act_quantize(const float *x, int64_t n, int64_t cols, act_q8 &a) {
  a.cols = cols;
  a.n = n;
  a.n_chunks = (cols + kChunkCols - 1) / kChunkCols;
  a.n_segments = (cols + 31) / 32;
  a.q.resize(n * cols);
  a.chunk_scale.resize(n * a.n_chunks);
  a.segment_sum.resize(n * a.n_segments);
  for (auto &l : a.layouts) l.vector_bytes = 0;
  for (int64_t v = 0; v < n; v++) {
    const float *xv = x + v * cols;
    int8_t *qv = a.q.data() + v * cols;
    for (int64_t c = 0; c < a.n_chunks; c++) {
      const int64_t j0 = c * kChunkCols, len = std::min(cols - j0, (int64_t)kChunkCols);
      float amax = 0;
      for (int64_t j = 0; j < len; j++) amax = std::max(amax, std::fabs(xv[j0 + j]));
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      a.chunk_scale[v * a.n_chunks + c] = amax / 127.0f;
      int32_t sums[2] = {0, 0};  // the chunk's two 32-column segments
      for (int64_t j = 0; j < len; j++) {
        const int32_t q = (int32_t)round_even(std::min(127.0f, std::max(-127.0f, xv[j0 + j] * inv)));
        qv[j0 + j] = (int8_t)q;
        sums[j >= 32] += q;
      }
      for (int s = 0; s < 2 && 2 * c + s < a.n_segments; s++)
        a.segment_sum[v * a.n_segments + 2 * c + s] = a.chunk_scale[v * a.n_chunks + c] * (float)sums[s];
    }
  }
}

void act_prepare_layout(act_q8 &a, int w, int V) {
  act_q8::layout &l = a.layouts[width_slot(w)];
  if (l.vector_bytes == V) return;
  fill_layout(l, a.q.data(), a.n, a.cols, w, V);
  // Lane l of super-chunk s covers plane bytes s*V + 4l .. +3, all in chunk (s*V + 4l) / (8w).
  const int lanes = V / 4;
  l.scale_stride = l.n_super * lanes;
  l.lane_scale.assign(a.n * l.scale_stride, 0.0f);
  for (int64_t v = 0; v < a.n; v++) {
    for (int64_t s = 0; s < l.n_super; s++) {
      for (int lane = 0; lane < lanes; lane++) {
        const int64_t chunk = (s * V + 4 * lane) / (8 * w);
        if (chunk < a.n_chunks)
          l.lane_scale[v * l.scale_stride + s * lanes + lane] = a.chunk_scale[v * a.n_chunks + chunk];
      }
    }
  }
}

void act_f32_init(const float *x, int64_t n, int64_t cols, act_f32 &a) {
  a.cols = cols;
  a.n = n;
  a.x = x;
  const int64_t n_segments = (cols + 31) / 32;
  a.segment_sum.assign(n * n_segments, 0.0f);
  for (int64_t v = 0; v < n; v++)
    for (int64_t j = 0; j < cols; j++) a.segment_sum[v * n_segments + j / 32] += x[v * cols + j];
  for (auto &l : a.layouts) l.vector_bytes = 0;
}

void act_f32_prepare_layout(act_f32 &a, int w, int V) {
  act_f32::layout &l = a.layouts[width_slot(w)];
  if (l.vector_bytes != V) fill_layout(l, a.x, a.n, a.cols, w, V);
}

// ---------------------------------------------------------------------------------------------
// Driver

void matmul(const qtensor &w, const float *x, int64_t n, float *y, act_mode mode, int threads,
            const kernel_table &k) {
  const format_traits &t = traits(w.fmt);
  const kernel_table &kt = (!t.quantized || k.supports_group(w.fmt, w.group)) ? k : kernels_ref();
  act_q8 aq;
  act_f32 af;
  const bool integer = t.quantized && mode == ACT_Q8;
  if (integer) {
    act_quantize(x, n, w.cols, aq);
    for (int p = 0; p < t.n_planes && kt.vector_bytes; p++)
      act_prepare_layout(aq, t.plane_bits[p], kt.vector_bytes);
  } else {
    act_f32_init(x, n, w.cols, af);
    for (int p = 0; p < t.n_planes && kt.vector_bytes; p++)
      act_f32_prepare_layout(af, t.plane_bits[p], kt.vector_bytes);
  }
  gemm_q8_fn fq = kt.gemm_q8[w.fmt] ? kt.gemm_q8[w.fmt] : kernels_ref().gemm_q8[w.fmt];
  gemm_f32_fn ff = kt.gemm_f32[w.fmt] ? kt.gemm_f32[w.fmt] : kernels_ref().gemm_f32[w.fmt];
  // Tasks of whole 4-row tiles; a few per thread so uneven cores still finish together.
  const int64_t rows = w.rows;
  int64_t per_task = std::max<int64_t>(4, (rows / (std::max(threads, 1) * 4) + 3) / 4 * 4);
  if (rows * w.cols * n < (int64_t)1 << 16) per_task = rows;  // tiny: not worth waking threads
  const int64_t n_tasks = (rows + per_task - 1) / per_task;
  thread_pool::global().run(n_tasks, threads, [&](int64_t task) {
    const int64_t r0 = task * per_task, r1 = std::min(rows, r0 + per_task);
    if (integer)
      fq({&w, &aq, y, w.rows, r0, r1});
    else
      ff({&w, &af, y, w.rows, r0, r1});
  });
}

}  // namespace lb
