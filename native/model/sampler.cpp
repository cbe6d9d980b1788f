// Token sampler (see sampler.h).
#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace lb {

namespace {

// The first index of the largest of v[0, n) (NaNs never win), in two cheap passes: the maximum
// through 16 partials (a loop that vectorizes, where std::max_element's does not), then a scan
// for its first occurrence.
int32_t argmax(const float *v, int n) {
  constexpr int K = 16;
  float part[K];
  for (int k = 0; k < K; k++) part[k] = -INFINITY;
  int i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; k++) part[k] = v[i + k] > part[k] ? v[i + k] : part[k];
  float best = -INFINITY;
  for (int k = 0; k < K; k++) best = part[k] > best ? part[k] : best;
  for (; i < n; i++) best = v[i] > best ? v[i] : best;
  for (i = 0; i < n; i++)
    if (v[i] == best) return i;
  return 0;  // every value NaN
}

}  // namespace

int32_t sampler::sample(float *logits, int vocab, const int32_t *history, int n_history) {
  const sampler_params &p = params;
  if (p.repeat_penalty != 1.0f && p.repeat_last_n > 0) {
    std::unordered_set<int32_t> seen;
    for (int i = std::max(0, n_history - p.repeat_last_n); i < n_history; i++) {
      const int32_t t = history[i];
      if (t < 0 || t >= vocab || !seen.insert(t).second) continue;
      logits[t] = logits[t] > 0 ? logits[t] / p.repeat_penalty : logits[t] * p.repeat_penalty;
    }
  }
  if (p.temperature <= 0) return argmax(logits, vocab);

  // Candidates by descending logit: the top k (or all), as few as the filters below need.
  const int k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
  candidates.resize(vocab);
  std::iota(candidates.begin(), candidates.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(), by_logit);
  candidates.resize(k);

  // Softmax at the temperature over the candidates (the largest logit first).
  probs.resize(k);
  const float top = logits[candidates[0]];
  double sum = 0;
  for (int i = 0; i < k; i++) sum += (probs[i] = std::exp((logits[candidates[i]] - top) / p.temperature));
  for (float &q : probs) q = (float)(q / sum);

  // min-p: drop tokens far less likely than the best; top-p: the smallest prefix reaching p.
  int keep = k;
  if (p.min_p > 0) {
    while (keep > 1 && probs[keep - 1] < p.min_p * probs[0]) keep--;
  }
  if (p.top_p < 1) {
    double cum = 0;
    for (int i = 0; i < keep; i++) {
      cum += probs[i];
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (int i = 0; i < keep; i++) total += probs[i];
  // 53 random bits to a double in [0, total): the same on every standard library.
  const double r = (double)(rng() >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (int i = 0; i < keep; i++) {
    cum += probs[i];
    if (r < cum) return candidates[i];
  }
  return candidates[keep - 1];
}

}  // namespace lb
