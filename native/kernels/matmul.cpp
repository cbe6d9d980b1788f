// The matmul driver: prepares activations once per call in the layout of the kernels that will
// run, then splits output rows across the thread pool. Also the natural-order (reference)
// activation quantization and the inverse of the SIMD layouts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

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
      // Eight interleaved partial sums: the loop vectorizes (one running sum is a serial chain).
      float part[8] = {};
      int64_t j = 0;
      for (; j + 8 <= len; j += 8)
        for (int k = 0; k < 8; k++) part[k] += p[j + k];
      for (int k = 0; j < len; j++, k++) part[k] += p[j];
      out[v * segs + s] = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
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

namespace {

void prepare_plane(const kernel_table &k, const float *x, int64_t n, int64_t cols, int w, act_q8_plane &p, int threads) {
  k.prepare_q8(x, n, cols, w, p, threads);
}
void prepare_plane(const kernel_table &k, const float *x, int64_t n, int64_t cols, int w, act_f32_plane &p, int threads) {
  k.prepare_f32(x, n, cols, w, p, threads);
}

// Every plane width format f reads, each built once (b3 has two).
template <class Act>
void prepare_planes(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, Act &out, int threads) {
  const format_traits &t = traits(f);
  for (int p = 0; p < t.n_planes; p++) {
    auto &plane = out.planes[width_slot(t.plane_bits[p])];
    if (!plane.built) prepare_plane(k, x, n, cols, t.plane_bits[p], plane, threads);
  }
}

// Marks every layout of out unbuilt for a new x; the segment sums (which only the plane layouts'
// kernels read) are computed when `sums`.
template <class Act>
void reset(Act &out, const float *x, int64_t n, int64_t cols, bool sums) {
  out.cols = cols;
  out.n = n;
  if (sums) act_segment_sums(x, n, cols, out.segment_sum);
  for (auto &p : out.planes) p.built = false;
  if constexpr (std::is_same_v<Act, act_q8>)
    for (auto &p : out.interleaved) p.built = false;
}

}  // namespace

void act_prepare(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, act_q8 &out, int threads) {
  reset(out, x, n, cols, true);
  prepare_planes(k, f, x, n, cols, out, threads);
}

void act_prepare(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, act_f32 &out, int threads) {
  reset(out, x, n, cols, true);
  out.x = x;
  prepare_planes(k, f, x, n, cols, out, threads);
}

namespace {

// Does format f (and its group size) run on table k, or on the reference?
const kernel_table &table_for(const qtensor &w, const kernel_table &k) {
  return (!traits(w.fmt).quantized || k.supports_group(w.fmt, w.group)) ? k : kernels_ref();
}

bool integer_path(const qtensor &w, act_mode mode) { return traits(w.fmt).quantized && mode == ACT_Q8; }

// Does w run on table k's interleaved GEMV (else on its usual kernels, from row copies when
// interleaved)?
bool interleaved_gemv(const kernel_table &k, const qtensor &w, int64_t n, bool integer) {
  return w.interleaved && integer && n == 1 && k.gemv_interleaved[w.fmt];
}

// Builds, for every job, the layouts its kernels read (each once).
template <class Act>
void prepare_all(const kernel_table &k, const matmul_job *jobs, int count, const float *x, int64_t n, int64_t cols,
                 Act &act, int threads) {
  bool planes = false;  // does some job read the plane layouts (else the segment sums go unread)?
  for (int j = 0; j < count; j++) planes |= !(std::is_same_v<Act, act_q8> && interleaved_gemv(k, *jobs[j].w, n, true));
  reset(act, x, n, cols, planes);
  if constexpr (std::is_same_v<Act, act_f32>) act.x = x;
  for (int j = 0; j < count; j++) {
    const qtensor &w = *jobs[j].w;
    if constexpr (std::is_same_v<Act, act_q8>) {
      if (interleaved_gemv(k, w, n, true)) {
        const int width = interleaved_act_width(w.fmt);
        act_interleaved &a = act.interleaved[width_slot(width)];
        if (!a.built) k.prepare_interleaved(x, cols, width, a);
        continue;
      }
    }
    prepare_planes(k, w.fmt, x, n, cols, act, threads);
  }
}

// Rows [r0, r1) of an interleaved tensor in row order, for kernels that read row after row
// (GEMMs, ISAs without an interleaved GEMV): copied with their scales into per-thread buffers
// (a prefill multiplies each copied row by many vectors, so the copy is a small share).
qtensor row_copy(const qtensor &w, int64_t r0, int64_t r1) {
  static thread_local std::shared_ptr<aligned_buffer> codes, scales;
  const size_t code_bytes = (size_t)(r1 - r0) * w.row_stride(), scale_bytes = (size_t)(r1 - r0) * sizeof(float);
  if (!codes || codes->size() < code_bytes) codes = std::make_shared<aligned_buffer>(code_bytes);
  if (!scales || scales->size() < scale_bytes) scales = std::make_shared<aligned_buffer>(scale_bytes);
  qtensor t;
  t.fmt = w.fmt;
  t.rows = r1 - r0;
  t.cols = w.cols;
  t.data = codes;
  t.scales = scales;
  qtensor_copy_rows(w, r0, r1, codes->data());
  std::memcpy(scales->data(), w.row_scales(r0), scale_bytes);
  return t;
}

constexpr int kMaxJobs = 8;  // per dispatch; more run in the next

// How many of jobs[0..count) run in one dispatch, from the first: those on the same table and
// activation kind, reading the same columns (the rest run in the next).
int dispatch_size(const matmul_job *jobs, int count, act_mode mode, const kernel_table &k) {
  const kernel_table &kt = table_for(*jobs[0].w, k);
  const bool integer = integer_path(*jobs[0].w, mode);
  int shared = 1;
  while (shared < count && shared < kMaxJobs && &table_for(*jobs[shared].w, k) == &kt &&
         integer_path(*jobs[shared].w, mode) == integer && jobs[shared].w->cols == jobs[0].w->cols)
    shared++;
  return shared;
}

// A dispatch's split of the jobs' rows into units, whole 4-row tiles or whole groups of
// interleaved rows. Joint jobs (all of the same rows): a unit is the same rows of every job.
struct unit_split {
  int count = 0;  // jobs
  bool joint = false;
  int64_t unit_rows = 4, total_rows = 0, split_rows = 0, n_units = 0;
  int64_t first_unit[kMaxJobs + 1] = {0};  // job j's units (joint: all share job 0's)

