// Low-rank recovery of one projection (see recovery.h).
#include "recovery.h"

#include <algorithm>
#include <cmath>

namespace lb {
namespace sharp {

namespace {

// B = U_r S_r, A = V_r^T from a (truncated) SVD.
low_rank_factors factors_of(const svd_result &s, int64_t rank) {
  const int64_t r = std::min<int64_t>(rank, (int64_t)s.s.size());
  low_rank_factors f{dmat(r, s.v.rows), dmat(s.u.rows, r)};
  for (int64_t k = 0; k < r; k++) {
    for (int64_t i = 0; i < s.u.rows; i++) f.b.at(i, k) = s.u.at(i, k) * s.s[k];
    for (int64_t j = 0; j < s.v.rows; j++) f.a.at(k, j) = s.v.at(j, k);
  }
  return f;
}

// V diag(g(lambda)) V^T for a symmetric positive definite matrix given by its SVD (U = V).
template <class Fn>
dmat spectral_function(const svd_result &s, Fn g) {
  dmat scaled = s.v;
  for (int64_t i = 0; i < scaled.rows; i++)
    for (int64_t k = 0; k < scaled.cols; k++) scaled.at(i, k) *= g(s.s[k]);
  return matmul(scaled, false, s.v, true);
}

}  // namespace

low_rank_factors fit_svd(const dmat &delta, int64_t rank, uint64_t seed) {
  return factors_of(svd_truncated(delta, rank, seed), rank);
}

dmat input_covariance(const dmat &xs) {
  dmat c = matmul(xs, true, xs, false);
  const double inv = xs.rows > 0 ? 1.0 / (double)xs.rows : 0.0;
  for (double &x : c.v) x *= inv;
  return c;
}

low_rank_factors fit_cov(const dmat &delta, const dmat &cov, int64_t rank, double damping, uint64_t seed) {
  dmat c = cov;
  double mean_diag = 0;
  for (int64_t i = 0; i < c.rows; i++) mean_diag += c.at(i, i) / (double)c.rows;
  // An all-zero input (a dead channel set) still needs an invertible C.
  const double lambda = std::max(damping * mean_diag, 1e-30);
  for (int64_t i = 0; i < c.rows; i++) c.at(i, i) += lambda;
  const svd_result eig = svd(c);  // symmetric positive definite: singular values are eigenvalues
  const dmat root = spectral_function(eig, [](double l) { return std::sqrt(l); });
  const dmat inv_root = spectral_function(eig, [](double l) { return 1.0 / std::sqrt(l); });
  low_rank_factors f = factors_of(svd_truncated(matmul(delta, false, root, false), rank, seed), rank);
  f.a = matmul(f.a, false, inv_root, false);
  return f;
}

dmat product(const low_rank_factors &f) { return matmul(f.b, false, f.a, false); }

double weight_error(const dmat &delta, const low_rank_factors &f) {
  const double total = frobenius2(delta);
  if (total == 0) return 0;
  return frobenius2(f.empty() ? delta : sub(delta, product(f))) / total;
}

namespace {
// E||e x||^2 = trace(e C e^T) = sum of e .* (e C).
double covariance_norm(const dmat &e, const dmat &cov) {
  const dmat ec = matmul(e, false, cov, false);
  double s = 0;
  for (size_t i = 0; i < e.v.size(); i++) s += e.v[i] * ec.v[i];
  return s;
}
}  // namespace

double output_error(const dmat &delta, const low_rank_factors &f, const dmat &cov) {
  const double total = covariance_norm(delta, cov);
  if (total <= 0) return 0;
  return covariance_norm(f.empty() ? delta : sub(delta, product(f)), cov) / total;
}

}  // namespace sharp
}  // namespace lb
