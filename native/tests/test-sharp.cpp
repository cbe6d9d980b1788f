// SHARP's recovery fitting (native/sharp): the SVDs against matrices built from known factors, the
// svd and cov initialisations against what their closed forms must satisfy (exactness at full
// rank, Eckart-Young's error, cov's optimality on its own objective), Single Layer Warmup's hand-
// written gradients against central finite differences, and refinement lowering its loss.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "../sharp/fit.h"
#include "harness.h"

using namespace lb;
using namespace lb::sharp;

namespace {

dmat random_matrix(lbtest::rng &r, int64_t rows, int64_t cols, double scale = 1.0) {
  dmat m(rows, cols);
  for (double &x : m.v) x = scale * r.normal();
  return m;
}

// A matrix with orthonormal columns (rows >= cols).
dmat random_orthonormal(lbtest::rng &r, int64_t rows, int64_t cols) {
  dmat q = random_matrix(r, rows, cols);
  orthonormalize_columns(q);
  return q;
}

// U diag(s) V^T.
dmat compose(const dmat &u, const std::vector<double> &s, const dmat &v) {
  dmat us = u;
  for (int64_t i = 0; i < us.rows; i++)
    for (int64_t k = 0; k < us.cols; k++) us.at(i, k) *= s[k];
  return matmul(us, false, v, true);
}

double max_abs_diff(const dmat &a, const dmat &b) {
  double m = 0;
  for (size_t i = 0; i < a.v.size(); i++) m = std::max(m, std::fabs(a.v[i] - b.v[i]));
  return m;
}

// max |Q^T Q - I| over the columns with a nonzero singular value.
double orthogonality_error(const dmat &q, int64_t cols) {
  double worst = 0;
  for (int64_t a = 0; a < cols; a++)
    for (int64_t b = 0; b < cols; b++) {
      double d = 0;
      for (int64_t i = 0; i < q.rows; i++) d += q.at(i, a) * q.at(i, b);
      worst = std::max(worst, std::fabs(d - (a == b ? 1.0 : 0.0)));
    }
  return worst;
}

// A = U diag(s) V^T with known s (descending), then checks svd(A) gives s, orthonormal factors and A back.
void check_known_svd(lbtest::rng &r, int64_t rows, int64_t cols, std::vector<double> s) {
  const int64_t k = std::min(rows, cols);
  const dmat u = random_orthonormal(r, rows, k), v = random_orthonormal(r, cols, k);
  const dmat a = compose(u, s, v);
  const svd_result got = svd(a);
  const std::string what = std::to_string(rows) + "x" + std::to_string(cols);
  CHECK_MSG((int64_t)got.s.size() == k, what + " singular value count");
  double s_err = 0;
  int64_t nonzero = 0;
  for (int64_t i = 0; i < k; i++) {
    s_err = std::max(s_err, std::fabs(got.s[i] - s[i]));
    if (s[i] > 0) nonzero++;
  }
  CHECK_MSG(s_err <= 1e-12 * s[0], what + " singular values off by " + std::to_string(s_err));
  CHECK_MSG(max_abs_diff(compose(got.u, got.s, got.v), a) <= 1e-12 * s[0], what + " U S V^T is not A");
  CHECK_MSG(orthogonality_error(got.u, nonzero) <= 1e-12, what + " U not orthonormal");
  CHECK_MSG(orthogonality_error(got.v, k) <= 1e-12, what + " V not orthonormal");
}

// The low-rank product's error against delta, as E||e x||^2 with the sample covariance.
double data_objective(const dmat &delta, const low_rank_factors &f, const dmat &xs) {
  const dmat e = f.empty() ? delta : sub(delta, product(f));
  return frobenius2(matmul(xs, false, e, true)) / (double)xs.rows;
}

// Inputs with very different energy per direction, as MLP inputs have.
dmat anisotropic_inputs(lbtest::rng &r, int64_t n, int64_t dim) {
  dmat xs = random_matrix(r, n, dim);
  const dmat mix = random_matrix(r, dim, dim, 1.0 / std::sqrt((double)dim));
  xs = matmul(xs, false, mix, false);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < dim; j++) xs.at(i, j) *= std::exp(-0.15 * (double)j);
  return xs;
}

}  // namespace