  unit_split(const matmul_job *jobs, int count, int64_t n, int threads, bool joint) : count(count), joint(joint) {
    for (int j = 0; j < count; j++) total_rows += jobs[j].w->rows;
    split_rows = joint ? jobs[0].w->rows : total_rows;  // rows the units divide
    for (int j = 0; j < count; j++)
      if (jobs[j].w->interleaved) unit_rows = kInterleaveRows;
    // A prefill's units are a few per thread, so uneven cores still finish together. A decode step
    // (one vector) streams each weight once: its units stay small and the pool hands each thread one
    // contiguous share to stream (run_spans), which also keeps the threads' ends within a unit.
    if (n > 1) unit_rows = std::max(unit_rows, (split_rows / (std::max(threads, 1) * 4) + unit_rows - 1) / unit_rows * unit_rows);
    for (int j = 0; j < count; j++) first_unit[j + 1] = first_unit[j] + (jobs[j].w->rows + unit_rows - 1) / unit_rows;
    n_units = joint ? first_unit[1] : first_unit[count];
  }

  // fn(j, r0, r1) for each job's rows in units [u0, u1), in the order a task runs them.
  template <class Fn>
  void rows(const matmul_job *jobs, int64_t u0, int64_t u1, Fn fn) const {
    for (int j = 0; j < count; j++) {
      if (joint) {
        fn(j, u0 * unit_rows, std::min(split_rows, u1 * unit_rows));
        continue;
      }
      const int64_t from = std::max(u0, first_unit[j]), to = std::min(u1, first_unit[j + 1]);
      if (from < to) fn(j, (from - first_unit[j]) * unit_rows, std::min(jobs[j].w->rows, (to - first_unit[j]) * unit_rows));
    }
  }
};

}  // namespace

