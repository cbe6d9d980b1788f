// SHARP's fused product y = W x + B (A x) (kernels/low-rank.h) on every ISA this CPU runs: the
// epilogue against the scalar reference table's, the fused result against the plain matmul plus a
// float64 B (A x), and against float64 (W + B A) x; every weight format, f32 and f16 A and B, GEMV
// and GEMM, odd shapes, one and two threads; several jobs on one input give each job's result, and
// a joint epilogue sees every job's finished rows.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "../core/quantize.h"
#include "../kernels/low-rank.h"
#include "every-isa.h"
#include "harness.h"

using namespace lb;

namespace {

struct fused_problem {
  qtensor w, a, b;
  std::vector<float> w_dense, a_dense, b_dense;  // dequantized
  std::vector<float> x;                          // (n, cols)
  int64_t n;
  low_rank_job job(float *y) const { return {&w, y, &a, &b}; }
};

void fill_float(qtensor &t, const std::vector<float> &v) {
  for (int64_t r = 0; r < t.rows; r++)
    for (int64_t j = 0; j < t.cols; j++) {
      const float f = v[r * t.cols + j];
      if (t.fmt == FORMAT_F32) std::memcpy(t.row(r) + 4 * j, &f, 4);
      else {
        const uint16_t h = f32_to_f16(f);
        std::memcpy(t.row(r) + 2 * j, &h, 2);
      }
    }
}

qtensor random_tensor(lbtest::rng &r, format f, int64_t rows, int64_t cols, float scale, std::vector<float> &dense) {
  std::vector<float> v(rows * cols);
  for (auto &x : v) x = scale * r.normal();
  qtensor t = qtensor_alloc(f, rows, cols, 0);
  if (traits(f).quantized) quantize_rows(t, v.data(), 0, rows, METHOD_RTN, SOURCE_F32);
  else fill_float(t, v);
  dense.resize(rows * cols);
  qtensor_dequantize(t, 0, rows, dense.data());
  return t;
}

fused_problem make_fused(lbtest::rng &r, format wf, format lf, int64_t rows, int64_t cols, int64_t rank, int64_t n) {
  fused_problem p;
  p.n = n;
  p.w = random_tensor(r, wf, rows, cols, 1.0f, p.w_dense);
  p.a = random_tensor(r, lf, rank, cols, 0.3f, p.a_dense);
  p.b = random_tensor(r, lf, rows, rank, 0.5f, p.b_dense);
  p.x.resize(n * cols);
  for (auto &v : p.x) v = r.normal();
  return p;
}

// A x in float64, (n, rank), and the scale of float rounding in it (sum |a||x|).
void ax_reference(const fused_problem &p, std::vector<double> &ax, std::vector<double> &size) {
  const int64_t rank = p.a.rows, cols = p.a.cols;
  ax.assign(p.n * rank, 0), size.assign(p.n * rank, 0);
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t k = 0; k < rank; k++)
      for (int64_t j = 0; j < cols; j++) {
        const double t = (double)p.a_dense[k * cols + j] * p.x[v * cols + j];
        ax[v * rank + k] += t, size[v * rank + k] += std::fabs(t);
      }
}

// B (A x) in float64, (n, rows), and the scale of float rounding in it.
void low_rank_reference(const fused_problem &p, std::vector<double> &want, std::vector<double> &size) {
  const int64_t rows = p.w.rows, rank = p.a.rows;
  std::vector<double> ax, ax_size;
  ax_reference(p, ax, ax_size);
  want.assign(p.n * rows, 0), size.assign(p.n * rows, 0);
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t i = 0; i < rows; i++)
      for (int64_t k = 0; k < rank; k++) {
        const double bk = p.b_dense[i * rank + k];
        want[v * rows + i] += bk * ax[v * rank + k];
        size[v * rows + i] += std::fabs(bk) * (std::fabs(ax[v * rank + k]) + ax_size[v * rank + k]);
      }
}

std::string describe(const kernel_table &k, const fused_problem &p, const char *what) {
  return std::string(isa_name(k.id)) + " W " + traits(p.w.fmt).name + " A,B " + traits(p.b.fmt).name + " " +
         std::to_string(p.w.rows) + "x" + std::to_string(p.w.cols) + " rank " + std::to_string(p.a.rows) + " n " +
         std::to_string(p.n) + ": " + what;
}

// Float32 summation error allowed, relative to the sum of the terms' magnitudes (f16 A and B are
// compared through their dequantized values, so only summation differs). Measured worst cases are
// about half of it; a low-rank term off by 1e-5 relative fails.
constexpr double kSumTolerance = 5e-7;
// The same with the main product's kernels in the sum (as test-matmul.cpp allows them).
constexpr double kKernelTolerance = 2e-6;

