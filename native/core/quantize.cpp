// ParetoQ quantizers (see quantize.h). Every method works on one group of a row at a time and
// writes codes c and a scale d with w ~= d * (c + o).
#include "quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

namespace lb {

bool quant_method_from_name(const char *name, quant_method *out) {
  static const char *const names[] = {"exact", "rtn", "mse"};
  for (int i = 0; i < 3; i++) {
    if (std::strcmp(names[i], name) == 0) {
      *out = (quant_method)i;
      return true;
    }
  }
  return false;
}

namespace {

// The level of code c, c + o, is exact in float for every format.
inline float level(const format_traits &t, int c) { return (float)c + t.offset; }

// Nearest code for w at scale d (round half to even, as torch.round), clamped to the grid.
inline int nearest_code(const format_traits &t, float w, float d) {
  if (d == 0.0f) return 0;
  float c = std::nearbyint(w / d - t.offset);
  return (int)std::min(std::max(c, 0.0f), (float)(t.n_codes - 1));
}

// ---------------------------------------------------------------------------------------------
// exact

std::string levels_text(const format_traits &t) {
  std::string s;
  for (int c = 0; c < t.n_codes; c++) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%g", c ? "," : "", level(t, c));
    s += buf;
  }
  return s;
}

struct grid_value {
  float value;
  int code;
};

// Is every distinct value v exactly round_src(d * (c + o)) for some code c? Fills the codes and
// returns how many values d * (c + o) gives exactly in float32 (without the source rounding),
// or -1 when d does not fit.
int fits_grid(const format_traits &t, float d, source_dtype src, std::vector<grid_value> &vals) {
  int exact = 0;
  for (grid_value &gv : vals) {
    const int guess = nearest_code(t, gv.value, d);
    bool found = false;
    // The nearest code is the answer unless source rounding moved a value across a midpoint.
    for (int c = std::max(guess - 1, 0); c <= std::min(guess + 1, t.n_codes - 1) && !found; c++) {
      const float w = d * level(t, c);
      if (round_to_source(w, src) == gv.value) {
        gv.code = c;
        found = true;
        exact += w == gv.value;
      }
    }
    if (!found) return -1;
  }
  return exact;
}

// Finds a scale d that reproduces every value of the group in its source precision; false if
// none does. Of those, the one that also gives the most values exactly in float32 wins (a bf16
// checkpoint's levels are not always exact multiples of one scale), then the largest.
bool exact_group(const format_traits &t, const float *w, int64_t n, source_dtype src, float *d_out,
                 uint8_t *codes, std::string *why) {
  std::vector<grid_value> vals;
  for (int64_t j = 0; j < n; j++) {
    bool seen = false;
    for (const grid_value &gv : vals) seen = seen || gv.value == w[j];
    if (seen) continue;
    if ((int)vals.size() == t.n_codes) {
      *why = "has more than " + std::to_string(t.n_codes) + " distinct values";
      return false;
    }
    vals.push_back({w[j], 0});
  }
  // Candidates: each nonzero value divided by each level of the same sign, and the float
  // neighbours of that quotient (the source may have rounded d * level).
  std::vector<float> candidates;
  for (const grid_value &gv : vals) {
    if (gv.value == 0.0f) continue;
    for (int c = 0; c < t.n_codes; c++) {
      const float l = level(t, c);
      if (l == 0.0f || (l > 0) != (gv.value > 0)) continue;
      float d = (float)((double)gv.value / l);
      candidates.push_back(d);
      candidates.push_back(std::nextafter(d, 0.0f));
      candidates.push_back(std::nextafter(d, INFINITY));
    }
  }
  candidates.push_back(0.0f);  // an all-zero group
  std::sort(candidates.begin(), candidates.end(), [](float a, float b) { return a > b; });
  int best_exact = -1;
  float best = 0;
  for (float d : candidates) {
    const int exact = fits_grid(t, d, src, vals);
    if (exact > best_exact) best_exact = exact, best = d;
    if (best_exact == (int)vals.size()) break;
  }
  if (best_exact < 0) {
    *why = "has no scale d that puts its values on the levels d*{" + levels_text(t) + "}";
    return false;
  }
  fits_grid(t, best, src, vals);
  for (int64_t j = 0; j < n; j++) {
    for (const grid_value &gv : vals) {
      if (gv.value == w[j]) {
        codes[j] = (uint8_t)gv.code;
        break;
      }
    }
  }
  *d_out = best;
  return true;
}

// ---------------------------------------------------------------------------------------------
// rtn and mse

float rtn_scale(const format_traits &t, const float *w, int64_t n) {
  double acc = 0;
  for (int64_t j = 0; j < n; j++)
    acc = t.rtn_from_mean ? acc + std::fabs(w[j]) : std::max(acc, (double)std::fabs(w[j]));
  if (t.rtn_from_mean) acc /= (double)n;
  return (float)(acc * t.rtn_factor);
}

double assign_codes(const format_traits &t, const float *w, int64_t n, float d, uint8_t *codes) {
  double err = 0;
  for (int64_t j = 0; j < n; j++) {
    const int c = nearest_code(t, w[j], d);
    codes[j] = (uint8_t)c;
    const double e = (double)w[j] - (double)d * level(t, c);
    err += e * e;
  }
  return err;
}

// Least-squares scale for fixed codes: d = sum(w*l) / sum(l*l).
float refit_scale(const format_traits &t, const float *w, int64_t n, const uint8_t *codes) {
  double wl = 0, ll = 0;
  for (int64_t j = 0; j < n; j++) {
    const double l = level(t, codes[j]);
    wl += w[j] * l;
    ll += l * l;
  }
  return ll > 0 && wl > 0 ? (float)(wl / ll) : 0.0f;
}

// Grid search over d = rtn_d * s, then Lloyd steps (refit d, reassign codes) while the error
// falls. The rtn scale is a candidate, so mse is never worse than rtn.
float mse_group(const format_traits &t, const float *w, int64_t n, uint8_t *codes) {
  const float d_rtn = rtn_scale(t, w, n);
  if (d_rtn == 0.0f) {
    assign_codes(t, w, n, 0.0f, codes);
    return 0.0f;
  }
  std::vector<uint8_t> trial(n);
  float best_d = d_rtn;
  double best_err = assign_codes(t, w, n, d_rtn, codes);
  auto try_scale = [&](float d) {
    double err = assign_codes(t, w, n, d, trial.data());
    if (err < best_err) {
      best_err = err;
      best_d = d;
      std::memcpy(codes, trial.data(), n);
    }
  };
  const int kCoarse = 24;  // s in [0.15, 1.30]
  for (int i = 0; i <= kCoarse; i++) try_scale(d_rtn * (0.15f + 1.15f * i / kCoarse));
  const float step = d_rtn * 1.15f / kCoarse;
  const float centre = best_d;
  for (int i = -8; i <= 8; i++) try_scale(centre + step * i / 8.0f);
  for (int iter = 0; iter < 8; iter++) {
    const float d = refit_scale(t, w, n, codes);
    const double before = best_err;
    try_scale(d);
    if (!(best_err < before)) break;
  }
  return best_d;
}

}  // namespace

