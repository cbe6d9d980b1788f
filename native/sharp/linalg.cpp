// Dense float64 linear algebra for SHARP (see linalg.h).
#include "linalg.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace lb {
namespace sharp {

dmat dmat_from_floats(const float *p, int64_t rows, int64_t cols) {
  dmat m(rows, cols);
  for (size_t i = 0; i < m.v.size(); i++) m.v[i] = p[i];
  return m;
}

void dmat_to_floats(const dmat &m, float *out) {
  for (size_t i = 0; i < m.v.size(); i++) out[i] = (float)m.v[i];
}

dmat transpose(const dmat &m) {
  dmat t(m.cols, m.rows);
  for (int64_t r = 0; r < m.rows; r++)
    for (int64_t c = 0; c < m.cols; c++) t.at(c, r) = m.at(r, c);
  return t;
}

dmat identity(int64_t n) {
  dmat m(n, n);
  for (int64_t i = 0; i < n; i++) m.at(i, i) = 1.0;
  return m;
}

dmat matmul(const dmat &a, bool ta, const dmat &b, bool tb) {
  // Both operands in the orientation the axpy loop wants: A (m x k), B (k x n), row-major.
  const dmat at = ta ? transpose(a) : dmat();
  const dmat bt = tb ? transpose(b) : dmat();
  const dmat &A = ta ? at : a, &B = tb ? bt : b;
  const int64_t m = A.rows, k = A.cols, n = B.cols;
  dmat c(m, n);
  for (int64_t i = 0; i < m; i++) {
    double *ci = c.row(i);
    const double *ai = A.row(i);
    for (int64_t p = 0; p < k; p++) {
      const double s = ai[p];
      if (s == 0.0) continue;
      const double *bp = B.row(p);
      for (int64_t j = 0; j < n; j++) ci[j] += s * bp[j];
    }
  }
  return c;
}

dmat sub(const dmat &a, const dmat &b) {
  dmat c = a;
  for (size_t i = 0; i < c.v.size(); i++) c.v[i] -= b.v[i];
  return c;
}

double frobenius2(const dmat &m) {
  double s = 0;
  for (double x : m.v) s += x * x;
  return s;
}

namespace {

double dot(const double *x, const double *y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
  return s;
}

// (x, y) <- (c x - s y, s x + c y)
void rotate(double *x, double *y, int64_t n, double c, double s) {
  for (int64_t i = 0; i < n; i++) {
    const double xi = x[i], yi = y[i];
    x[i] = c * xi - s * yi;
    y[i] = s * xi + c * yi;
  }
}

// Orthogonal to this relative precision counts as converged; a few ulps above double epsilon,
// since the dot products themselves carry rounding of that order.
constexpr double kJacobiTolerance = 1e-15;
constexpr int kMaxSweeps = 80;

// SVD of a tall matrix (rows >= cols).
svd_result svd_tall(const dmat &a) {
  const int64_t m = a.rows, n = a.cols;
  dmat w = transpose(a);  // row j: column j of a, rotated towards U_j * s_j
  dmat vt = identity(n);  // row j: column j of V
  for (int sweep = 0; sweep < kMaxSweeps; sweep++) {
    bool rotated = false;
    for (int64_t p = 0; p + 1 < n; p++) {
      for (int64_t q = p + 1; q < n; q++) {
        const double alpha = dot(w.row(p), w.row(p), m), beta = dot(w.row(q), w.row(q), m);
        const double gamma = dot(w.row(p), w.row(q), m);
        if (gamma == 0.0 || std::fabs(gamma) <= kJacobiTolerance * std::sqrt(alpha * beta)) continue;
        rotated = true;
        // The rotation that zeroes the pair's inner product (Demmel & Veselic 1992).
        const double zeta = (beta - alpha) / (2.0 * gamma);
        const double t = std::copysign(1.0, zeta) / (std::fabs(zeta) + std::sqrt(1.0 + zeta * zeta));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = c * t;
        rotate(w.row(p), w.row(q), m, c, s);
        rotate(vt.row(p), vt.row(q), n, c, s);
      }
    }
    if (!rotated) break;
  }
  std::vector<double> norms(n);
  for (int64_t j = 0; j < n; j++) norms[j] = std::sqrt(dot(w.row(j), w.row(j), m));
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return norms[x] > norms[y]; });
  svd_result r{dmat(m, n), std::vector<double>(n), dmat(n, n)};
  for (int64_t k = 0; k < n; k++) {
    const int64_t j = order[k];
    r.s[k] = norms[j];
    const double inv = norms[j] > 0 ? 1.0 / norms[j] : 0.0;
    for (int64_t i = 0; i < m; i++) r.u.at(i, k) = w.at(j, i) * inv;
    for (int64_t i = 0; i < n; i++) r.v.at(i, k) = vt.at(j, i);
  }
  return r;
}

