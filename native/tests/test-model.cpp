// Model-level weight layout: model_pack_weights copies every layer tensor into one arena without
// changing a byte, keeps storage shared between layers shared, and keeps views on their rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "../core/qtensor.h"
#include "../model/model.h"
#include "../model/sampler.h"
#include "harness.h"

using namespace lb;

namespace {

qtensor random_tensor(lbtest::rng &r, format f, int64_t rows, int64_t cols) {
  qtensor t = qtensor_alloc(f, rows, cols, 0);
  for (size_t i = 0; i < t.data->size(); i++) t.data->data()[i] = (uint8_t)r.below(256);
  if (t.scales)
    for (int64_t row = 0; row < rows; row++) t.row_scales(row)[0] = r.uniform(0.1f, 2.0f);
  return t;
}

// The bytes a tensor's rows and scales hold, read through the tensor (so views read their rows).
std::vector<uint8_t> contents(const qtensor &t) {
  std::vector<uint8_t> out((size_t)t.rows * t.row_stride());
  for (int64_t row = 0; row < t.rows; row++) std::memcpy(&out[row * t.row_stride()], t.row(row), t.row_stride());
  if (t.scales) {
    const uint8_t *s = reinterpret_cast<const uint8_t *>(t.row_scales(0));
    out.insert(out.end(), s, s + t.rows * t.n_groups() * sizeof(float));
  }
  return out;
}

}  // namespace