TEST(sharp_svd_known_factors) {
  lbtest::rng r(41);
  check_known_svd(r, 7, 7, {5, 4, 3, 2, 1, 0.5, 0.25});
  check_known_svd(r, 40, 9, {9, 8, 7, 6, 5, 4, 3, 2, 1});
  check_known_svd(r, 6, 30, {3, 2.5, 2, 1.5, 1, 1e-3});
  check_known_svd(r, 20, 12, {4, 4, 4, 2, 2, 1, 1, 1, 0.5, 0, 0, 0});  // repeated and zero values
  check_known_svd(r, 64, 172, std::vector<double>(64, 1.0));           // all equal: a scaled isometry
  std::vector<double> decay(50);
  for (int i = 0; i < 50; i++) decay[i] = std::pow(0.8, i);
  check_known_svd(r, 120, 50, decay);
}

TEST(sharp_svd_zero_matrix) {
  const svd_result s = svd(dmat(5, 3));
  for (double x : s.s) CHECK(x == 0);
  CHECK(max_abs_diff(compose(s.u, s.s, s.v), dmat(5, 3)) == 0);
}

TEST(sharp_randomized_svd_recovers_leading_triplets) {
  lbtest::rng r(42);
  const int64_t rows = 700, cols = 500, k = 500, rank = 12;
  std::vector<double> s(k);
  for (int64_t i = 0; i < k; i++) s[i] = 10.0 * std::pow(0.7, (double)i);
  const dmat u = random_orthonormal(r, rows, k), v = random_orthonormal(r, cols, k);
  const dmat a = compose(u, s, v);
  for (const svd_result &got : {svd_randomized(a, rank, 1, 10, 4), svd_truncated(a, rank, 1)}) {
    CHECK((int64_t)got.s.size() == rank);
    double worst = 0;
    for (int64_t i = 0; i < rank; i++) worst = std::max(worst, std::fabs(got.s[i] - s[i]) / s[i]);
    CHECK_MSG(worst <= 1e-9, "randomized singular values off by " + std::to_string(worst));
    // The rank-r part it returns is the best one: its error is the tail's energy.
    double tail = 0;
    for (int64_t i = rank; i < k; i++) tail += s[i] * s[i];
    const double err = frobenius2(sub(a, compose(got.u, got.s, got.v)));
    CHECK_MSG(std::fabs(err - tail) <= 1e-9 * tail, "randomized rank-r error is not the tail energy");
    CHECK(orthogonality_error(got.u, rank) <= 1e-12);
    CHECK(orthogonality_error(got.v, rank) <= 1e-12);
  }
}

TEST(sharp_fit_svd_full_rank_is_exact_and_error_falls_with_rank) {
  lbtest::rng r(43);
  const dmat delta = random_matrix(r, 172, 64, 0.05);
  const svd_result s = svd(delta);
  double last = 2;
  for (int64_t rank : {0, 1, 4, 16, 32, 63, 64}) {
    const low_rank_factors f = rank ? fit_svd(delta, rank, 7) : low_rank_factors{};
    const double e = weight_error(delta, f);
    double tail = 0, total = 0;
    for (size_t i = 0; i < s.s.size(); i++) {
      total += s.s[i] * s.s[i];
      if ((int64_t)i >= rank) tail += s.s[i] * s.s[i];
    }
    CHECK_MSG(std::fabs(e - tail / total) <= 1e-10, "svd error is not the tail energy at rank " + std::to_string(rank));
    CHECK_MSG(e < last, "svd error did not fall at rank " + std::to_string(rank));
    last = e;
    if (rank) CHECK(f.a.rows == rank && f.a.cols == 64 && f.b.rows == 172 && f.b.cols == rank);
  }
  CHECK_MSG(last <= 1e-24, "full rank leaves " + std::to_string(last));
}