svd_result truncate(svd_result r, int64_t rank) {
  const int64_t k = std::min<int64_t>(rank, (int64_t)r.s.size());
  svd_result t{dmat(r.u.rows, k), std::vector<double>(r.s.begin(), r.s.begin() + k), dmat(r.v.rows, k)};
  for (int64_t i = 0; i < r.u.rows; i++)
    for (int64_t j = 0; j < k; j++) t.u.at(i, j) = r.u.at(i, j);
  for (int64_t i = 0; i < r.v.rows; i++)
    for (int64_t j = 0; j < k; j++) t.v.at(i, j) = r.v.at(i, j);
  return t;
}

// Matrices whose smaller side is at most this go through the exact Jacobi SVD.
constexpr int64_t kJacobiMaxSide = 384;

}  // namespace

svd_result svd(const dmat &a) {
  if (a.rows >= a.cols) return svd_tall(a);
  svd_result t = svd_tall(transpose(a));
  return svd_result{std::move(t.v), std::move(t.s), std::move(t.u)};
}

void orthonormalize_columns(dmat &m) {
  dmat t = transpose(m);  // rows are the columns
  const int64_t n = t.rows, len = t.cols;
  for (int64_t j = 0; j < n; j++) {
    double *qj = t.row(j);
    const double before = std::sqrt(dot(qj, qj, len));
    for (int pass = 0; pass < 2; pass++)
      for (int64_t i = 0; i < j; i++) {
        const double r = dot(t.row(i), qj, len);
        const double *qi = t.row(i);
        for (int64_t x = 0; x < len; x++) qj[x] -= r * qi[x];
      }
    const double norm = std::sqrt(dot(qj, qj, len));
    // A column (numerically) inside the span of the previous ones carries no new direction.
    const double inv = norm > 1e-12 * before && norm > 0 ? 1.0 / norm : 0.0;
    for (int64_t x = 0; x < len; x++) qj[x] *= inv;
  }
  m = transpose(t);
}

svd_result svd_randomized(const dmat &a, int64_t rank, uint64_t seed, int64_t oversample, int power_iters) {
  const int64_t k = std::min(rank + oversample, std::min(a.rows, a.cols));
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  dmat omega(a.cols, k);
  for (double &x : omega.v) x = normal(gen);
  dmat y = matmul(a, false, omega, false);  // (rows, k): a sample of a's range
  orthonormalize_columns(y);
  for (int i = 0; i < power_iters; i++) {
    // Re-orthogonalising between the products keeps small singular directions from drowning.
    dmat z = matmul(a, true, y, false);
    orthonormalize_columns(z);
    y = matmul(a, false, z, false);
    orthonormalize_columns(y);
  }
  const dmat small = matmul(y, true, a, false);  // (k, cols) = Q^T a
  svd_result s = svd(small);
  svd_result r{matmul(y, false, s.u, false), std::move(s.s), std::move(s.v)};
  return truncate(std::move(r), rank);
}

svd_result svd_truncated(const dmat &a, int64_t rank, uint64_t seed, int64_t oversample, int power_iters) {
  const int64_t side = std::min(a.rows, a.cols);
  if (side <= kJacobiMaxSide || 2 * (rank + oversample) >= side) return truncate(svd(a), rank);
  return svd_randomized(a, rank, seed, oversample, power_iters);
}

}  // namespace sharp
}  // namespace lb