TEST(model_pack_weights_copies_into_one_arena) {
  lbtest::rng r(5);
  model m;
  const int64_t dim = 128, hidden = 192;
  const qtensor big = random_tensor(r, FORMAT_B2, 2 * dim, dim);
  for (int l = 0; l < 3; l++) {
    layer_weights w;
    w.wq.w = random_tensor(r, FORMAT_B4, dim, dim);
    w.wk.w = random_tensor(r, FORMAT_B3, 64, dim);
    w.wv.w = random_tensor(r, FORMAT_T158, 64, dim);
    w.wo.w = qtensor_view(big, l % 2 ? dim : 0, dim);  // views on one buffer, at different rows
    w.gate.w = random_tensor(r, FORMAT_B1, hidden, dim);
    w.up.w = random_tensor(r, FORMAT_B2, hidden, dim);
    w.down.w = random_tensor(r, FORMAT_F16, dim, hidden);
    m.weights.layers.push_back(w);
  }
  // SHARP: layer 2 reuses layer 1's MLP weights, with a recovery on its up projection.
  m.weights.layers[2].gate = m.weights.layers[1].gate;
  m.weights.layers[2].up.w = m.weights.layers[1].up.w;
  m.weights.layers[2].up.recovery = {random_tensor(r, FORMAT_F32, 4, dim), random_tensor(r, FORMAT_F32, hidden, 4)};

  std::vector<std::vector<uint8_t>> before;
  std::vector<const aligned_buffer *> buffers_before;
  auto each_tensor = [&](auto fn) {
    for (layer_weights &w : m.weights.layers)
      layer_weights::each_linear(w, [&](linear &l) {
        for (qtensor *t : {&l.w, &l.recovery.a, &l.recovery.b})
          if (t->data) fn(*t);
      });
  };
  each_tensor([&](qtensor &t) {
    before.push_back(contents(t));
    buffers_before.push_back(t.data.get());
  });
  model_pack_weights(m);

  size_t i = 0;
  std::map<const aligned_buffer *, const aligned_buffer *> moved;  // old buffer -> new
  bool shared_kept = true, padded = true, contents_kept = true;
  each_tensor([&](qtensor &t) {
    contents_kept &= contents(t) == before[i];
    shared_kept &= moved.emplace(buffers_before[i], t.data.get()).first->second == t.data.get();
    for (size_t p = 0; p < aligned_buffer::kPadding; p++) padded &= t.data->data()[t.data->size() + p] == 0;
    i++;
  });
  CHECK(contents_kept);
  CHECK(shared_kept);
  CHECK(padded);
  // distinct code buffers: 3 x 7 tensors, 2 recovery factors, less 2 views on one buffer and 2 shared
  CHECK(moved.size() == 19);
  // Every buffer now lies in one span, first-use order: each starts where the previous one's
  // footprint ends.
  std::vector<const aligned_buffer *> order;
  each_tensor([&](qtensor &t) {
    for (const aligned_buffer *b : {t.data.get(), t.scales.get()})
      if (b && std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
  });
  for (size_t k = 1; k < order.size(); k++)
    CHECK(order[k]->data() == order[k - 1]->data() + aligned_buffer::footprint(order[k - 1]->size()));
  CHECK(m.weights.layers[2].gate.w.data == m.weights.layers[1].gate.w.data);
  CHECK(m.weights.layers[0].wo.w.data == m.weights.layers[1].wo.w.data);
  CHECK(m.weights.layers[1].wo.w.row0 == dim);
}

// Greedy sampling picks the first index of the largest logit (std::max_element's rule), wherever
// it lies against the sampler's 16-wide passes; NaNs never win.
TEST(greedy_sampling_takes_the_first_largest_logit) {
  sampler_params p;
  p.temperature = 0;
  p.repeat_penalty = 1;
  sampler s(p, 1);
  lbtest::rng r(3);
  for (int vocab : {1, 5, 16, 17, 100, 32000}) {
    std::vector<float> logits(vocab);
    for (float &v : logits) v = r.normal() - 5.0f;  // all negative: a zero start would win
    const int at = (int)r.below(vocab);
    logits[at] = 10.0f;
    if (at + 3 < vocab) logits[at + 3] = 10.0f;  // a later tie loses
    if (at > 0) logits[at - 1] = std::nanf("");
    const int32_t want = (int32_t)(std::max_element(logits.begin(), logits.end(), [](float a, float b) {
                                     return std::isnan(b) ? false : std::isnan(a) || a < b;
                                   }) - logits.begin());
    CHECK(want == at);
    CHECK_MSG(s.sample(logits.data(), vocab, nullptr, 0) == at, "vocab " + std::to_string(vocab));
  }
}

namespace {

qtensor random_floats(lbtest::rng &r, int64_t rows, int64_t cols, float scale) {
  qtensor t = qtensor_alloc(FORMAT_F32, rows, cols, 0);
  float *v = reinterpret_cast<float *>(t.data->data());
  for (int64_t i = 0; i < rows * cols; i++) v[i] = scale * r.normal();
  return t;
}

// A small float model with grouped-query attention (6 query heads on 2 kv heads).
model small_gqa_model(lbtest::rng &r) {
  model m;
  model_config &c = m.config;
  c.dim = 48, c.hidden_dim = 80, c.n_layers = 2, c.n_heads = 6, c.n_kv_heads = 2, c.head_dim = 8;
  c.vocab_size = 40, c.max_seq_len = 128;
  m.activations = ACT_F32;
  m.weights.embedding = random_floats(r, c.vocab_size, c.dim, 1.0f);
  m.weights.output = random_floats(r, c.vocab_size, c.dim, 0.3f);
  m.weights.final_norm.assign(c.dim, 1.0f);
  for (int l = 0; l < c.n_layers; l++) {
    layer_weights w;
    w.attn_norm.assign(c.dim, 1.0f);
    w.ffn_norm.assign(c.dim, 1.0f);
    w.wq.w = random_floats(r, c.n_heads * c.head_dim, c.dim, 0.4f);
    w.wk.w = random_floats(r, c.n_kv_heads * c.head_dim, c.dim, 0.4f);
    w.wv.w = random_floats(r, c.n_kv_heads * c.head_dim, c.dim, 0.3f);
    w.wo.w = random_floats(r, c.dim, c.n_heads * c.head_dim, 0.2f);
    w.gate.w = random_floats(r, c.hidden_dim, c.dim, 0.2f);
    w.up.w = random_floats(r, c.hidden_dim, c.dim, 0.2f);
    w.down.w = random_floats(r, c.dim, c.hidden_dim, 0.2f);
    m.weights.layers.push_back(std::move(w));
  }
  return m;
}

}  // namespace

// Decode steps (one token at a time: each thread takes a run of the cache's positions and the runs'
// softmaxes merge) give the logits of one prefill over the whole sequence (a task per kv head and
// block of tokens), for 1 to 3 threads (runs of uneven lengths), with f32 and f16 caches, over
// positions spanning three cache tiles.
TEST(decode_attention_in_runs_matches_prefill) {
  lbtest::rng r(9);
  const model m = small_gqa_model(r);
  CHECK(model_validate(m).empty());
  const int n = 80, vocab = m.config.vocab_size;
  std::vector<int32_t> tokens(n);
  for (auto &t : tokens) t = (int32_t)r.below(vocab);
  for (kv_type kv : {KV_F32, KV_F16}) {
    context whole;
    context_init(whole, m, n, kv, 1);
    std::vector<float> want((size_t)n * vocab);
    forward(whole, tokens.data(), n, want.data(), true);
    for (int threads : {1, 2, 3}) {
      context c;
      context_init(c, m, n, kv, threads);
      std::vector<float> got(vocab);
      double worst = 0;
      for (int p = 0; p < n; p++) {
        forward(c, &tokens[p], 1, got.data(), false);
        double size = 0, diff = 0;
        for (int i = 0; i < vocab; i++) {
          size = std::max(size, (double)std::fabs(want[(size_t)p * vocab + i]));
          diff = std::max(diff, (double)std::fabs(got[i] - want[(size_t)p * vocab + i]));
        }
        worst = std::max(worst, diff / size);
      }
      CHECK_MSG(worst <= 1e-5, std::string(kv == KV_F16 ? "f16" : "f32") + " cache, " + std::to_string(threads) +
                                   " threads: decode logits off by " + std::to_string(worst) + " of their size");
    }
  }
}
