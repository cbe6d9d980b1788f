// Every kernel of every ISA this CPU runs, every format, odd shapes: against the scalar reference
// (same int8 activations, so only float summation order differs) and against a float64 product
// of the dequantized weights (within the activation-quantization bound computed here).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "../core/pool.h"
#include "../core/quantize.h"
#include "../kernels/kernels.h"
#include "../kernels/simd-gemm.h"
#include "every-isa.h"
#include "harness.h"

using namespace lb;

namespace {

const int64_t kCols[] = {1, 3, 31, 32, 33, 63, 64, 65, 100, 172, 255, 256, 257, 500, 512, 513, 1000, 1152};
const int64_t kRowsVecs[][2] = {{1, 1}, {4, 1}, {5, 1}, {13, 1}, {3, 2}, {5, 3}, {9, 5}, {4, 8}, {11, 15}};

struct problem {
  qtensor w;
  std::vector<float> dense;  // dequantized weights
  std::vector<float> x;      // n x cols
  int64_t n;
};

problem make_problem(lbtest::rng &r, format f, int64_t rows, int64_t cols, int64_t n, int64_t group) {
  problem p;
  p.n = n;
  std::vector<float> w(rows * cols);
  for (auto &v : w) v = r.normal();
  p.w = qtensor_alloc(f, rows, cols, group);
  if (traits(f).quantized) {
    quantize_rows(p.w, w.data(), 0, rows, METHOD_RTN, SOURCE_F32);
  } else {
    for (int64_t i = 0; i < rows; i++) {
      for (int64_t j = 0; j < cols; j++) {
        const float v = w[i * cols + j];
        if (f == FORMAT_F32) std::memcpy(p.w.row(i) + 4 * j, &v, 4);
        else { const uint16_t h = f32_to_f16(v); std::memcpy(p.w.row(i) + 2 * j, &h, 2); }
      }
    }
  }
  p.dense.resize(rows * cols);
  qtensor_dequantize(p.w, 0, rows, p.dense.data());
  p.x.resize(n * cols);
  for (auto &v : p.x) v = r.normal() * (r.below(40) == 0 ? 20.0f : 1.0f);  // activation outliers
  return p;
}

// Worst |got - want| / bound over all outputs, where bound(v, r) is the allowed error.
template <class Bound>
double worst_ratio(const problem &p, const std::vector<float> &got, const std::vector<double> &want, Bound bound) {
  double worst = 0;
  for (int64_t v = 0; v < p.n; v++)
    for (int64_t r = 0; r < p.w.rows; r++) {
      const double err = std::fabs(got[v * p.w.rows + r] - want[v * p.w.rows + r]);
      worst = std::max(worst, err / bound(v, r));
    }
  return worst;
}

struct references {
  std::vector<double> exact;    // float64 product with the dequantized weights
  // Scale of float rounding errors: sum |x| * d * (c - o), the size of the partial sums kernels
  // form before the offset term cancels part of them (sum |w||x| for float weights).
  std::vector<double> abs_dot;
};

references make_references(const problem &p) {
  const int64_t rows = p.w.rows, cols = p.w.cols;
  const format_traits &t = traits(p.w.fmt);
  references ref;
  ref.exact.assign(p.n * rows, 0);
  ref.abs_dot.assign(p.n * rows, 0);
  std::vector<uint8_t> codes(cols);
  for (int64_t v = 0; v < p.n; v++) {
    const float *x = &p.x[v * cols];
    for (int64_t r = 0; r < rows; r++) {
      if (t.quantized) unpack_row(p.w.fmt, p.w.row(r), cols, codes.data());
      double e = 0, a = 0;
      for (int64_t j = 0; j < cols; j++) {
        const double wj = p.dense[r * cols + j];
        const double size = t.quantized ? p.w.row_scales(r)[p.w.group ? j / p.w.group : 0] * (codes[j] - t.offset) : std::fabs(wj);
        e += wj * x[j], a += size * std::fabs(x[j]);
      }
      ref.exact[v * rows + r] = e, ref.abs_dot[v * rows + r] = a;
    }
  }
  return ref;
}

// The most int8 activations can move each output: half a quantization step per activation,
// times each plane's code weight (natural-order activations give every column's step).
std::vector<double> activation_error_bound(const problem &p, const act_q8 &nat) {
  const int64_t rows = p.w.rows, cols = p.w.cols;
  const format_traits &t = traits(p.w.fmt);
  std::vector<double> bound(p.n * rows, 0);
  std::vector<uint8_t> codes(cols);
  for (int64_t r = 0; r < rows; r++) {
    unpack_row(p.w.fmt, p.w.row(r), cols, codes.data());
    for (int64_t v = 0; v < p.n; v++) {
      double b = 0;
      for (int64_t j = 0; j < cols; j++) {
        const double d = std::fabs(p.w.row_scales(r)[p.w.group ? j / p.w.group : 0]);
        int low = 0;
        for (int pl = 0; pl < t.n_planes; pl++) {
          const act_q8_plane &a = nat.planes[width_slot(t.plane_bits[pl])];
          const int field = (codes[j] >> low) & ((1 << t.plane_bits[pl]) - 1);
          b += d * (field << low) * a.scale[v * cols + j] / 2;
          low += t.plane_bits[pl];
        }
      }
      bound[v * rows + r] = b;
    }
  }
  return bound;
}

// The same quantized activations in natural order, for the reference kernel (a fused 3-bit GEMM
// multiplies both planes with the 2-bit plane's activations: the reference then does too).
act_q8 natural_copy(const act_q8 &a, format f, bool fused_b3) {
  act_q8 nat = a;
  const format_traits &t = traits(f);
  for (int pl = 0; pl < t.n_planes; pl++) {
    const int w = t.plane_bits[pl];
    const act_q8_plane &in = a.planes[width_slot(w)];
    if (in.shape.vector_bytes) act_layout_to_natural(in, w, a.cols, a.n, nat.planes[width_slot(w)]);
  }
  if (fused_b3) nat.planes[width_slot(1)] = nat.planes[width_slot(2)];
  return nat;
}

std::string describe(const kernel_table &k, format f, int64_t rows, int64_t cols, int64_t n, int64_t group) {
  return std::string(isa_name(k.id)) + " " + traits(f).name + " " + std::to_string(rows) + "x" +
         std::to_string(cols) + " n=" + std::to_string(n) + " group=" + std::to_string(group);
}

void check_integer_path(const kernel_table &k, const problem &p, const references &ref, const std::string &what) {
  const int64_t rows = p.w.rows, n = p.n;
  const kernel_table &kt = k.supports_group(p.w.fmt, p.w.group) ? k : kernels_ref();
  act_q8 a;
  act_prepare(kt, p.w.fmt, p.x.data(), n, p.w.cols, a);
  std::vector<float> y(n * rows), y_ref(n * rows), y_matmul(n * rows);
  kt.gemm_q8[p.w.fmt]({&p.w, &a, y.data(), rows, 0, rows});
  const act_q8 nat = natural_copy(a, p.w.fmt, kt.fused_b3 && b3_gemm_fusable(p.w, n));
  kernels_ref().gemm_q8[p.w.fmt]({&p.w, &nat, y_ref.data(), rows, 0, rows});
  std::vector<double> yr(y_ref.begin(), y_ref.end());
  const double vs_ref = worst_ratio(p, y, yr, [&](int64_t v, int64_t i) { return 2e-6 * ref.abs_dot[v * rows + i] + 1e-6; });
  CHECK_MSG(vs_ref <= 1, what + " int8 path vs reference: " + std::to_string(vs_ref));
  const std::vector<double> bound = activation_error_bound(p, nat);
  const double vs_exact = worst_ratio(p, y_ref, ref.exact, [&](int64_t v, int64_t i) {
    return 1.001 * bound[v * rows + i] + 1e-6 * ref.abs_dot[v * rows + i] + 1e-6;
  });
  CHECK_MSG(vs_exact <= 1, what + " reference int8 path vs float64: " + std::to_string(vs_exact));
  matmul(p.w, p.x.data(), n, y_matmul.data(), ACT_Q8, 2, k);  // the driver runs the same kernels
  CHECK_MSG(y_matmul == y, what + " matmul() differs from the kernel it should run");
}

// Both activation paths of one random problem against the references.
void check_shape(const kernel_table &k, format f, int64_t rows, int64_t cols, int64_t n, int64_t group, lbtest::rng &r) {
  problem p = make_problem(r, f, rows, cols, n, group);
  references ref = make_references(p);
  const std::string what = describe(k, f, rows, cols, n, group);
  if (traits(f).quantized) check_integer_path(k, p, ref, what);
  std::vector<float> y(n * rows);
  matmul(p.w, p.x.data(), n, y.data(), ACT_F32, 2, k);
  const double vs_exact = worst_ratio(p, y, ref.exact, [&](int64_t v, int64_t i) { return 2e-6 * ref.abs_dot[v * rows + i] + 1e-6; });
  CHECK_MSG(vs_exact <= 1, what + " float path vs float64: " + std::to_string(vs_exact));
}

void check_kernels(const kernel_table &k, format f, int64_t group, lbtest::rng &r) {
  for (int64_t cols : kCols) {
    if (!qtensor_check_shape(f, 1, cols, group).empty()) continue;
    for (auto &rv : kRowsVecs) check_shape(k, f, rv[0], cols, rv[1], group, r);
  }
}

}  // namespace

