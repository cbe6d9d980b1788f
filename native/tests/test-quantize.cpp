// Quantizers: exact detection of ParetoQ grids built with the paper's formulas (every source
// precision, with and without groups), rejection of off-grid rows, rtn against the formulas
// written out here, and mse never worse than rtn.
#include <algorithm>
#include <cstring>

#include "../core/quantize.h"
#include "harness.h"

using namespace lb;

static float to_source(double v, source_dtype s) { return round_to_source((float)v, s); }

// ParetoQ's fake-quantized weight for latent w and scale alpha (research A2 table), computed in
// double and rounded once to the checkpoint's precision, as its bf16/f32 training code yields.
static double paretoq_fake_quant(format f, double w, double alpha) {
  const double u = w / alpha, clipped = std::max(-0.99, std::min(0.99, u));
  switch (f) {
    case FORMAT_B1: return alpha * (w >= 0 ? 1 : -1);
    case FORMAT_T158: return alpha * std::nearbyint(1.5 * clipped) / 1.5;
    case FORMAT_B2: return alpha * (std::nearbyint(2 * clipped - 0.5) + 0.5) / 2;
    case FORMAT_B3: return alpha * std::max(-4.0, std::min(3.0, std::nearbyint(u)));
    default: return alpha * std::max(-8.0, std::min(7.0, std::nearbyint(u)));
  }
}

// A grid matrix: each row (or group) has its own alpha, rounded to the source precision first.
static std::vector<float> grid_matrix(lbtest::rng &r, format f, int64_t rows, int64_t cols, int64_t group,
                                      source_dtype src) {
  std::vector<float> w(rows * cols);
  const int64_t g = group ? group : cols;
  for (int64_t i = 0; i < rows; i++) {
    for (int64_t j0 = 0; j0 < cols; j0 += g) {
      const double alpha = to_source(0.02 * std::exp(0.5 * r.normal()), src);
      for (int64_t j = j0; j < std::min(cols, j0 + g); j++)
        w[i * cols + j] = to_source(paretoq_fake_quant(f, alpha * 2.5 * r.normal(), alpha), src);
    }
  }
  return w;
}

static std::vector<float> dequantize_all(const qtensor &t) {
  std::vector<float> out(t.rows * t.cols);
  qtensor_dequantize(t, 0, t.rows, out.data());
  return out;
}

TEST(exact_reproduces_paretoq_grids) {
  lbtest::rng r(3);
  const source_dtype sources[] = {SOURCE_F32, SOURCE_F16, SOURCE_BF16};
  const int64_t shapes[][2] = {{9, 5}, {7, 64}, {5, 100}, {3, 576}, {2, 1536}};
  for (int f = FORMAT_B1; f < FORMAT_COUNT; f++) {
    for (source_dtype src : sources) {
      for (auto &s : shapes) {
        for (int64_t group : {0, 32, 64}) {
          if (!qtensor_check_shape((format)f, s[0], s[1], group).empty()) continue;
          std::vector<float> w = grid_matrix(r, (format)f, s[0], s[1], group, src);
          qtensor t = qtensor_alloc((format)f, s[0], s[1], group);
          std::string err = quantize_rows(t, w.data(), 0, s[0], METHOD_EXACT, src);
          CHECK_MSG(err.empty(), err);
          std::vector<float> back = dequantize_all(t);
          int64_t mismatches = 0;
          for (size_t i = 0; i < w.size(); i++) mismatches += round_to_source(back[i], src) != w[i];
          if (src == SOURCE_F32)  // f32 sources come back bit for bit without rounding
            for (size_t i = 0; i < w.size(); i++) mismatches += back[i] != w[i];
          CHECK_MSG(mismatches == 0, std::string(traits((format)f).name) + " src " + std::to_string(src) +
                                         " group " + std::to_string(group) + ": " + std::to_string(mismatches));
        }
      }
    }
  }
}

TEST(exact_rejects_off_grid_rows) {
  lbtest::rng r(4);
  for (int f = FORMAT_B1; f < FORMAT_COUNT; f++) {
    std::vector<float> w = grid_matrix(r, (format)f, 8, 256, 0, SOURCE_F32);
    w[5 * 256 + 17] = w[5 * 256 + 17] * 1.37f + 0.0013f;  // off the grid
    qtensor t = qtensor_alloc((format)f, 8, 256, 0);
    std::string err = quantize_rows(t, w.data(), 0, 8, METHOD_EXACT, SOURCE_F32);
    CHECK_MSG(err.find("row 5 ") != std::string::npos && err.find(traits((format)f).name) != std::string::npos,
              "got: " + err);
    // A float matrix is not on any grid; NaN is rejected by name.
    std::vector<float> g(4 * 256);
    for (auto &v : g) v = r.normal();
    CHECK(!quantize_rows(t, g.data(), 0, 4, METHOD_EXACT, SOURCE_F32).empty());
    g[3 * 256 + 9] = NAN;
    err = quantize_rows(t, g.data(), 3, 4, METHOD_RTN, SOURCE_F32);
    CHECK_MSG(err.find("row 3, column 9 is not finite") != std::string::npos, err);
  }
}