std::string quantize_rows(qtensor &t, const float *w, int64_t r0, int64_t r1, quant_method m,
                          source_dtype src) {
  const format_traits &tr = traits(t.fmt);
  const int64_t cols = t.cols;
  const int64_t g = t.group ? t.group : cols;
  std::vector<uint8_t> codes(cols);
  for (int64_t r = r0; r < r1; r++) {
    const float *row = w + r * cols;
    for (int64_t j = 0; j < cols; j++) {
      if (!std::isfinite(row[j]))
        return "row " + std::to_string(r) + ", column " + std::to_string(j) + " is not finite";
    }
    float *d = t.row_scales(r);
    for (int64_t k = 0, j0 = 0; j0 < cols; k++, j0 += g) {
      const int64_t n = std::min(g, cols - j0);
      std::string why;
      switch (m) {
        case METHOD_EXACT:
          if (!exact_group(tr, row + j0, n, src, &d[k], codes.data() + j0, &why)) {
            std::string where = "row " + std::to_string(r);
            if (t.group) where += " (group " + std::to_string(k) + ")";
            return where + " is not on the " + tr.name + " grid: it " + why;
          }
          break;
        case METHOD_RTN:
          d[k] = rtn_scale(tr, row + j0, n);
          assign_codes(tr, row + j0, n, d[k], codes.data() + j0);
          break;
        case METHOD_MSE:
          d[k] = mse_group(tr, row + j0, n, codes.data() + j0);
          break;
      }
    }
    pack_row(t.fmt, codes.data(), cols, t.row(r));
  }
  return "";
}

}  // namespace lb
