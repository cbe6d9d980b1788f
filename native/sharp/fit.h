// Fitting SHARP's recovery for the target layers of a model: each shared projection gets low-rank
// factors from an initialisation (none, svd, cov), then each layer may be refined by Single Layer
// Warmup. Runs on the global thread pool: a task per (layer, projection) for the initialisation, a
// task per layer for the refinement (layers are independent).
#pragma once

#include <cstdint>
#include <vector>

#include "slw.h"

namespace lb {
namespace sharp {

enum recovery_init : int32_t {
  INIT_NONE = 0,  // A B = 0 (direct sharing); with refinement, LoRA's start: A random, B = 0
  INIT_SVD = 1,   // truncated SVD of W_target - W_base
  INIT_COV = 2,   // covariance-weighted SVD on the calibration inputs
};

bool recovery_init_from_name(const char *name, recovery_init *out);

// One target layer.
struct layer_job {
  int layer = 0;                      // its index (seeds its random numbers)
  dmat target[PROJ_COUNT];            // the layer's original weights
  dmat base[PROJ_COUNT];              // what the runtime multiplies instead: the reference's
                                      // (dequantized) weight for a shared projection, else its own
  int64_t rank[PROJ_COUNT] = {0, 0, 0};  // 0: no recovery for that projection
  dmat ffn_in;                        // (tokens, dim): gate/up inputs under the original model
  dmat swiglu;                        // (tokens, hidden): down inputs under the original model
  bool has_calibration() const { return ffn_in.rows > 0; }
};

struct fit_options {
  recovery_init init = INIT_SVD;
  slw_options refine;     // refine.steps 0: no refinement
  double damping = 1e-4;  // cov: lambda = damping x mean diagonal of E[x x^T]
  uint64_t seed = 0;
};

// Quality of one projection's recovery (NaN where not measurable).
struct projection_report {
  double weight_error = 0;  // ||D - B A||_F^2 / ||D||_F^2, D = W_target - W_base
  double output_error = 0;  // E||(D - B A) x||^2 / E||D x||^2 on the calibration inputs
};

struct layer_fit {
  low_rank_factors recovery[PROJ_COUNT];
  projection_report report[PROJ_COUNT];
  // SLW loss relative to E||original output||^2: with no recovery (direct sharing), after the
  // initialisation, after refinement. NaN without calibration data.
  double loss_shared = 0, loss_init = 0, loss_refined = 0;
};

// Throws std::invalid_argument when a job's shapes do not fit together, or when cov or refinement
// is asked for without calibration data.
std::vector<layer_fit> fit_layers(const std::vector<layer_job> &jobs, const fit_options &o, int threads);

}  // namespace sharp
}  // namespace lb