// The fused result minus the plain product (same kernels, so the same main part) is B (A x).
void check_fused_adds_low_rank(const kernel_table &k, const fused_problem &p, act_mode mode, int threads) {
  const int64_t rows = p.w.rows;
  std::vector<float> fused(p.n * rows), plain(p.n * rows);
  const low_rank_job job = p.job(fused.data());
  matmul_low_rank(&job, 1, p.x.data(), p.n, mode, threads, k);
  matmul(p.w, p.x.data(), p.n, plain.data(), mode, threads, k);
  std::vector<double> want, size;
  low_rank_reference(p, want, size);
  double worst = 0;
  for (size_t i = 0; i < fused.size(); i++) {
    const double added = (double)fused[i] - plain[i];
    // Float sums in A x and B (A x), plus the rounding of adding the term to y.
    const double bound = kSumTolerance * size[i] + 2e-7 * (std::fabs(plain[i]) + std::fabs(want[i])) + 1e-6;
    worst = std::max(worst, std::fabs(added - want[i]) / bound);
  }
  CHECK_MSG(worst <= 1, describe(k, p, "fused - plain vs float64 B (A x)") + " " + std::to_string(worst));
}

// With float activations, the fused product against float64 (W + B A) x.
void check_fused_vs_dense(const kernel_table &k, const fused_problem &p) {
  const int64_t rows = p.w.rows, cols = p.w.cols;
  std::vector<float> y(p.n * rows);
  const low_rank_job job = p.job(y.data());
  matmul_low_rank(&job, 1, p.x.data(), p.n, ACT_F32, 2, k);
  std::vector<double> low, low_size;
  low_rank_reference(p, low, low_size);
  double worst = 0;
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t i = 0; i < rows; i++) {
      double e = low[v * rows + i], size = low_size[v * rows + i];
      for (int64_t j = 0; j < cols; j++) {
        const double t = (double)p.w_dense[i * cols + j] * p.x[v * cols + j];
        e += t, size += std::fabs(t);
      }
      worst = std::max(worst, std::fabs(y[v * rows + i] - e) / (kKernelTolerance * size + 1e-6));
    }
  CHECK_MSG(worst <= 1, describe(k, p, "fused vs float64 (W x + B (A x))") + " " + std::to_string(worst));
}

// The epilogue of table k against the reference table's, on a random row range of the same y.
void check_epilogue_vs_reference(const kernel_table &k, const fused_problem &p, lbtest::rng &r) {
  const int64_t rows = p.w.rows, rank = p.a.rows;
  std::vector<float> ax(p.n * rank);
  matmul(p.a, p.x.data(), p.n, ax.data(), ACT_F32, 1, kernels_ref());
  act_f32 ax_k, ax_ref;
  act_prepare(k, p.b.fmt, ax.data(), p.n, rank, ax_k);
  act_prepare(kernels_ref(), p.b.fmt, ax.data(), p.n, rank, ax_ref);
  std::vector<float> y0(p.n * rows);
  for (auto &v : y0) v = r.normal();
  std::vector<float> y_k = y0, y_ref = y0;
  const int64_t r0 = r.below((int)rows), r1 = r0 + 1 + r.below((int)(rows - r0));
  add_low_rank_rows(p.b, ax_k, r0, r1, y_k.data(), rows, k);
  add_low_rank_rows(p.b, ax_ref, r0, r1, y_ref.data(), rows, kernels_ref());
  double worst = 0;
  bool outside_untouched = true;
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t i = 0; i < rows; i++) {
      const size_t at = v * rows + i;
      if (i < r0 || i >= r1) {
        outside_untouched &= y_k[at] == y0[at] && y_ref[at] == y0[at];
        continue;
      }
      double size = 0;
      for (int64_t q = 0; q < rank; q++) size += std::fabs((double)p.b_dense[i * rank + q] * ax[v * rank + q]);
      worst = std::max(worst, std::fabs((double)y_k[at] - y_ref[at]) / (kSumTolerance * size + 2e-7 * std::fabs(y0[at]) + 1e-6));
    }
  CHECK_MSG(worst <= 1, describe(k, p, "epilogue vs reference epilogue") + " " + std::to_string(worst));
  CHECK_MSG(outside_untouched, describe(k, p, "epilogue wrote outside its rows"));
}

// rows, cols, rank, n: GEMV and GEMM, tails, ranks above and below a vector, many tasks.
const int64_t kShapes[][4] = {{1, 1, 1, 1}, {5, 33, 2, 1}, {13, 64, 7, 1}, {64, 172, 16, 1}, {172, 64, 16, 3},
                              {96, 100, 33, 8}, {300, 257, 24, 5}, {1000, 128, 64, 2}};

}  // namespace

TEST(low_rank_fused_every_isa) {
  lbtest::rng r(31);
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (int wf = 0; wf < FORMAT_COUNT; wf++)
      for (format lf : {FORMAT_F32, FORMAT_F16})
        for (const auto &s : kShapes) {
          const fused_problem p = make_fused(r, (format)wf, lf, s[0], s[1], s[2], s[3]);
          check_epilogue_vs_reference(k, p, r);
          check_fused_vs_dense(k, p);
          for (int threads : {1, 2}) {
            check_fused_adds_low_rank(k, p, ACT_F32, threads);
            if (traits(p.w.fmt).quantized) check_fused_adds_low_rank(k, p, ACT_Q8, threads);
          }
        }
  });
}