TEST(sharp_fit_cov_beats_svd_on_its_objective) {
  lbtest::rng r(44);
  const dmat delta = random_matrix(r, 48, 32, 0.1);
  const dmat xs = anisotropic_inputs(r, 400, 32);
  const dmat cov = input_covariance(xs);
  for (int64_t rank : {1, 4, 8, 16}) {
    const low_rank_factors by_svd = fit_svd(delta, rank, 1), by_cov = fit_cov(delta, cov, rank, 1e-9, 1);
    const double e_svd = data_objective(delta, by_svd, xs), e_cov = data_objective(delta, by_cov, xs);
    CHECK_MSG(e_cov < e_svd, "cov " + std::to_string(e_cov) + " not below svd " + std::to_string(e_svd));
    CHECK(weight_error(delta, by_svd) <= weight_error(delta, by_cov));  // and svd wins on its own
    // output_error is the same objective, relative.
    const double rel = output_error(delta, by_cov, cov) * data_objective(delta, {}, xs);
    CHECK_MSG(std::fabs(rel - e_cov) <= 1e-9 * e_cov, "output_error disagrees with the data objective");
    // Closed form: no small step of A or B lowers it.
    for (int trial = 0; trial < 20; trial++) {
      low_rank_factors moved = by_cov;
      dmat &m = trial % 2 ? moved.a : moved.b;
      m.v[r.below((int)m.v.size())] += 1e-4 * (r.below(2) ? 1 : -1);
      CHECK(data_objective(delta, moved, xs) >= e_cov * (1 - 1e-12));
    }
  }
  // Identity covariance: the objective is the Frobenius norm, so cov gives svd's product.
  const low_rank_factors a = fit_svd(delta, 5, 1), b = fit_cov(delta, identity(32), 5, 0, 1);
  CHECK(max_abs_diff(product(a), product(b)) <= 1e-12);
}

TEST(sharp_slw_gradients_match_finite_differences) {
  lbtest::rng r(45);
  const int64_t dim = 6, hidden = 9, n = 5;
  slw_mlp m;
  m.base[PROJ_GATE] = random_matrix(r, hidden, dim, 0.5);
  m.base[PROJ_UP] = random_matrix(r, hidden, dim, 0.5);
  m.base[PROJ_DOWN] = random_matrix(r, dim, hidden, 0.5);
  const int64_t ranks[PROJ_COUNT] = {2, 3, 2};
  for (int p = 0; p < PROJ_COUNT; p++)
    m.recovery[p] = {random_matrix(r, ranks[p], m.base[p].cols, 0.4), random_matrix(r, m.base[p].rows, ranks[p], 0.4)};
  const dmat xs = random_matrix(r, n, dim), want = random_matrix(r, n, dim);
  low_rank_factors grads[PROJ_COUNT];
  slw_loss(m, xs, want, &grads);
  const double h = 1e-6;
  double worst = 0;
  for (int p = 0; p < PROJ_COUNT; p++)
    for (int which = 0; which < 2; which++) {
      dmat &param = which ? m.recovery[p].b : m.recovery[p].a;
      const dmat &grad = which ? grads[p].b : grads[p].a;
      CHECK(grad.rows == param.rows && grad.cols == param.cols);
      for (size_t i = 0; i < param.v.size(); i++) {
        const double keep = param.v[i];
        param.v[i] = keep + h;
        const double up = slw_loss(m, xs, want, nullptr);
        param.v[i] = keep - h;
        const double down = slw_loss(m, xs, want, nullptr);
        param.v[i] = keep;
        const double numeric = (up - down) / (2 * h);
        worst = std::max(worst, std::fabs(numeric - grad.v[i]) / (1e-6 + std::fabs(numeric)));
      }
    }
  CHECK_MSG(worst <= 1e-6, "SLW gradient vs finite differences: " + std::to_string(worst));
}

namespace {

// A layer whose target weights are the reference's plus structured change.
layer_job synthetic_layer(lbtest::rng &r, int64_t dim, int64_t hidden, int64_t tokens, int64_t rank) {
  layer_job j;
  j.layer = 3;
  const int64_t shapes[PROJ_COUNT][2] = {{hidden, dim}, {hidden, dim}, {dim, hidden}};
  for (int p = 0; p < PROJ_COUNT; p++) {
    j.base[p] = random_matrix(r, shapes[p][0], shapes[p][1], 0.3);
    const dmat change = matmul(random_matrix(r, shapes[p][0], 4, 0.1), false, random_matrix(r, 4, shapes[p][1]), false);
    j.target[p] = j.base[p];
    for (size_t i = 0; i < change.v.size(); i++) j.target[p].v[i] += change.v[i] + 0.02 * r.normal();
    j.rank[p] = rank;
  }
  j.ffn_in = anisotropic_inputs(r, tokens, dim);
  // The down input is what the original layer computes from ffn_in.
  const dmat g = matmul(j.ffn_in, false, j.target[PROJ_GATE], true), u = matmul(j.ffn_in, false, j.target[PROJ_UP], true);
  j.swiglu = u;
  for (size_t i = 0; i < g.v.size(); i++) j.swiglu.v[i] *= g.v[i] / (1 + std::exp(-g.v[i]));
  return j;
}

bool rejects(const std::vector<layer_job> &jobs, const fit_options &o) {
  try {
    fit_layers(jobs, o, 1);
  } catch (const std::invalid_argument &) {
    return true;
  }
  return false;
}

}  // namespace

