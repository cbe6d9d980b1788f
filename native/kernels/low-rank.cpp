// SHARP's fused low-rank product (see low-rank.h).
#include "low-rank.h"

#include <array>
#include <stdexcept>
#include <vector>

namespace lb {

void add_low_rank_rows(const qtensor &b, const act_f32 &ax, int64_t r0, int64_t r1, float *y, int64_t ldy,
                       const kernel_table &k) {
  const int64_t count = r1 - r0, n = ax.n;
  // B's rows of this tile times every A x, by the table's float kernel, into a tile-sized buffer;
  // then added to the tile's rows of y.
  const qtensor rows = qtensor_view(b, r0, count);
  static thread_local std::vector<float> tile;
  tile.resize((size_t)(n * count));
  k.gemm_f32[b.fmt]({&rows, &ax, tile.data(), count, 0, count});
  for (int64_t v = 0; v < n; v++) {
    float *out = y + v * ldy + r0;
    const float *add = tile.data() + v * count;
    for (int64_t i = 0; i < count; i++) out[i] += add[i];
  }
}

namespace {

// What one job's epilogue reads: its A x, laid out for the float kernels.
struct recovery_state {
  std::vector<float> ax;  // (n, rank)
  act_f32 act;
  row_epilogue epilogue;
};

}  // namespace

void matmul_low_rank(const low_rank_job *jobs, int count, const float *x, int64_t n, act_mode mode, int threads,
                     const kernel_table &k, const row_epilogue *together) {
  if (count < 1 || count > kMaxLowRankJobs) throw std::invalid_argument("matmul_low_rank takes 1 to 8 jobs");
  std::array<matmul_job, kMaxLowRankJobs> main{}, lows{};
  int n_low = 0;
  for (int j = 0; j < count; j++) main[j] = {jobs[j].w, jobs[j].y};
  for (int j = 0; j < count; j++) n_low += jobs[j].a != nullptr;
  if (n_low == 0) return matmul_many(main.data(), count, x, n, mode, threads, k, together);
  // A x of every recovery: one dispatch for all of them (they read the same x). The buffers are
  // reused across calls on a thread (a decode step makes dozens).
  static thread_local std::array<recovery_state, kMaxLowRankJobs> states;
  n_low = 0;
  for (int j = 0; j < count; j++) {
    if (!jobs[j].a) continue;
    states[j].ax.resize((size_t)(n * jobs[j].a->rows));
    lows[n_low++] = {jobs[j].a, states[j].ax.data()};
  }
  matmul_many(lows.data(), n_low, x, n, ACT_F32, threads, k);
  for (int j = 0; j < count; j++) {
    if (!jobs[j].a) continue;
    const low_rank_job &job = jobs[j];
    recovery_state &s = states[j];
    act_prepare(k, job.b->fmt, s.ax.data(), n, job.b->cols, s.act);  // read by every task: built once
    s.epilogue = [&job, &s, &k](int64_t r0, int64_t r1) { add_low_rank_rows(*job.b, s.act, r0, r1, job.y, job.w->rows, k); };
    main[j].epilogue = &s.epilogue;
  }
  matmul_many(main.data(), count, x, n, mode, threads, k, together);
}

}  // namespace lb
