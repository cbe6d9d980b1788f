// SHARP's fused product y = W x + B (A x) (kernels/low-rank.h) on every ISA this CPU runs: the
// epilogue against the scalar reference table, the fused result against the plain matmul plus a
// float64 B (A x), and against float64 (W + B A) x; every weight format, f32 and f16 B, GEMV and
// GEMM, odd shapes, one and two threads.
#include <cstring>

#include "../core/quantize.h"
#include "../kernels/low-rank.h"
#include "harness.h"

using namespace lb;

namespace {

struct fused_problem {
  qtensor w, b;
  std::vector<float> w_dense, b_dense;  // dequantized
  std::vector<float> x, ax;             // (n, cols), (n, rank)
  int64_t n;
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

fused_problem make_fused(lbtest::rng &r, format wf, format bf, int64_t rows, int64_t cols, int64_t rank, int64_t n) {
  fused_problem p;
  p.n = n;
  p.w = random_tensor(r, wf, rows, cols, 1.0f, p.w_dense);
  p.b = random_tensor(r, bf, rows, rank, 0.5f, p.b_dense);
  p.x.resize(n * cols);
  for (auto &v : p.x) v = r.normal();
  p.ax.resize(n * rank);
  for (auto &v : p.ax) v = r.normal();
  return p;
}

// B (A x) in float64, and the scale of its rounding errors (sum |b||ax|), (n, rows).
void low_rank_reference(const fused_problem &p, std::vector<double> &want, std::vector<double> &size) {
  const int64_t rows = p.w.rows, rank = p.b.cols;
  want.assign(p.n * rows, 0), size.assign(p.n * rows, 0);
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t i = 0; i < rows; i++)
      for (int64_t k = 0; k < rank; k++) {
        const double t = (double)p.b_dense[i * rank + k] * p.ax[v * rank + k];
        want[v * rows + i] += t, size[v * rows + i] += std::fabs(t);
      }
}

std::string describe(const kernel_table &k, const fused_problem &p, const char *what) {
  return std::string(isa_name(k.id)) + " W " + traits(p.w.fmt).name + " B " + traits(p.b.fmt).name + " " +
         std::to_string(p.w.rows) + "x" + std::to_string(p.w.cols) + " rank " + std::to_string(p.b.cols) + " n " +
         std::to_string(p.n) + ": " + what;
}

// The fused result minus the plain product (same kernels, same split) is B (A x), to float rounding.
void check_fused_adds_low_rank(const kernel_table &k, const fused_problem &p, act_mode mode, int threads) {
  const int64_t rows = p.w.rows;
  std::vector<float> fused(p.n * rows), plain(p.n * rows);
  matmul_low_rank(p.w, {&p.b, p.ax.data()}, p.x.data(), p.n, fused.data(), mode, threads, k);
  matmul(p.w, p.x.data(), p.n, plain.data(), mode, threads, k);
  std::vector<double> want, size;
  low_rank_reference(p, want, size);
  double worst = 0;
  for (size_t i = 0; i < fused.size(); i++) {
    const double added = (double)fused[i] - plain[i];
    // Float summation of B (A x) plus the rounding of adding it to y.
    const double bound = 4e-6 * size[i] + 2e-7 * (std::fabs(plain[i]) + std::fabs(want[i])) + 1e-6;
    worst = std::max(worst, std::fabs(added - want[i]) / bound);
  }
  CHECK_MSG(worst <= 1, describe(k, p, "fused - plain vs float64 B (A x)") + " " + std::to_string(worst));
}

// With float activations, the fused product against float64 (W + B A) x, where A x is given.
void check_fused_vs_dense(const kernel_table &k, const fused_problem &p) {
  const int64_t rows = p.w.rows, cols = p.w.cols;
  std::vector<float> y(p.n * rows);
  matmul_low_rank(p.w, {&p.b, p.ax.data()}, p.x.data(), p.n, y.data(), ACT_F32, 2, k);
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
      worst = std::max(worst, std::fabs(y[v * rows + i] - e) / (4e-6 * size + 1e-6));
    }
  CHECK_MSG(worst <= 1, describe(k, p, "fused vs float64 (W x + B (A x))") + " " + std::to_string(worst));
}

