// Dense float64 linear algebra for SHARP's recovery fitting: a row-major matrix, products, an SVD
// (one-sided Jacobi, exact to rounding) and a truncated SVD (randomized subspace iteration with
// re-orthogonalisation) for matrices too large for Jacobi. Single-threaded: callers run one fit per
// pool task.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lb {
namespace sharp {

// A rows x cols matrix of doubles, row-major.
struct dmat {
  int64_t rows = 0, cols = 0;
  std::vector<double> v;

  dmat() = default;
  dmat(int64_t r, int64_t c) : rows(r), cols(c), v((size_t)(r * c), 0.0) {}
  double &at(int64_t r, int64_t c) { return v[(size_t)(r * cols + c)]; }
  double at(int64_t r, int64_t c) const { return v[(size_t)(r * cols + c)]; }
  double *row(int64_t r) { return v.data() + r * cols; }
  const double *row(int64_t r) const { return v.data() + r * cols; }
};

dmat dmat_from_floats(const float *p, int64_t rows, int64_t cols);
void dmat_to_floats(const dmat &m, float *out);
dmat transpose(const dmat &m);
dmat identity(int64_t n);

// op(a) * op(b), op = transpose when the flag is set. Inner loops are axpy-shaped so they
// vectorize without reassociating sums.
dmat matmul(const dmat &a, bool ta, const dmat &b, bool tb);

dmat sub(const dmat &a, const dmat &b);
double frobenius2(const dmat &m);  // sum of squares

// a = U diag(s) V^T, singular values descending. Thin: U (rows x k), V (cols x k), k = min(rows,
// cols). Columns of U for zero singular values are zero (callers use U diag(s), never U alone).
struct svd_result {
  dmat u;
  std::vector<double> s;
  dmat v;
};

// Exact SVD by one-sided Jacobi (Hestenes): rotates column pairs until all are orthogonal to
// machine precision. O(min^2 * max) per sweep; dependable for every shape and rank.
svd_result svd(const dmat &a);

// The leading `rank` singular triplets. Small matrices, or ranks near min(rows, cols), go through
// svd(); large ones through randomized subspace iteration (Halko, Martinsson, Tropp 2011, alg.
// 4.4) with `oversample` extra columns and `power_iters` re-orthogonalised power steps, finished
// by a Jacobi SVD of the small projected matrix.
svd_result svd_truncated(const dmat &a, int64_t rank, uint64_t seed, int64_t oversample = 10, int power_iters = 4);
// The randomized path alone (for tests).
svd_result svd_randomized(const dmat &a, int64_t rank, uint64_t seed, int64_t oversample, int power_iters);

// Orthonormalises the columns of m in place (modified Gram-Schmidt, twice: "twice is enough").
// Columns that vanish become zero.
void orthonormalize_columns(dmat &m);

}  // namespace sharp
}  // namespace lb