// rtn written out from the paper's formulas (init column of research A2), compared value by value.
TEST(rtn_matches_paper_formulas) {
  lbtest::rng r(5);
  for (int f = FORMAT_B1; f < FORMAT_COUNT; f++) {
    const int64_t rows = 6, cols = 300;
    std::vector<float> w(rows * cols);
    for (auto &v : w) v = 0.05f * r.normal();
    qtensor t = qtensor_alloc((format)f, rows, cols, 0);
    CHECK(quantize_rows(t, w.data(), 0, rows, METHOD_RTN, SOURCE_F32).empty());
    std::vector<float> back = dequantize_all(t);
    double worst = 0;
    for (int64_t i = 0; i < rows; i++) {
      double maxabs = 0, meanabs = 0;
      for (int64_t j = 0; j < cols; j++) {
        maxabs = std::max(maxabs, (double)std::fabs(w[i * cols + j]));
        meanabs += std::fabs(w[i * cols + j]) / cols;
      }
      const double alpha = f == FORMAT_B1 ? meanabs : f == FORMAT_B3 ? maxabs / 3 : f == FORMAT_B4 ? maxabs / 7 : maxabs;
      for (int64_t j = 0; j < cols; j++)
        worst = std::max(worst, std::fabs(back[i * cols + j] - paretoq_fake_quant((format)f, w[i * cols + j], alpha)) / alpha);
    }
    CHECK_MSG(worst < 1e-5, std::string(traits((format)f).name) + " worst " + std::to_string(worst));
  }
}

TEST(mse_never_worse_than_rtn) {
  lbtest::rng r(6);
  for (int f = FORMAT_B1; f < FORMAT_COUNT; f++) {
    for (int64_t group : {0, 64}) {
      const int64_t rows = 8, cols = 512;
      std::vector<float> w(rows * cols);
      for (auto &v : w) v = r.normal() * (r.below(50) == 0 ? 6.0f : 1.0f);  // a few outliers
      qtensor a = qtensor_alloc((format)f, rows, cols, group), b = qtensor_alloc((format)f, rows, cols, group);
      CHECK(quantize_rows(a, w.data(), 0, rows, METHOD_RTN, SOURCE_F32).empty());
      CHECK(quantize_rows(b, w.data(), 0, rows, METHOD_MSE, SOURCE_F32).empty());
      std::vector<float> da = dequantize_all(a), db = dequantize_all(b);
      double total_a = 0, total_b = 0;
      for (int64_t i = 0; i < rows; i++) {
        double ea = 0, eb = 0;
        for (int64_t j = 0; j < cols; j++) {
          ea += std::pow(da[i * cols + j] - w[i * cols + j], 2);
          eb += std::pow(db[i * cols + j] - w[i * cols + j], 2);
        }
        CHECK_MSG(eb <= ea * (1 + 1e-6), std::string(traits((format)f).name) + " row " + std::to_string(i));
        total_a += ea, total_b += eb;
      }
      if (f != FORMAT_B1)  // b1's rtn scale (mean|w|) is already the least-squares optimum
        CHECK_MSG(total_b < 0.97 * total_a, std::string(traits((format)f).name) + " mse gains nothing");
    }
  }
}

TEST(shape_checks) {
  CHECK(!qtensor_check_shape(FORMAT_B2, 0, 5, 0).empty());
  CHECK(!qtensor_check_shape(FORMAT_B2, 5, 5, 48).empty());       // not a multiple of 32
  CHECK(!qtensor_check_shape(FORMAT_B2, 5, 100, 32).empty());     // 32-groups need cols % 32 == 0
  CHECK(qtensor_check_shape(FORMAT_B2, 5, 96, 32).empty());
  CHECK(!qtensor_check_shape(FORMAT_F16, 5, 96, 32).empty());     // float formats have no groups
  CHECK(!qtensor_check_shape(FORMAT_B4, int64_t(1) << 40, 1 << 20, 0).empty());  // too large
}