// The epilogue of table k against the reference table's on the same rows of the same y.
void check_epilogue_vs_reference(const kernel_table &k, const fused_problem &p, lbtest::rng &r) {
  const int64_t rows = p.w.rows, rank = p.b.cols;
  act_f32 ax_k, ax_ref;
  act_prepare(k, p.b.fmt, p.ax.data(), p.n, rank, ax_k);
  act_prepare(kernels_ref(), p.b.fmt, p.ax.data(), p.n, rank, ax_ref);
  std::vector<float> y0(p.n * rows);
  for (auto &v : y0) v = r.normal();
  std::vector<float> y_k = y0, y_ref = y0;
  const int64_t r0 = r.below((int)rows), r1 = r0 + 1 + r.below((int)(rows - r0));
  add_low_rank_rows(p.b, ax_k, r0, r1, y_k.data(), rows, k);
  add_low_rank_rows(p.b, ax_ref, r0, r1, y_ref.data(), rows, kernels_ref());
  std::vector<double> want, size;
  low_rank_reference(p, want, size);
  double worst = 0;
  bool outside_untouched = true;
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t i = 0; i < rows; i++) {
      const size_t at = v * rows + i;
      if (i < r0 || i >= r1) {
        outside_untouched &= y_k[at] == y0[at] && y_ref[at] == y0[at];
        continue;
      }
      worst = std::max(worst, std::fabs((double)y_k[at] - y_ref[at]) / (4e-6 * size[at] + 2e-7 * std::fabs(y0[at]) + 1e-6));
    }
  CHECK_MSG(worst <= 1, describe(k, p, "epilogue vs reference epilogue") + " " + std::to_string(worst));
  CHECK_MSG(outside_untouched, describe(k, p, "epilogue wrote outside its rows"));
}

template <class Fn>
void for_each_isa(Fn fn) {
  for (int i = 0; i < ISA_COUNT; i++)
    if (isa_supported((isa)i)) fn(kernels_for((isa)i));
}

// rows, cols, rank, n: GEMV and GEMM, tails, ranks above and below a vector, a tile-sized split.
const int64_t kShapes[][4] = {{1, 1, 1, 1}, {5, 33, 2, 1}, {13, 64, 7, 1}, {64, 172, 16, 1}, {172, 64, 16, 3},
                              {96, 100, 33, 8}, {300, 257, 24, 5}, {1000, 128, 64, 2}};

}  // namespace

TEST(low_rank_fused_every_isa) {
  lbtest::rng r(31);
  for_each_isa([&](const kernel_table &k) {
    for (int wf = 0; wf < FORMAT_COUNT; wf++)
      for (format bf : {FORMAT_F32, FORMAT_F16})
        for (const auto &s : kShapes) {
          const fused_problem p = make_fused(r, (format)wf, bf, s[0], s[1], s[2], s[3]);
          check_epilogue_vs_reference(k, p, r);
          check_fused_vs_dense(k, p);
          for (int threads : {1, 2}) {
            check_fused_adds_low_rank(k, p, ACT_F32, threads);
            if (traits(p.w.fmt).quantized) check_fused_adds_low_rank(k, p, ACT_Q8, threads);
          }
        }
  });
}

TEST(low_rank_without_term_is_plain_matmul) {
  lbtest::rng r(32);
  const fused_problem p = make_fused(r, FORMAT_B2, FORMAT_F32, 37, 70, 4, 3);
  std::vector<float> a(p.n * 37), b(p.n * 37);
  matmul_low_rank(p.w, {}, p.x.data(), p.n, a.data(), ACT_Q8, 2, active_kernels());
  matmul(p.w, p.x.data(), p.n, b.data(), ACT_Q8, 2, active_kernels());
  CHECK(a == b);
}
