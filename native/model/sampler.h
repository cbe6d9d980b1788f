// Picks the next token from logits: repetition penalty, then greedy (temperature 0) or
// temperature, top-k, top-p and min-p filtering and a draw from a seeded generator, so the same
// seed gives the same text.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace lb {

struct sampler_params {
  float temperature = 0.8f;  // 0 = greedy
  int top_k = 40;            // 0 = all tokens
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.05f;       // 0 = off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.1f;  // 1 = off (llama.cpp rule: divide positive logits, multiply negative)
  int repeat_last_n = 64;       // how many recent tokens the penalty looks at
};

struct sampler {
  sampler_params params;
  std::mt19937_64 rng;
  std::vector<int32_t> candidates;  // scratch
  std::vector<float> probs;         // scratch

  sampler(const sampler_params &p, uint64_t seed) : params(p), rng(seed) {}
  // logits (vocab) may be modified; history is the sequence so far (for the penalty).
  int32_t sample(float *logits, int vocab, const int32_t *history, int n_history);
};

}  // namespace lb
