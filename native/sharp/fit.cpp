// Fitting SHARP's recovery for target layers (see fit.h).
#include "fit.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "../core/pool.h"

namespace lb {
namespace sharp {

bool recovery_init_from_name(const char *name, recovery_init *out) {
  static const char *const names[] = {"none", "svd", "cov"};
  for (int i = 0; i < 3; i++)
    if (std::strcmp(name, names[i]) == 0) return *out = (recovery_init)i, true;
  return false;
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_job(const layer_job &j, const fit_options &o) {
  const std::string where = "layer " + std::to_string(j.layer) + ": ";
  const int64_t hidden = j.target[PROJ_GATE].rows, dim = j.target[PROJ_GATE].cols;
  const int64_t want[PROJ_COUNT][2] = {{hidden, dim}, {hidden, dim}, {dim, hidden}};
  for (int p = 0; p < PROJ_COUNT; p++) {
    for (const dmat *m : {&j.target[p], &j.base[p]})
      if (m->rows != want[p][0] || m->cols != want[p][1]) throw std::invalid_argument(where + "weight shapes differ");
    if (j.rank[p] < 0 || j.rank[p] > std::min(want[p][0], want[p][1]))
      throw std::invalid_argument(where + "rank must be between 0 and min(rows, cols)");
  }
  if (j.has_calibration() && (j.ffn_in.cols != dim || j.swiglu.cols != hidden || j.swiglu.rows != j.ffn_in.rows))
    throw std::invalid_argument(where + "calibration inputs do not match the layer");
  if ((o.init == INIT_COV || o.refine.steps > 0) && !j.has_calibration())
    throw std::invalid_argument(where + "cov and refinement need calibration inputs");
}

uint64_t seed_of(const fit_options &o, int layer, int proj) {
  return o.seed * 0x9E3779B97F4A7C15ull + (uint64_t)layer * 0x100000001B3ull + (uint64_t)proj;
}

// LoRA's start: A small and random (so gradients reach B), B = 0 (so A B = 0).
low_rank_factors lora_start(int64_t rank, int64_t out, int64_t in, uint64_t seed) {
  low_rank_factors f{dmat(rank, in), dmat(out, rank)};
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0 / std::sqrt((double)in));
  for (double &x : f.a.v) x = normal(gen);
  return f;
}

void initialise(const layer_job &j, int p, const dmat &cov, const fit_options &o, layer_fit &fit) {
  const dmat delta = sub(j.target[p], j.base[p]);
  const int64_t rank = j.rank[p];
  low_rank_factors &f = fit.recovery[p];
  if (rank > 0) {
    if (o.init == INIT_SVD) f = fit_svd(delta, rank, seed_of(o, j.layer, p));
    else if (o.init == INIT_COV) f = fit_cov(delta, cov, rank, o.damping, seed_of(o, j.layer, p));
    else f = lora_start(rank, delta.rows, delta.cols, seed_of(o, j.layer, p));
  }
  // LoRA's start has B = 0: its product is zero, as for no recovery.
  const bool zero = f.empty() || o.init == INIT_NONE;
  fit.report[p].weight_error = zero ? (frobenius2(delta) > 0 ? 1.0 : 0.0) : weight_error(delta, f);
  fit.report[p].output_error = !j.has_calibration() ? kNaN : zero ? 1.0 : output_error(delta, f, cov);
}

// SLW losses and refinement of one layer, relative to the original output's energy.
void warm_up(const layer_job &j, const std::array<dmat, 2> &covs, const fit_options &o, layer_fit &fit) {
  if (!j.has_calibration()) {
    fit.loss_shared = fit.loss_init = fit.loss_refined = kNaN;
    return;
  }
  slw_mlp original;
  for (int p = 0; p < PROJ_COUNT; p++) original.base[p] = j.target[p];
  const dmat want = mlp_output(original, j.ffn_in);
  const double energy = frobenius2(want) / (double)want.rows;
  const double scale = energy > 0 ? 1.0 / energy : 1.0;
  slw_mlp shared;
  for (int p = 0; p < PROJ_COUNT; p++) shared.base[p] = j.base[p];
  fit.loss_shared = slw_loss(shared, j.ffn_in, want, nullptr) * scale;
  for (int p = 0; p < PROJ_COUNT; p++) shared.recovery[p] = fit.recovery[p];
  fit.loss_init = slw_loss(shared, j.ffn_in, want, nullptr) * scale;
  if (o.refine.steps <= 0) {
    fit.loss_refined = fit.loss_init;
    return;
  }
  slw_options refine = o.refine;
  refine.seed = seed_of(o, j.layer, PROJ_COUNT);
  fit.loss_refined = slw_refine(shared, j.ffn_in, want, refine) * scale;
  for (int p = 0; p < PROJ_COUNT; p++) {
    fit.recovery[p] = shared.recovery[p];
    if (fit.recovery[p].empty()) continue;
    const dmat delta = sub(j.target[p], j.base[p]);
    fit.report[p].weight_error = weight_error(delta, fit.recovery[p]);
    fit.report[p].output_error = output_error(delta, fit.recovery[p], covs[p == PROJ_DOWN]);
  }
}

}  // namespace

std::vector<layer_fit> fit_layers(const std::vector<layer_job> &jobs, const fit_options &o, int threads) {
  for (const layer_job &j : jobs) check_job(j, o);
  const int64_t n = (int64_t)jobs.size();
  std::vector<layer_fit> fits(jobs.size());
  // E[x x^T] of each layer's two inputs (gate/up share one), when there is calibration data.
  std::vector<std::array<dmat, 2>> covs(jobs.size());
  thread_pool::global().run(2 * n, threads, [&](int64_t t) {
    const layer_job &j = jobs[t / 2];
    if (j.has_calibration()) covs[t / 2][t % 2] = input_covariance(t % 2 ? j.swiglu : j.ffn_in);
  });
  thread_pool::global().run(n * PROJ_COUNT, threads, [&](int64_t t) {
    const int64_t l = t / PROJ_COUNT;
    const int p = (int)(t % PROJ_COUNT);
    initialise(jobs[l], p, covs[l][p == PROJ_DOWN], o, fits[l]);
  });
  thread_pool::global().run(n, threads, [&](int64_t l) { warm_up(jobs[l], covs[l], o, fits[l]); });
  return fits;
}

}  // namespace sharp
}  // namespace lb