TEST(sharp_refinement_lowers_slw_loss) {
  lbtest::rng r(46);
  const std::vector<layer_job> jobs = {synthetic_layer(r, 16, 40, 300, 3)};
  for (recovery_init init : {INIT_NONE, INIT_SVD, INIT_COV}) {
    fit_options o;
    o.init = init;
    o.refine.steps = 150;
    o.refine.learning_rate = 3e-3;
    o.refine.batch = 64;
    const layer_fit f = fit_layers(jobs, o, 2)[0];
    CHECK_MSG(f.loss_refined < f.loss_init, "refinement did not lower the loss for init " + std::to_string(init));
    CHECK(f.loss_refined < f.loss_shared);
    if (init == INIT_NONE) CHECK(std::fabs(f.loss_init - f.loss_shared) <= 1e-12 * f.loss_shared);
  }
}

TEST(sharp_refinement_keeps_its_best_factors) {
  lbtest::rng r(48);
  layer_job j = synthetic_layer(r, 16, 40, 300, 3);
  slw_mlp shared;
  for (int p = 0; p < PROJ_COUNT; p++) shared.base[p] = j.base[p];
  slw_mlp original;
  for (int p = 0; p < PROJ_COUNT; p++) original.base[p] = j.target[p];
  const dmat want = mlp_output(original, j.ffn_in);
  for (int p = 0; p < PROJ_COUNT; p++) shared.recovery[p] = fit_svd(sub(j.target[p], j.base[p]), 3, 1);
  const double start = slw_loss(shared, j.ffn_in, want, nullptr);
  slw_options o;
  o.steps = 40, o.learning_rate = 0.5, o.batch = 16, o.check_every = 10;  // far too large a step
  const double kept = slw_refine(shared, j.ffn_in, want, o);
  CHECK(kept <= start);
  CHECK(std::fabs(slw_loss(shared, j.ffn_in, want, nullptr) - kept) <= 1e-12 * kept);
}

TEST(sharp_fit_layers_reports_and_checks) {
  lbtest::rng r(47);
  std::vector<layer_job> jobs = {synthetic_layer(r, 12, 30, 200, 2), synthetic_layer(r, 12, 30, 200, 0)};
  fit_options o;
  o.init = INIT_COV;
  const std::vector<layer_fit> one = fit_layers(jobs, o, 1), two = fit_layers(jobs, o, 2);
  for (int p = 0; p < PROJ_COUNT; p++) {
    CHECK(max_abs_diff(one[0].recovery[p].a, two[0].recovery[p].a) == 0);  // threads do not change results
    CHECK(one[0].report[p].output_error < 1 && one[0].report[p].weight_error < 1);
    CHECK(one[1].recovery[p].empty() && one[1].report[p].output_error == 1);  // rank 0: none
  }
  CHECK(one[0].loss_init < one[0].loss_shared);
  CHECK(one[1].loss_init == one[1].loss_shared);
  // cov and refinement need calibration inputs; shapes must agree.
  std::vector<layer_job> bare = {jobs[0]};
  bare[0].ffn_in = dmat(), bare[0].swiglu = dmat();
  CHECK(rejects(bare, o));
  o.init = INIT_SVD;
  const layer_fit data_free = fit_layers(bare, o, 1)[0];
  CHECK(std::isnan(data_free.loss_shared) && std::isnan(data_free.report[0].output_error));
  bare[0].rank[PROJ_DOWN] = 31;  // above min(rows, cols)
  CHECK(rejects(bare, o));
}
