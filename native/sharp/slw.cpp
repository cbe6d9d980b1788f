// Single Layer Warmup (see slw.h). Shapes: xs (n, dim); gate and up outputs (n, hidden); h, the
// SwiGLU product, (n, hidden); the output (n, dim). A projection computes y = x W^T + (x A^T) B^T.
#include "slw.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace lb {
namespace sharp {

namespace {

void add_into(dmat &y, const dmat &x) {
  for (size_t i = 0; i < y.v.size(); i++) y.v[i] += x.v[i];
}

// One projection's output and, with factors, x A^T (kept for the backward pass).
struct projected {
  dmat y;   // (n, out)
  dmat ax;  // (n, rank)
};

projected project(const dmat &w, const low_rank_factors &f, const dmat &x) {
  projected p{matmul(x, false, w, true), dmat()};
  if (!f.empty()) {
    p.ax = matmul(x, false, f.a, true);
    add_into(p.y, matmul(p.ax, false, f.b, true));
  }
  return p;
}

// Backward of one projection given dy = dL/dy (n, out): dB = dy^T (x A^T), dA = (dy B)^T x, and
// optionally dx = dy W' = dy W + (dy B) A.
void project_backward(const dmat &w, const low_rank_factors &f, const dmat &x, const projected &p, const dmat &dy,
                      low_rank_factors *grad, dmat *dx) {
  dmat dyb;
  if (!f.empty()) {
    dyb = matmul(dy, false, f.b, false);
    grad->b = matmul(dy, true, p.ax, false);
    grad->a = matmul(dyb, true, x, false);
  }
  if (dx) {
    *dx = matmul(dy, false, w, false);
    if (!f.empty()) add_into(*dx, matmul(dyb, false, f.a, false));
  }
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct forward_pass {
  projected gate, up, down;
  dmat h;  // silu(gate) * up
};

forward_pass run_forward(const slw_mlp &m, const dmat &xs) {
  forward_pass f;
  f.gate = project(m.base[PROJ_GATE], m.recovery[PROJ_GATE], xs);
  f.up = project(m.base[PROJ_UP], m.recovery[PROJ_UP], xs);
  f.h = f.up.y;
  for (size_t i = 0; i < f.h.v.size(); i++) {
    const double g = f.gate.y.v[i];
    f.h.v[i] *= g * sigmoid(g);
  }
  f.down = project(m.base[PROJ_DOWN], m.recovery[PROJ_DOWN], f.h);
  return f;
}

}  // namespace

dmat mlp_output(const slw_mlp &m, const dmat &xs) { return run_forward(m, xs).down.y; }

double slw_loss(const slw_mlp &m, const dmat &xs, const dmat &want, low_rank_factors (*grads)[PROJ_COUNT]) {
  const forward_pass f = run_forward(m, xs);
  const double n = (double)xs.rows;
  dmat d_out = sub(f.down.y, want);
  const double loss = frobenius2(d_out) / n;
  if (!grads) return loss;
  for (double &x : d_out.v) x *= 2.0 / n;
  dmat d_h;
  project_backward(m.base[PROJ_DOWN], m.recovery[PROJ_DOWN], f.h, f.down, d_out, &(*grads)[PROJ_DOWN], &d_h);
  // h = silu(g) u: dL/du = dh silu(g); dL/dg = dh u silu'(g), silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
  dmat d_gate = d_h, d_up = d_h;
  for (size_t i = 0; i < d_h.v.size(); i++) {
    const double g = f.gate.y.v[i], s = sigmoid(g);
    d_up.v[i] *= g * s;
    d_gate.v[i] *= f.up.y.v[i] * s * (1.0 + g * (1.0 - s));
  }
  project_backward(m.base[PROJ_GATE], m.recovery[PROJ_GATE], xs, f.gate, d_gate, &(*grads)[PROJ_GATE], nullptr);
  project_backward(m.base[PROJ_UP], m.recovery[PROJ_UP], xs, f.up, d_up, &(*grads)[PROJ_UP], nullptr);
  return loss;
}

namespace {

// Adam's moments of one parameter matrix.
struct adam_moments {
  std::vector<double> m, v;
  explicit adam_moments(size_t n) : m(n, 0.0), v(n, 0.0) {}
};

void adam_step(dmat &param, const dmat &grad, adam_moments &s, double lr, int t) {
  constexpr double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  const double c1 = 1.0 - std::pow(beta1, t), c2 = 1.0 - std::pow(beta2, t);
  for (size_t i = 0; i < param.v.size(); i++) {
    const double g = grad.v[i];
    s.m[i] = beta1 * s.m[i] + (1 - beta1) * g;
    s.v[i] = beta2 * s.v[i] + (1 - beta2) * g * g;
    param.v[i] -= lr * (s.m[i] / c1) / (std::sqrt(s.v[i] / c2) + eps);
  }
}

dmat gather_rows(const dmat &m, const std::vector<int64_t> &order, int64_t from, int64_t count) {
  dmat out(count, m.cols);
  for (int64_t i = 0; i < count; i++) std::copy(m.row(order[from + i]), m.row(order[from + i]) + m.cols, out.row(i));
  return out;
}

}  // namespace

double slw_refine(slw_mlp &m, const dmat &xs, const dmat &want, const slw_options &o) {
  const int64_t n = xs.rows, batch = std::min<int64_t>(std::max<int64_t>(o.batch, 1), n);
  double best_loss = slw_loss(m, xs, want, nullptr);
  if (o.steps <= 0 || n == 0) return best_loss;
  low_rank_factors best[PROJ_COUNT];
  for (int p = 0; p < PROJ_COUNT; p++) best[p] = m.recovery[p];
  std::vector<adam_moments> moments_a, moments_b;
  for (int p = 0; p < PROJ_COUNT; p++) {
    moments_a.emplace_back(m.recovery[p].a.v.size());
    moments_b.emplace_back(m.recovery[p].b.v.size());
  }
  std::mt19937_64 gen(o.seed);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  int64_t cursor = n;  // reshuffle before the first batch
  for (int step = 0; step < o.steps; step++) {
    if (cursor + batch > n) {
      std::shuffle(order.begin(), order.end(), gen);
      cursor = 0;
    }
    const dmat xb = gather_rows(xs, order, cursor, batch), wb = gather_rows(want, order, cursor, batch);
    cursor += batch;
    low_rank_factors grads[PROJ_COUNT];
    slw_loss(m, xb, wb, &grads);
    const double lr = o.learning_rate * 0.5 * (1.0 + std::cos(M_PI * step / o.steps));
    for (int p = 0; p < PROJ_COUNT; p++) {
      if (m.recovery[p].empty()) continue;
      adam_step(m.recovery[p].a, grads[p].a, moments_a[p], lr, step + 1);
      adam_step(m.recovery[p].b, grads[p].b, moments_b[p], lr, step + 1);
    }
    if ((step + 1) % std::max(o.check_every, 1) != 0 && step + 1 != o.steps) continue;
    const double loss = slw_loss(m, xs, want, nullptr);
    if (loss < best_loss) {
      best_loss = loss;
      for (int p = 0; p < PROJ_COUNT; p++) best[p] = m.recovery[p];
    }
  }
  for (int p = 0; p < PROJ_COUNT; p++) m.recovery[p] = std::move(best[p]);
  return best_loss;
}

}  // namespace sharp
}  // namespace lb
