// The matmul driver: prepares activations once per call in the layout of the kernels that will
// run, then splits output rows across the thread pool. Also the natural-order (reference)
// activation quantization and the inverse of the SIMD layouts.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "../core/pool.h"
#include "kernels.h"

namespace lb {

const std::vector<int32_t> &layout_columns(int64_t cols, int w, int V) {
  static std::mutex mutex;
  static std::map<std::tuple<int64_t, int, int>, std::unique_ptr<const std::vector<int32_t>>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto &slot = cache[{cols, w, V}];
  if (slot) return *slot;
  // Inverts the packing rule of formats.h: position (s, k, i) — super-chunk s, field k, byte i of
  // the loaded vector — holds the code of column start + j + stride * k of byte j of its chunk.
  const int fields = 8 / w, chunk_bytes = 8 * w;
  const int64_t n_super = ((int64_t)plane_row_bytes(w, cols) + V - 1) / V;
  auto map = std::make_unique<std::vector<int32_t>>(n_super * fields * V, -1);
  for (int64_t s = 0; s < n_super; s++) {
    for (int i = 0; i < V; i++) {
      const int64_t p = s * V + i;  // byte position within the plane
      const int64_t chunk = p / chunk_bytes, j = p % chunk_bytes;
      const int64_t start = chunk * kChunkCols;
      if (start >= cols) continue;
      const int64_t width = std::min<int64_t>(kChunkCols, cols - start);
      const int64_t stride = (width * w + 7) / 8;
      if (j >= stride) continue;
      for (int k = 0; k < fields; k++)
        if (j + stride * k < width) (*map)[(s * fields + k) * V + i] = (int32_t)(start + j + stride * k);
    }
  }
  slot = std::move(map);
  return *slot;
}

void act_segment_sums(const float *x, int64_t n, int64_t cols, std::vector<float> &out) {
  const int64_t segs = (cols + 31) / 32;
  out.resize(n * segs);
  for (int64_t v = 0; v < n; v++) {
    for (int64_t s = 0; s < segs; s++) {
      const float *p = x + v * cols + s * 32;
      const int64_t len = std::min<int64_t>(32, cols - s * 32);
      float sum = 0;
      for (int64_t j = 0; j < len; j++) sum += p[j];
      out[v * segs + s] = sum;
    }
  }
}

void act_quantize_natural(const float *x, int64_t n, int64_t cols, act_q8_plane &out) {
  out.shape = act_shape{};
  out.q.resize(n * cols);
  out.scale.resize(n * cols);
  out.q_stride = out.scale_stride = cols;
  for (int64_t v = 0; v < n; v++) {
    for (int64_t j0 = 0; j0 < cols; j0 += kChunkCols) {
      const int64_t j1 = std::min(cols, j0 + kChunkCols);
      float amax = 0;
      for (int64_t j = j0; j < j1; j++) amax = std::max(amax, std::fabs(x[v * cols + j]));
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int64_t j = j0; j < j1; j++) {
        out.q[v * cols + j] = (int8_t)std::nearbyint(std::min(127.0f, std::max(-127.0f, x[v * cols + j] * inv)));
        out.scale[v * cols + j] = amax / 127.0f;
      }
    }
  }
  out.built = true;
}

void act_layout_to_natural(const act_q8_plane &in, int w, int64_t cols, int64_t n, act_q8_plane &out) {
  const std::vector<int32_t> &map = layout_columns(cols, w, in.shape.vector_bytes);
  const int V = in.shape.vector_bytes, lanes = in.shape.lanes(), fields = 8 / w;
  out.shape = act_shape{};
  out.q.assign(n * cols, 0);
  out.scale.assign(n * cols, 0.0f);
  out.q_stride = out.scale_stride = cols;
  for (int64_t v = 0; v < n; v++) {
    for (size_t p = 0; p < map.size(); p++) {
      if (map[p] < 0) continue;
      const int64_t s = (int64_t)p / (fields * V);
      const int i = (int)(p % V);
      out.q[v * cols + map[p]] = in.q[v * in.q_stride + p];
      const int k = (int)((int64_t)p / V % fields), kc = in.shape.field_classes > 1 ? k : 0;
      const int64_t cls = (s % in.shape.accs) * in.shape.field_classes + kc;
      // In-place layouts store a field's class scale times 2^-(w*k) (simd-gemm.h); undo it.
      const float field_factor = (float)(1 << (w * kc));
      out.scale[v * cols + map[p]] = in.scale[v * in.scale_stride + cls * lanes + i / 4] * field_factor;
    }
  }
  out.built = true;
}

void act_prepare(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, act_q8 &out) {
  const format_traits &t = traits(f);
  out.cols = cols;
  out.n = n;
  act_segment_sums(x, n, cols, out.segment_sum);
  for (auto &p : out.planes) p.built = false;
  for (int p = 0; p < t.n_planes; p++) {
    act_q8_plane &plane = out.planes[width_slot(t.plane_bits[p])];
    if (!plane.built) k.prepare_q8(x, n, cols, t.plane_bits[p], plane);
  }
}

void act_prepare(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, act_f32 &out) {
  const format_traits &t = traits(f);
  out.cols = cols;
  out.n = n;
  out.x = x;
  act_segment_sums(x, n, cols, out.segment_sum);
  for (auto &p : out.planes) p.built = false;
  for (int p = 0; p < t.n_planes; p++) {
    act_f32_plane &plane = out.planes[width_slot(t.plane_bits[p])];
    if (!plane.built) k.prepare_f32(x, n, cols, t.plane_bits[p], plane);
  }
}

void matmul(const qtensor &w, const float *x, int64_t n, float *y, act_mode mode, int threads,
            const kernel_table &k) {
  const format_traits &t = traits(w.fmt);
  const kernel_table &kt = (!t.quantized || k.supports_group(w.fmt, w.group)) ? k : kernels_ref();
  const bool integer = t.quantized && mode == ACT_Q8;
  // Activation buffers are reused across calls on a thread (a decode step makes hundreds).
  static thread_local act_q8 aq;
  static thread_local act_f32 af;
  if (integer) act_prepare(kt, w.fmt, x, n, w.cols, aq);
  else act_prepare(kt, w.fmt, x, n, w.cols, af);
  // Tasks of whole 4-row tiles; a few per thread so uneven cores still finish together.
  const int64_t rows = w.rows;
  int64_t per_task = std::max<int64_t>(4, (rows / (std::max(threads, 1) * 4) + 3) / 4 * 4);
  if (rows * w.cols * n < (int64_t)1 << 16) per_task = rows;  // tiny: not worth waking threads
  const int64_t n_tasks = (rows + per_task - 1) / per_task;
  const act_q8 &a8 = aq;
  const act_f32 &a32 = af;
  thread_pool::global().run(n_tasks, threads, [&](int64_t task) {
    const int64_t r0 = task * per_task, r1 = std::min(rows, r0 + per_task);
    if (integer) kt.gemm_q8[w.fmt]({&w, &a8, y, w.rows, r0, r1});
    else kt.gemm_f32[w.fmt]({&w, &a32, y, w.rows, r0, r1});
  });
}

}  // namespace lb