TEST(matmul_every_isa_format_shape) {
  lbtest::rng r(7);
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (int f = 0; f < FORMAT_COUNT; f++) check_kernels(k, (format)f, 0, r);
  });
}

TEST(matmul_scale_groups) {
  lbtest::rng r(8);
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (int f = FORMAT_B1; f < FORMAT_COUNT; f++)
      for (int64_t group : {32, 64, 256, 512, 1024}) check_kernels(k, (format)f, group, r);
  });
}

// GEMM cache blocks (simd-gemm.h) tile rows x vectors exactly once, whole tiles except the last.
TEST(gemm_blocks_cover_every_tile_once) {
  for (int64_t rows : {1, 5, 64, 1000})
    for (int64_t n : {1, 7, 40})
      for (size_t row_bytes : {(size_t)1, (size_t)1000, simd::kBlockBytes + 1})
        for (size_t vec_bytes : {(size_t)64, (size_t)5000}) {
          std::vector<int> seen(rows * n, 0);
          simd::for_each_block(3, 3 + rows, n, 4, 6, row_bytes, vec_bytes, [&](int64_t r0, int64_t r1, int64_t v0, int64_t v1) {
            CHECK((r0 - 3) % 4 == 0 && (v0 % 6) == 0 && r1 > r0 && v1 > v0);
            CHECK(r1 - r0 == 4 || (size_t)(r1 - r0) * row_bytes <= simd::kBlockBytes || r1 == 3 + rows);
            CHECK(v1 - v0 == 6 || (size_t)(v1 - v0) * vec_bytes <= simd::kBlockBytes || v1 == n);
            for (int64_t r = r0; r < r1; r++)
              for (int64_t v = v0; v < v1; v++) seen[(r - 3) * n + v]++;
          });
          CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
        }
}

