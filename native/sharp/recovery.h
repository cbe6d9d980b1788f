// SHARP's low-rank recovery of one projection: a target layer's weight W_target is approximated by
// the weight the runtime multiplies, W_base (the reference layer's, dequantized when quantized),
// plus B A of rank r, so the target computes y = W_base x + B (A x) (research notes B4/B5).
#pragma once

#include <cstdint>

#include "linalg.h"

namespace lb {
namespace sharp {

struct low_rank_factors {
  dmat a;  // (rank, in)
  dmat b;  // (out, rank)
  int64_t rank() const { return a.rows; }
  bool empty() const { return a.rows == 0; }
};

// Data-free: the truncated SVD of delta = W_target - W_base, B = U_r S_r and A = V_r^T, the best
// rank-r approximation in Frobenius norm (Eckart-Young).
low_rank_factors fit_svd(const dmat &delta, int64_t rank, uint64_t seed);

// E[x x^T] over the rows of xs (tokens x in).
dmat input_covariance(const dmat &xs);

// Covariance-weighted: minimises E||(delta - B A) x||^2 over the calibration inputs, in closed
// form. With C = cov + lambda I (lambda = damping x the mean of cov's diagonal, so C is
// invertible): delta C^1/2 = U S V^T, B = U_r S_r, A = V_r^T C^-1/2.
low_rank_factors fit_cov(const dmat &delta, const dmat &cov, int64_t rank, double damping, uint64_t seed);

// B A, (out, in).
dmat product(const low_rank_factors &f);

// ||delta - B A||_F^2 / ||delta||_F^2: what the recovery leaves of the weight difference. For
// fit_svd it is the share of delta's spectral energy beyond the leading r singular values.
double weight_error(const dmat &delta, const low_rank_factors &f);
// E||(delta - B A) x||^2 / E||delta x||^2 under cov = E[x x^T]: fit_cov's objective, relative.
double output_error(const dmat &delta, const low_rank_factors &f, const dmat &cov);

}  // namespace sharp
}  // namespace lb