void matmul_many(const matmul_job *jobs, int count, const float *x, int64_t n, act_mode mode, int threads,
                 const kernel_table &k, const row_epilogue *together) {
  const bool joint = together && *together;
  if (joint)
    for (int j = 1; j < count; j++)
      if (jobs[j].w->rows != jobs[0].w->rows) throw std::invalid_argument("matmul_many: joint jobs differ in rows");
  // Jobs that need another table or activation kind than the first run on their own.
  const kernel_table &kt = table_for(*jobs[0].w, k);
  const bool integer = integer_path(*jobs[0].w, mode);
  const int shared = dispatch_size(jobs, count, mode, k);
  if (joint && shared < count) {  // not one dispatch: the joint epilogue runs once all rows exist
    matmul_many(jobs, count, x, n, mode, threads, k);
    (*together)(0, jobs[0].w->rows);
    return;
  }
  // Activation buffers are reused across calls on a thread (a decode step makes hundreds).
  static thread_local act_q8 aq;
  static thread_local act_f32 af;
  const int64_t cols = jobs[0].w->cols;
  if (integer) prepare_all(kt, jobs, shared, x, n, cols, aq, threads);
  else prepare_all(kt, jobs, shared, x, n, cols, af, threads);
  // One dispatch for all the jobs that share the activations; joint jobs' `together` runs on each
  // unit's rows on the thread that wrote them.
  const unit_split split(jobs, shared, n, threads, joint);
  const bool tiny = split.total_rows * cols * n < (int64_t)1 << 16;  // not worth waking threads
  const act_q8 &a8 = aq;
  const act_f32 &a32 = af;
  auto rows_of = [&](int j, int64_t r0, int64_t r1) {
    const matmul_job &job = jobs[j];
    const qtensor &w = *job.w;
    if (interleaved_gemv(kt, w, n, integer)) {
      kt.gemv_interleaved[w.fmt]({&w, &a8, job.y, w.rows, r0, r1});
    } else if (w.interleaved) {
      const qtensor rows = row_copy(w, r0, r1);
      if (integer) kt.gemm_q8[w.fmt]({&rows, &a8, job.y + r0, w.rows, 0, r1 - r0});
      else kt.gemm_f32[w.fmt]({&rows, &a32, job.y + r0, w.rows, 0, r1 - r0});
    } else if (integer) {
      kt.gemm_q8[w.fmt]({&w, &a8, job.y, w.rows, r0, r1});
    } else {
      kt.gemm_f32[w.fmt]({&w, &a32, job.y, w.rows, r0, r1});
    }
    if (job.epilogue && *job.epilogue) (*job.epilogue)(r0, r1);
  };
  auto units = [&](int64_t u0, int64_t u1) {
    split.rows(jobs, u0, u1, rows_of);
    if (joint) (*together)(u0 * split.unit_rows, std::min(split.split_rows, u1 * split.unit_rows));
  };
  if (tiny) units(0, split.n_units);
  else if (n == 1) thread_pool::global().run_spans(split.n_units, threads, units);
  else thread_pool::global().run(split.n_units, threads, [&](int64_t u) { units(u, u + 1); });
  if (shared < count) matmul_many(jobs + shared, count - shared, x, n, mode, threads, k);
}

std::vector<thread_pool::byte_range> matmul_share_front(const matmul_job *jobs, int count, act_mode mode, int threads,
                                                        const kernel_table &k, bool joint, int slot, size_t budget) {
  const int shared = dispatch_size(jobs, count, mode, k);
  const unit_split split(jobs, shared, 1, threads, joint && shared == count);
  const int takers = (int)std::min<int64_t>(threads, split.n_units);
  std::vector<thread_pool::byte_range> ranges;
  if (slot < 0 || slot >= takers) return ranges;
  auto add = [&](const uint8_t *begin, const uint8_t *end) {
    const size_t bytes = std::min<size_t>(budget, end - begin);
    if (bytes > 0) ranges.push_back({begin, begin + bytes});
    budget -= bytes;
  };
  // The slot's share as run_spans first hands it out (thread_pool::run_spans), in the order its
  // task reads it.
  split.rows(jobs, split.n_units * slot / takers, split.n_units * (slot + 1) / takers, [&](int j, int64_t r0, int64_t r1) {
    const qtensor &w = *jobs[j].w;
    add(w.row(r0), w.row(r1));
    if (w.scales) add(reinterpret_cast<const uint8_t *>(w.row_scales(r0)), reinterpret_cast<const uint8_t *>(w.row_scales(r1)));
  });
  return ranges;
}

void matmul_prefetch_next(const matmul_job *jobs, int count, act_mode mode, int threads, const kernel_table &k,
                          bool joint) {
  // A quarter of a 1 MiB L2: more measured no better (a gap streams about that much).
  constexpr size_t kIdlePrefetchBytes = 256 << 10;
  for (int slot = 1; slot < threads; slot++) {
    const auto ranges = matmul_share_front(jobs, count, mode, threads, k, joint, slot, kIdlePrefetchBytes);
    thread_pool::global().prefetch_while_idle(slot, ranges.data(), (int)ranges.size());
  }
}

void matmul(const qtensor &w, const float *x, int64_t n, float *y, act_mode mode, int threads,
            const kernel_table &k, const row_epilogue &epilogue) {
  const matmul_job job{&w, y, &epilogue};
  matmul_many(&job, 1, x, n, mode, threads, k);
}

}  // namespace lb