// A prompt-sized GEMM: 8192 columns of activations (8-16 KiB a vector) and rows of 1-3 KiB span
// several blocks of rows and of vectors, with leftovers: each kind of GEMM (1-bit by field, 3-bit
// merged, plane by plane) against the references.
TEST(matmul_cache_blocks) {
  lbtest::rng r(11);
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (format f : {FORMAT_B1, FORMAT_B2, FORMAT_B3}) check_shape(k, f, 70, 8192, 18, 0, r);
  });
}

TEST(matmul_threads_agree) {
  lbtest::rng r(9);
  problem p = make_problem(r, FORMAT_B2, 203, 1152, 3, 0);
  std::vector<float> one(3 * 203), many(3 * 203);
  matmul(p.w, p.x.data(), 3, one.data(), ACT_Q8, 1, active_kernels());
  for (int threads : {2, 3, 8}) {
    matmul(p.w, p.x.data(), 3, many.data(), ACT_Q8, threads, active_kernels());
    CHECK_MSG(one == many, "threads=" + std::to_string(threads));  // rows are independent: bit equal
  }
}

TEST(matmul_on_views) {
  lbtest::rng r(10);
  problem p = make_problem(r, FORMAT_B3, 12, 200, 1, 0);
  qtensor v = qtensor_view(p.w, 5, 4);
  std::vector<float> all(12), part(4);
  matmul(p.w, p.x.data(), 1, all.data(), ACT_Q8, 1, active_kernels());
  matmul(v, p.x.data(), 1, part.data(), ACT_Q8, 1, active_kernels());
  for (int i = 0; i < 4; i++) CHECK(part[i] == all[5 + i]);
}

