// Single Layer Warmup (SLW), SHARP's first recovery stage: one target layer's low-rank factors are
// trained so that its SwiGLU MLP, computed with the shared weights, reproduces the original
// layer's MLP output on calibration inputs (L2 loss, nonlinearity included). Layers are
// independent. Gradients are written out by hand (the MLP is three products and a SwiGLU).
#pragma once

#include <cstdint>

#include "recovery.h"

namespace lb {
namespace sharp {

enum mlp_proj : int { PROJ_GATE = 0, PROJ_UP = 1, PROJ_DOWN = 2, PROJ_COUNT = 3 };

// The MLP as SLW sees it: per projection a fixed base weight and trainable factors (empty: none),
// so W' = base + B A.
struct slw_mlp {
  dmat base[PROJ_COUNT];                  // (hidden, dim), (hidden, dim), (dim, hidden)
  low_rank_factors recovery[PROJ_COUNT];
};

// W'_down (silu(W'_gate x) * W'_up x) for every row x of xs (tokens x dim).
dmat mlp_output(const slw_mlp &m, const dmat &xs);

// Mean over the rows of ||mlp_output(x) - want||^2. With grads, also the loss's gradient with
// respect to A and B of every projection that has factors.
double slw_loss(const slw_mlp &m, const dmat &xs, const dmat &want, low_rank_factors (*grads)[PROJ_COUNT]);

struct slw_options {
  int steps = 0;
  double learning_rate = 1e-3;  // Adam's, decayed to 0 on a cosine over the steps
  int64_t batch = 256;          // calibration rows per step (fewer when there are fewer)
  uint64_t seed = 0;            // order of the rows
  int check_every = 25;         // steps between measurements of the loss on all of (xs, want)
};

// Adam steps on the factors of m, on minibatches of (xs, want). Minibatch steps can overshoot, so
// the loss on all rows is measured at the start, every check_every steps and at the end, and m
// keeps the factors that measured lowest. Returns that loss.
double slw_refine(slw_mlp &m, const dmat &xs, const dmat &want, const slw_options &o);

}  // namespace sharp
}  // namespace lb