// Gate and up (and a third without recovery) on one input: each result is the one it gets alone.
TEST(low_rank_jobs_on_one_input) {
  lbtest::rng r(32);
  lbtest::for_each_isa([&](const kernel_table &k) {
    const fused_problem gate = make_fused(r, FORMAT_B2, FORMAT_F32, 172, 64, 16, 3);
    fused_problem up = make_fused(r, FORMAT_T158, FORMAT_F16, 172, 64, 8, 3);
    fused_problem plain = make_fused(r, FORMAT_B4, FORMAT_F32, 40, 64, 4, 3);
    up.x = plain.x = gate.x;
    for (act_mode mode : {ACT_Q8, ACT_F32}) {
      std::vector<float> y[3], alone[3];
      for (auto &v : y) v.assign(3 * 172, 0.0f);
      for (auto &v : alone) v.assign(3 * 172, 0.0f);
      const low_rank_job jobs[3] = {gate.job(y[0].data()), up.job(y[1].data()), {&plain.w, y[2].data()}};
      matmul_low_rank(jobs, 3, gate.x.data(), 3, mode, 2, k);
      for (int j = 0; j < 3; j++) {
        low_rank_job one = jobs[j];
        one.y = alone[j].data();
        matmul_low_rank(&one, 1, gate.x.data(), 3, mode, 2, k);
        CHECK_MSG(y[j] == alone[j], std::string(isa_name(k.id)) + " job " + std::to_string(j) + " differs in a batch");
      }
      std::vector<float> direct(3 * 40);
      matmul(plain.w, plain.x.data(), 3, direct.data(), mode, 2, k);
      CHECK(std::equal(direct.begin(), direct.end(), y[2].begin()));
    }
  });
}

// A joint epilogue (matmul_many's `together`, as SwiGLU uses it) runs once per row, after every
// job's rows (recoveries included) are written: here it multiplies gate and up element-wise, and
// the product must equal that of the results computed alone. Jobs of different rows are refused.
TEST(low_rank_joint_epilogue_after_every_job) {
  lbtest::rng r(33);
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (int64_t n : {1, 3})
      for (int threads : {1, 2})
        for (bool recovery : {true, false}) {
          const int64_t rows = 300;
          fused_problem gate = make_fused(r, FORMAT_B2, FORMAT_F32, rows, 96, 16, n);
          fused_problem up = make_fused(r, FORMAT_T158, FORMAT_F16, rows, 96, 8, n);
          up.x = gate.x;
          std::vector<float> y_gate(n * rows), y_up(n * rows), product(n * rows, 0.0f), alone(n * rows);
          std::vector<int> visits(rows, 0);
          const row_epilogue multiply = [&](int64_t r0, int64_t r1) {
            for (int64_t i = r0; i < r1; i++) {
              visits[i]++;
              for (int64_t v = 0; v < n; v++) product[v * rows + i] = y_gate[v * rows + i] * y_up[v * rows + i];
            }
          };
          low_rank_job jobs[2] = {gate.job(y_gate.data()), up.job(y_up.data())};
          if (!recovery) jobs[0].a = jobs[0].b = jobs[1].a = jobs[1].b = nullptr;
          matmul_low_rank(jobs, 2, gate.x.data(), n, ACT_Q8, threads, k, &multiply);
          const std::string what = std::string(isa_name(k.id)) + " n=" + std::to_string(n) +
                                   " threads=" + std::to_string(threads) + (recovery ? " recovery" : "");
          const bool once = std::all_of(visits.begin(), visits.end(), [](int c) { return c == 1; });
          CHECK_MSG(once, what + ": a row not visited once");
          std::vector<float> g(n * rows), u(n * rows);
          low_rank_job one = jobs[0];
          one.y = g.data();
          matmul_low_rank(&one, 1, gate.x.data(), n, ACT_Q8, threads, k);
          one = jobs[1];
          one.y = u.data();
          matmul_low_rank(&one, 1, gate.x.data(), n, ACT_Q8, threads, k);
          for (int64_t i = 0; i < n * rows; i++) alone[i] = g[i] * u[i];
          CHECK_MSG(product == alone, what + ": joint product differs from the jobs alone");
        }
    const fused_problem a = make_fused(r, FORMAT_B4, FORMAT_F32, 40, 64, 4, 1);
    const fused_problem b = make_fused(r, FORMAT_B4, FORMAT_F32, 41, 64, 4, 1);
    std::vector<float> ya(40), yb(41);
    const low_rank_job jobs[2] = {{&a.w, ya.data()}, {&b.w, yb.data()}};
    const row_epilogue nothing = [](int64_t, int64_t) {};
    bool refused = false;
    try {
      matmul_low_rank(jobs, 2, a.x.data(), 1, ACT_Q8, 2, k, &nothing);
    } catch (const std::invalid_argument &) {
      refused = true;
    }
    CHECK_MSG(refused, "joint jobs of 40 and 41 rows were not refused");
  });
}