TEST(thread_pool_runs_every_task_and_rethrows) {
  std::vector<int> hits(1000, 0);
  thread_pool::global().run(1000, 4, [&](int64_t i) { hits[i]++; });
  CHECK(std::count(hits.begin(), hits.end(), 1) == 1000);
  bool thrown = false;
  try {
    thread_pool::global().run(100, 4, [&](int64_t i) { if (i == 57) throw std::runtime_error("task 57"); });
  } catch (const std::runtime_error &e) {
    thrown = std::string(e.what()) == "task 57";
  }
  CHECK(thrown);
}

TEST(thread_pool_spans_cover_every_unit_once) {
  for (int threads : {1, 2, 3, 4})
    for (int64_t n : {1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      thread_pool::global().run_spans(n, threads, [&](int64_t u0, int64_t u1) {
        CHECK(0 <= u0 && u0 < u1 && u1 <= n);
        for (int64_t u = u0; u < u1; u++) hits[u]++;
      });
      int once = 0;
      for (auto &h : hits) once += h == 1;
      CHECK(once == n);
    }
  // A slow thread's share is taken over: the caller sleeps on each of its spans, so the helper
  // must end up with more than its own half.
  const auto caller = std::this_thread::get_id();
  std::atomic<int64_t> by_helper{0};
  thread_pool::global().run_spans(1000, 2, [&](int64_t u0, int64_t u1) {
    if (std::this_thread::get_id() == caller) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    else by_helper += u1 - u0;
  });
  CHECK(by_helper > 500);
  // More units than one dispatch's share words count run as several dispatches, each unit once.
  const int64_t many = ((int64_t)1 << 28) + 5;
  std::atomic<int64_t> covered{0}, out_of_order{0};
  thread_pool::global().run_spans(many, 2, [&](int64_t u0, int64_t u1) {
    covered += u1 - u0;
    if (!(0 <= u0 && u0 < u1 && u1 <= many)) out_of_order++;
  });
  CHECK(covered == many && out_of_order == 0);
  bool thrown = false;
  try {
    thread_pool::global().run_spans(100, 2, [&](int64_t u0, int64_t u1) {
      if (u0 <= 57 && 57 < u1) throw std::runtime_error("unit 57");
    });
  } catch (const std::runtime_error &e) {
    thrown = std::string(e.what()) == "unit 57";
  }
  CHECK(thrown);
}

// ---------------------------------------------------------------------------------------------
// Interleaved weights (qtensor_interleave)

namespace {

const format kInterleavable[] = {FORMAT_B1, FORMAT_T158, FORMAT_B2, FORMAT_B3, FORMAT_B4};

// The interleaved GEMV's definition on its own int8 activations (interleaved_act_width), in
// double: y = d * (sum_j c_j q_j s(j) + o * X); and the most those activations can move each
// output (half a step each).
void interleaved_reference(const problem &p, const kernel_table &k, std::vector<double> &y, std::vector<double> &bound) {
  const int64_t rows = p.w.rows, cols = p.w.cols;
  const format_traits &t = traits(p.w.fmt);
  const int w = interleaved_act_width(p.w.fmt);
  act_interleaved a;
  k.prepare_interleaved(p.x.data(), cols, w, a);
  double x_sum = 0;
  for (int64_t j = 0; j < cols; j++) x_sum += p.x[j];
  std::vector<uint8_t> codes(cols);
  y.assign(rows, 0);
  bound.assign(rows, 0);
  for (int64_t r = 0; r < rows; r++) {
    unpack_row(p.w.fmt, p.w.row(r), cols, codes.data());
    double dot = 0, b = 0;
    for (int64_t j = 0; j < cols; j++) {
      const int k = (int)(j % kChunkCols / (8 * w));
      const int64_t block = std::min(j / interleaved_block_cols(w), interleaved_blocks(cols / kChunkCols, w) - 1);
      const double s = a.scale[block * (8 / w) + k];
      dot += (double)codes[j] * a.q[j] * s;
      b += (double)codes[j] * s / 2;
    }
    const double d = p.w.row_scales(r)[0];
    y[r] = d * (dot + t.offset * x_sum);
    bound[r] = std::fabs(d) * b;
  }
}

}  // namespace

TEST(interleave_round_trip_and_rules) {
  lbtest::rng r(12);
  for (format f : kInterleavable)
    for (auto shape : {std::pair<int64_t, int64_t>{16, 64}, {48, 1152}, {32, 320}}) {
      problem p = make_problem(r, f, shape.first, shape.second, 1, 0);
      CHECK(qtensor_interleavable(p.w));
      const qtensor t = qtensor_interleaved_copy(p.w);
      CHECK(t.interleaved && std::memcmp(t.data->data(), p.w.data->data(), t.data->size()) != 0);
      std::vector<uint8_t> rows(t.rows * t.row_stride());
      qtensor_copy_rows(t, 0, t.rows, rows.data());
      CHECK_MSG(std::memcmp(rows.data(), p.w.data->data(), rows.size()) == 0, std::string(traits(f).name) + " copy_rows");
      qtensor_copy_rows(t, 5, 6, rows.data());  // one row from the middle of a group
      CHECK(std::memcmp(rows.data(), p.w.row(5), t.row_stride()) == 0);
      std::vector<float> dense(p.dense.size());
      qtensor_dequantize(t, 0, t.rows, dense.data());
      CHECK(dense == p.dense);
      bool threw = false;
      try { qtensor_view(t, 0, 16); } catch (const std::invalid_argument &) { threw = true; }
      CHECK_MSG(threw, "a view of interleaved rows is refused");
    }
  // Where the words go: chunk by chunk, in row order (one-plane formats); b3 re-encoded as fused
  // words, each column's code found where qtensor.h says.
  for (format f : kInterleavable) {
    problem p = make_problem(r, f, 16, 128, 1, 0);
    const qtensor t = qtensor_interleaved_copy(p.w);
    auto word_byte = [&](size_t slot, int l, int j) { return t.data->data()[(slot * kInterleaveRows + l) * 4 + j]; };
    if (f != FORMAT_B3) {
      for (size_t m = 0; m < t.row_stride() / 4; m++)
        for (int l = 0; l < kInterleaveRows; l++)
          CHECK_MSG(std::memcmp(t.data->data() + (m * kInterleaveRows + l) * 4, p.w.row(l) + 4 * m, 4) == 0,
                    std::string(traits(f).name) + " word " + std::to_string(m) + " of row " + std::to_string(l));
      continue;
    }
    std::vector<uint8_t> codes(128);
    for (int l = 0; l < kInterleaveRows; l++) {
      unpack_row(f, p.w.row(l), 128, codes.data());
      for (int c = 0; c < 2; c++)
        for (int m = 0; m < 2; m++)
          for (int j = 0; j < 4; j++) {
            const uint8_t a = word_byte(6 * c + 3 * m, l, j), b = word_byte(6 * c + 3 * m + 1, l, j), h = word_byte(6 * c + 3 * m + 2, l, j);
            const int want[8] = {a & 7, a >> 3 & 7, b & 7, b >> 3 & 7, h & 7, h >> 3 & 7, (a >> 6) + 4 * (h >> 6 & 1), (b >> 6) + 4 * (h >> 7)};
            for (int k = 0; k < 8; k++)
              CHECK_MSG(codes[64 * c + 8 * k + 4 * m + j] == want[k], "b3 fused code of column " + std::to_string(64 * c + 8 * k + 4 * m + j) + " of row " + std::to_string(l));
          }
    }
  }
  // What cannot be interleaved: partial groups of rows, partial chunks, groups, floats, views.
  lbtest::rng r2(13);
  CHECK(!qtensor_interleavable(make_problem(r2, FORMAT_B2, 17, 64, 1, 0).w));
  CHECK(!qtensor_interleavable(make_problem(r2, FORMAT_B2, 16, 100, 1, 0).w));
  CHECK(!qtensor_interleavable(make_problem(r2, FORMAT_B2, 16, 256, 1, 64).w));
  CHECK(!qtensor_interleavable(make_problem(r2, FORMAT_F16, 16, 64, 1, 0).w));
  CHECK(!qtensor_interleavable(qtensor_view(make_problem(r2, FORMAT_B2, 32, 64, 1, 0).w, 16, 16)));
  bool threw = false;
  qtensor odd = make_problem(r2, FORMAT_B2, 17, 64, 1, 0).w;
  try { qtensor_interleave(odd); } catch (const std::invalid_argument &) { threw = true; }
  CHECK(threw && !odd.interleaved);
}

// GEMV on interleaved rows against its definition on the same int8 activations (float summation
// order only) and against float64 (within the activation bound); every other product (GEMMs,
// ISAs without the kernel, float activations) runs from row copies and must equal the row-major
// result bit for bit.
TEST(matmul_interleaved) {
  lbtest::rng r(14);
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (format f : kInterleavable)
      for (auto shape : {std::pair<int64_t, int64_t>{16, 64}, {48, 1152}, {32, 8192}, {64, 320}})
        for (int64_t n : {1, 3, 7}) {
          problem p = make_problem(r, f, shape.first, shape.second, n, 0);
          const qtensor t = qtensor_interleaved_copy(p.w);
          const std::string what = std::string(isa_name(k.id)) + " " + traits(f).name + " " +
                                   std::to_string(shape.first) + "x" + std::to_string(shape.second) + " n=" + std::to_string(n);
          std::vector<float> y_rows(n * p.w.rows), y(n * p.w.rows);
          for (act_mode mode : {ACT_Q8, ACT_F32}) {
            matmul(p.w, p.x.data(), n, y_rows.data(), mode, 2, k);
            matmul(t, p.x.data(), n, y.data(), mode, 2, k);
            if (n == 1 && mode == ACT_Q8 && k.gemv_interleaved[f]) {
              std::vector<double> want, bound;
              interleaved_reference(p, k, want, bound);
              const references ref = make_references(p);
              const double vs_def = worst_ratio(p, y, want, [&](int64_t, int64_t i) { return 2e-6 * ref.abs_dot[i] + 1e-6; });
              CHECK_MSG(vs_def <= 1, what + " interleaved GEMV vs its definition: " + std::to_string(vs_def));
              const double vs_exact = worst_ratio(p, y, ref.exact, [&](int64_t, int64_t i) {
                return 1.001 * bound[i] + 2e-6 * ref.abs_dot[i] + 1e-6;
              });
              CHECK_MSG(vs_exact <= 1, what + " interleaved GEMV vs float64: " + std::to_string(vs_exact));
            } else {
              CHECK_MSG(y == y_rows, what + (mode == ACT_Q8 ? " int8" : " f32") + ": row copies differ from the rows");
            }
          }
        }
  });
}

// matmul_share_front: the front of each pool slot's share of a decode-step dispatch, as run_spans
// first hands it out (units of 16 interleaved rows or 4 row-major rows, split evenly by count).
TEST(matmul_share_front_follows_the_split) {
  lbtest::rng r(15);
  const kernel_table &k = active_kernels();
  using range = thread_pool::byte_range;
  auto codes = [](const qtensor &w, int64_t r0, int64_t r1) { return range{w.row(r0), w.row(r1)}; };
  auto scales = [](const qtensor &w, int64_t r0, int64_t r1) {
    return range{reinterpret_cast<const uint8_t *>(w.row_scales(r0)), reinterpret_cast<const uint8_t *>(w.row_scales(r1))};
  };
  auto same = [](const std::vector<range> &got, const std::vector<range> &want) {
    if (got.size() != want.size()) return false;
    for (size_t i = 0; i < got.size(); i++)
      if (got[i].begin != want[i].begin || got[i].end != want[i].end) return false;
    return true;
  };
  const qtensor q = qtensor_interleaved_copy(make_problem(r, FORMAT_B2, 48, 1152, 1, 0).w);
  const qtensor kv = qtensor_interleaved_copy(make_problem(r, FORMAT_B2, 16, 1152, 1, 0).w);
  const matmul_job qk[] = {{&q, nullptr}, {&kv, nullptr}};
  // 4 units (q's 3, then k's): 2 threads give slot 1 units 2 and 3; 3 threads give slot 1 unit 1
  auto front = [&](const matmul_job *jobs, int count, int threads, bool joint, int slot, size_t budget) {
    return matmul_share_front(jobs, count, ACT_Q8, threads, k, joint, slot, budget);
  };
  CHECK(same(front(qk, 2, 2, false, 1, 1 << 20), {codes(q, 32, 48), scales(q, 32, 48), codes(kv, 0, 16), scales(kv, 0, 16)}));
  CHECK(same(front(qk, 2, 2, false, 0, 1 << 20), {codes(q, 0, 32), scales(q, 0, 32)}));
  CHECK(same(front(qk, 2, 3, false, 1, 1 << 20), {codes(q, 16, 32), scales(q, 16, 32)}));
  CHECK(front(qk, 2, 8, false, 4, 1 << 20).empty());  // 4 units: slots 4 and on take none
  const size_t rows16 = 16 * q.row_stride();
  const range cut = scales(q, 32, 48);
  CHECK(same(front(qk, 2, 2, false, 1, rows16 + 8), {codes(q, 32, 48), {cut.begin, cut.begin + 8}}));
  // joint jobs (gate, up): a unit is the same rows of both
  const qtensor gate = qtensor_interleaved_copy(make_problem(r, FORMAT_B4, 32, 1152, 1, 0).w);
  const qtensor up = qtensor_interleaved_copy(make_problem(r, FORMAT_B4, 32, 1152, 1, 0).w);
  const matmul_job gu[] = {{&gate, nullptr}, {&up, nullptr}};
  CHECK(same(front(gu, 2, 2, true, 1, 1 << 20), {codes(gate, 16, 32), scales(gate, 16, 32), codes(up, 16, 32), scales(up, 16, 32)}));
  // float weights have no scales; row-major units are 4 rows (10 here, slot 1 of 2 takes 5 .. 9)
  const qtensor head = make_problem(r, FORMAT_F16, 40, 64, 1, 0).w;
  const matmul_job h[] = {{&head, nullptr}};
  CHECK(same(front(h, 1, 2, false, 1, 1 << 20), {codes(head, 20, 40)}));
  // posted to the pool, the ranges change no result
  std::vector<float> x(1152), before(48), after(48);
  for (float &v : x) v = r.normal();
  matmul(q, x.data(), 1, before.data(), ACT_Q8, 2, k);
  matmul_prefetch_next(qk, 2, ACT_Q8, 2, k);
  matmul(q, x.data(), 1, after.data(), ACT_Q8, 2, k);
  CHECK(before == after);
}
