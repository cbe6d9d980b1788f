// Llama forward pass (see model.h).
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <map>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <set>
#include <stdexcept>

#include "../core/fastmath.h"
#include "../core/pool.h"
#include "../kernels/low-rank.h"

namespace lb {

// ---------------------------------------------------------------------------------------------
// Validation

namespace {

std::string check_tensor(const qtensor &t, int64_t rows, int64_t cols, const std::string &name) {
  if (!t.data) return name + " is missing";
  if (t.rows != rows || t.cols != cols)
    return name + " has shape [" + std::to_string(t.rows) + ", " + std::to_string(t.cols) + "], expected [" +
           std::to_string(rows) + ", " + std::to_string(cols) + "]";
  return "";
}

std::string check_linear(const linear &l, int64_t rows, int64_t cols, const std::string &name) {
  std::string e = check_tensor(l.w, rows, cols, name);
  if (!e.empty() || l.recovery.empty()) return e;
  const int64_t rank = l.recovery.a.rows;
  if (traits(l.recovery.a.fmt).quantized || traits(l.recovery.b.fmt).quantized)
    return name + " recovery matrices must be f32 or f16";
  e = check_tensor(l.recovery.a, rank, cols, name + ".lora_a");
  return e.empty() ? check_tensor(l.recovery.b, rows, rank, name + ".lora_b") : e;
}

std::string check_vector(const std::vector<float> &v, size_t n, const std::string &name) {
  if (v.size() != n) return name + " has " + std::to_string(v.size()) + " values, expected " + std::to_string(n);
  for (float x : v)
    if (!std::isfinite(x)) return name + " holds a value that is not finite";
  return "";
}

}  // namespace

std::string model_validate(const model &m) {
  const model_config &c = m.config;
  if (c.dim < 1 || c.hidden_dim < 1 || c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 || c.head_dim < 1 ||
      c.vocab_size < 1 || c.max_seq_len < 1)
    return "config: every size must be at least 1";
  if (c.n_heads % c.n_kv_heads != 0) return "config: n_heads must be a multiple of n_kv_heads";
  if (c.head_dim % 2 != 0) return "config: head_dim must be even (RoPE rotates pairs)";
  if (!c.rope_freq_factors.empty()) {
    if ((int)c.rope_freq_factors.size() != c.head_dim / 2) return "config: rope frequency factors need head_dim / 2 values";
    for (float f : c.rope_freq_factors)
      if (!(f > 0) || !std::isfinite(f)) return "config: rope frequency factors must be positive and finite";
  }
  if (!(c.norm_eps > 0) || !(c.rope_theta > 0)) return "config: norm_eps and rope_theta must be positive";
  if ((int)m.weights.layers.size() != c.n_layers) return "config: layer count does not match the weights";
  const int64_t q_dim = (int64_t)c.n_heads * c.head_dim, kv_dim = (int64_t)c.n_kv_heads * c.head_dim;
  std::string e = check_tensor(m.weights.embedding, c.vocab_size, c.dim, "token embedding");
  if (e.empty()) e = check_tensor(m.weights.output, c.vocab_size, c.dim, "output");
  if (e.empty()) e = check_vector(m.weights.final_norm, c.dim, "final norm");
  for (int l = 0; l < c.n_layers && e.empty(); l++) {
    const layer_weights &w = m.weights.layers[l];
    const std::string p = "layer " + std::to_string(l) + " ";
    e = check_vector(w.attn_norm, c.dim, p + "attention norm");
    if (e.empty()) e = check_vector(w.ffn_norm, c.dim, p + "ffn norm");
    if (e.empty()) e = check_linear(w.wq, q_dim, c.dim, p + "q_proj");
    if (e.empty()) e = check_linear(w.wk, kv_dim, c.dim, p + "k_proj");
    if (e.empty()) e = check_linear(w.wv, kv_dim, c.dim, p + "v_proj");
    if (e.empty()) e = check_linear(w.wo, c.dim, q_dim, p + "o_proj");
    if (e.empty()) e = check_linear(w.gate, c.hidden_dim, c.dim, p + "gate_proj");
    if (e.empty()) e = check_linear(w.up, c.hidden_dim, c.dim, p + "up_proj");
    if (e.empty()) e = check_linear(w.down, c.dim, c.hidden_dim, p + "down_proj");
  }
  return e;
}

void model_pack_weights(model &m) {
  // Every handle on each distinct small buffer, buffers in first-use order.
  std::vector<std::vector<std::shared_ptr<aligned_buffer> *>> handles;
  std::map<const aligned_buffer *, size_t> index;
  auto add = [&](std::shared_ptr<aligned_buffer> &buf) {
    if (!buf || buf->size() >= aligned_buffer::kHugePage) return;  // already on huge pages
    auto it = index.emplace(buf.get(), handles.size()).first;
    if (it->second == handles.size()) handles.emplace_back();
    handles[it->second].push_back(&buf);
  };
  for (layer_weights &w : m.weights.layers)
    layer_weights::each_linear(w, [&](linear &l) {
      for (qtensor *t : {&l.w, &l.recovery.a, &l.recovery.b}) add(t->data), add(t->scales);
    });
  if (handles.empty()) return;
  size_t total = 0;
  for (const auto &h : handles) total += aligned_buffer::footprint((*h[0])->size());
  auto arena = std::make_shared<aligned_buffer>(total);
  size_t offset = 0, freed = 0;
  for (const auto &h : handles) {
    const aligned_buffer &old = **h[0];
    auto slice = std::make_shared<aligned_buffer>(arena, offset, old.size());
    std::memcpy(slice->data(), old.data(), old.size());
    offset += aligned_buffer::footprint(old.size());
    freed += old.size();
    for (std::shared_ptr<aligned_buffer> *handle : h) *handle = slice;  // the old buffer is freed here
#if defined(__GLIBC__)
    // glibc keeps freed heap memory for reuse: hand it back as we go, or the model's old and new
    // copies would both be resident at the peak.
    if (freed >= (32u << 20)) {
      malloc_trim(0);
      freed = 0;
    }
#endif
  }
}

void model_interleave_weights(model &m, const kernel_table &k) {
  if (m.activations != ACT_Q8) return;
  std::set<const aligned_buffer *> done;  // SHARP layers share a reference layer's storage
  for (layer_weights &w : m.weights.layers)
    layer_weights::each_linear(w, [&](linear &l) {
      if (done.count(l.w.data.get())) l.w.interleaved = true;
      else if (k.gemv_interleaved[l.w.fmt] && qtensor_interleavable(l.w)) {
        qtensor_interleave(l.w);
        done.insert(l.w.data.get());
      }
    });
}

// ---------------------------------------------------------------------------------------------
// Context

void context_init(context &c, const model &m, int n_ctx, kv_type kv, int threads) {
  c.m = &m;
  c.n_ctx = n_ctx;
  c.kv = kv;
  c.threads = threads;
  c.pos = 0;
  c.tokens.clear();
  const size_t heads = (size_t)m.config.n_layers * m.config.n_kv_heads, elem = kv == KV_F16 ? 2 : 4;
  // Zeroed: kernels read whole key tiles, past the filled positions (with weight 0, so the values
  // there must be finite).
  auto zeroed = [&](int64_t positions) {
    auto cache = std::make_unique<aligned_buffer>(heads * positions * m.config.head_dim * elem);
    std::memset(cache->data(), 0, cache->size());
    return cache;
  };
  c.k_cache = zeroed(c.cache_positions());
  c.v_cache = zeroed(c.cache_positions());
}

void context_truncate(context &c, int keep) {
  keep = std::max(0, std::min(keep, c.pos));
  c.pos = keep;
  c.tokens.resize(keep);
}

// ---------------------------------------------------------------------------------------------
// Building blocks

namespace {

// A linear layer's product into y: W x, plus SHARP's low-rank recovery B (A x) when it has one.
low_rank_job job(const linear &l, float *y) {
  if (l.recovery.empty()) return {&l.w, y};
  return {&l.w, y, &l.recovery.a, &l.recovery.b};
}

// y_i (n x rows_i) = x (n x cols) W_i^T for linears that read the same x, in one dispatch of the
// pool (plus one for A x when some have recovery, whose B (A x) is fused into the products).
void apply(const context &c, std::initializer_list<low_rank_job> jobs, const float *x, int n,
           const row_epilogue *together = nullptr) {
  matmul_low_rank(jobs.begin(), (int)jobs.size(), x, n, c.m->activations, c.threads, active_kernels(), together);
}

void rmsnorm(const float *x, const float *weight, int dim, float eps, float *out) {
  // Sixteen partial sums, so the loop vectorizes (one double sum is a serial chain of adds).
  float part[16] = {};
  int i = 0;
  for (; i + 16 <= dim; i += 16)
    for (int k = 0; k < 16; k++) part[k] += x[i + k] * x[i + k];
  double ss = 0;
  for (; i < dim; i++) ss += (double)x[i] * x[i];
  for (float p : part) ss += p;
  const float scale = 1.0f / std::sqrt((float)(ss / dim) + eps);
  for (int i = 0; i < dim; i++) out[i] = weight[i] * (scale * x[i]);
}

// Inverse frequency of each rotated pair, with Llama-3 scaling when configured
// (Meta's apply_scaling: long wavelengths divided by factor, a smooth blend in between).
std::vector<float> rope_frequencies(const model_config &c) {
  std::vector<float> f(c.head_dim / 2);
  for (int i = 0; i < c.head_dim / 2; i++) {
    float freq = 1.0f / std::pow(c.rope_theta, (float)(2 * i) / (float)c.head_dim);
    if (c.rope_factor > 0) {
      const float low_wavelen = c.rope_original_max_pos / c.rope_low_freq_factor;
      const float high_wavelen = c.rope_original_max_pos / c.rope_high_freq_factor;
      const float wavelen = 2.0f * (float)M_PI / freq;
      if (wavelen > low_wavelen) {
        freq /= c.rope_factor;
      } else if (wavelen >= high_wavelen) {
        const float smooth = (c.rope_original_max_pos / wavelen - c.rope_low_freq_factor) /
                             (c.rope_high_freq_factor - c.rope_low_freq_factor);
        freq = (1 - smooth) * freq / c.rope_factor + smooth * freq;
      }
    }
    if (!c.rope_freq_factors.empty()) freq /= c.rope_freq_factors[i];
    f[i] = freq;
  }
  return f;
}

// cos and sin of every rotated pair's angle at positions pos0 .. pos0 + n - 1 (n x head_dim / 2
// each): computed once per forward call, not once per layer.
struct rotations {
  std::vector<float> cos, sin;
  rotations(const model_config &c, int pos0, int n) : cos((size_t)n * (c.head_dim / 2)), sin(cos.size()) {
    const std::vector<float> freqs = rope_frequencies(c);
    const int half = c.head_dim / 2;
    for (int t = 0; t < n; t++)
      for (int i = 0; i < half; i++) {
        const float angle = (float)(pos0 + t) * freqs[i];
        cos[(size_t)t * half + i] = std::cos(angle);
        sin[(size_t)t * half + i] = std::sin(angle);
      }
  }
};

// Rotates each head of v (n_heads x head_dim) by token t's angles.
void rope(float *v, int n_heads, const model_config &c, const rotations &rot, int t) {
  const int half = c.head_dim / 2;
  const float *cs = rot.cos.data() + (size_t)t * half, *sn = rot.sin.data() + (size_t)t * half;
  for (int h = 0; h < n_heads; h++) {
    float *head = v + (size_t)h * c.head_dim;
    for (int i = 0; i < half; i++) {
      const int a = c.rope == ROPE_INTERLEAVED ? 2 * i : i;
      const int b = c.rope == ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
      const float x0 = head[a], x1 = head[b];
      head[a] = x0 * cs[i] - x1 * sn[i];
      head[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

// fn(t) for tokens t in [0, n): on the pool for a prompt, inline for a decode step (waking threads
// costs more than one token's elementwise work). Without this, a prompt's norms, RoPE and residuals
// run on one thread while the others wait.
template <class Fn>
void per_token(const context &c, int n, Fn fn) {
  if (n < 8 || c.threads <= 1) {
    for (int t = 0; t < n; t++) fn(t);
    return;
  }
  thread_pool::global().run(n, c.threads, [&](int64_t t) { fn((int)t); });
}

// The caches' layout (model.h, context): a head's tiles lie tile_stride() elements apart, every
// kv head's tile of the same positions in between; head_at() is the element offset of kv head h's
// first tile in a layer, in either cache.
int64_t tile_stride(const context &c) { return (int64_t)c.m->config.n_kv_heads * c.m->config.head_dim * kKeyTile; }
size_t head_at(const context &c, int layer, int h) {
  return (size_t)layer * c.cache_positions() * c.m->config.n_kv_heads * c.m->config.head_dim +
         (size_t)h * c.m->config.head_dim * kKeyTile;
}

// Kv head h's keys and values of a layer at positions [p0, p0 + count), for the attention
// kernels (p0 a multiple of kKeyTile).
template <class T>
kv_columns<T> key_view(const context &c, int layer, int h, int p0, int count) {
  const T *keys = reinterpret_cast<const T *>(c.k_cache->data()) + head_at(c, layer, h);
  return {keys + p0 / kKeyTile * tile_stride(c), count, c.m->config.head_dim, tile_stride(c)};
}
template <class T>
kv_rows<T> value_view(const context &c, int layer, int h, int p0, int count) {
  const T *values = reinterpret_cast<const T *>(c.v_cache->data()) + head_at(c, layer, h);
  const int hd = c.m->config.head_dim;
  return {values + p0 / kKeyTile * tile_stride(c), hd, count, hd, tile_stride(c)};
}

// Writes one token's keys and values for kv heads [h0, h1) of a layer into the cache at position
// pos (keys and values hold head_dim values per head, from head h0 on): values as that position's
// row, keys into their transposed tile (key_index).
template <class T>
void kv_store_as(context &c, int layer, int pos, int h0, int h1, const T *keys, const T *values) {
  const int hd = c.m->config.head_dim;
  for (int h = h0; h < h1; h++) {
    T *k_head = reinterpret_cast<T *>(c.k_cache->data()) + head_at(c, layer, h);
    T *v_row = reinterpret_cast<T *>(c.v_cache->data()) + head_at(c, layer, h) + row_index(pos, hd, tile_stride(c));
    const size_t at = (size_t)(h - h0) * hd;
    for (int j = 0; j < hd; j++) k_head[key_index(pos, j, tile_stride(c))] = keys[at + j];
    std::copy_n(values + at, hd, v_row);
  }
}

void kv_store(context &c, int layer, int pos, int h0, int h1, const float *keys, const float *values) {
  if (c.kv == KV_F32) return kv_store_as(c, layer, pos, h0, h1, keys, values);
  // f16: all the heads converted at once with the ISA's conversion (a scalar call per value cost
  // 5% of a MobileLLM decode step)
  const size_t count = (size_t)(h1 - h0) * c.m->config.head_dim;
  static thread_local std::vector<uint16_t> half;
  half.resize(2 * count);
  const kernel_table &k = active_kernels();
  k.to_f16(keys, (int64_t)count, half.data());
  k.to_f16(values, (int64_t)count, half.data() + count);
  kv_store_as(c, layer, pos, h0, h1, half.data(), half.data() + count);
}

// Per-call scratch, sized for n tokens.
struct buffers {
  std::vector<float> x, xb, q, k, v, att_out, proj, gate, up;
  buffers(const model_config &c, int n) {
    const size_t q_dim = (size_t)c.n_heads * c.head_dim, kv_dim = (size_t)c.n_kv_heads * c.head_dim;
    x.resize((size_t)n * c.dim);
    xb.resize((size_t)n * std::max<size_t>(c.dim, q_dim));
    q.resize(n * q_dim);
    k.resize(n * kv_dim);
    v.resize(n * kv_dim);
    att_out.resize(n * q_dim);
    proj.resize((size_t)n * c.dim);
    gate.resize((size_t)n * c.hidden_dim);
    up.resize((size_t)n * c.hidden_dim);
  }
};

// A decode step's attention (one new token; its keys and values, b.k and b.v, stored here). Each
// thread takes one run of whole tiles of positions and reads it tile by tile for every kv head:
// the heads' tiles of the same positions lie together (model.h), so a run is one stream. Read
// head by head, a head's few KiB of keys and of values were short reads at DRAM latency (cold
// here: 12 KiB in 1.35 us, 144 KiB in 6 us); on MobileLLM-600M at about 140 positions this cut a
// 1-thread step's attention from 23.7 to 15.1 us per layer. Each run takes the softmax over its
// own positions, and the runs merge by their log-sum-exps. The last run stores the new position
// first, and so gets the fewer tiles.
void decode_attention(context &c, int layer, buffers &b) {
  const model_config &cfg = c.m->config;
  const kernel_table &k = active_kernels();
  const int hd = cfg.head_dim, group = cfg.n_heads / cfg.n_kv_heads, heads = cfg.n_heads;
  const int count = c.pos + 1, tiles = (int)((count + kKeyTile - 1) / kKeyTile), runs = std::min(c.threads, tiles);
  auto run_start = [&](int64_t r) { return (int)((tiles * r + runs - 1) / runs * kKeyTile); };  // rounded up
  // Per run: each query head's output over the run (normalized within it) and its log-sum-exp.
  // (References: a thread_local named inside the tasks would be each pool thread's own.)
  static thread_local std::vector<float> run_outs, run_lses;
  std::vector<float> &outs = run_outs, &lses = run_lses;
  outs.assign((size_t)runs * heads * hd, 0.0f);
  lses.resize((size_t)runs * heads);
  auto in_runs = [&](auto cache_type, const kernel_table::attention_ops<decltype(cache_type)> &ops) {
    using T = decltype(cache_type);
    thread_pool::global().run(runs, c.threads, [&](int64_t r) {
      const int p0 = run_start(r), p1 = std::min(count, run_start(r + 1)), len = p1 - p0;
      if (p1 == count) kv_store(c, layer, c.pos, 0, cfg.n_kv_heads, b.k.data(), b.v.data());
      static thread_local std::vector<float> scores;  // (heads, len)
      scores.resize((size_t)heads * len);
      const int tile = (int)kKeyTile;
      for (int at = 0; at < len; at += tile)
        for (int h = 0; h < cfg.n_kv_heads; h++)
          ops.scores(key_view<T>(c, layer, h, p0 + at, std::min(tile, len - at)), b.q.data() + (size_t)h * group * hd,
                     group, scores.data() + (size_t)h * group * len + at, len);
      for (int i = 0; i < heads; i++) lses[(size_t)r * heads + i] = k.softmax(scores.data() + (size_t)i * len, len);
      float *out = outs.data() + (size_t)r * heads * hd;
      for (int at = 0; at < len; at += tile)
        for (int h = 0; h < cfg.n_kv_heads; h++)
          ops.mix(value_view<T>(c, layer, h, p0 + at, std::min(tile, len - at)),
                  scores.data() + (size_t)h * group * len + at, len, group, out + (size_t)h * group * hd);
    });
  };
  if (c.kv == KV_F16) in_runs(uint16_t{}, k.attention_f16);
  else in_runs(float{}, k.attention_f32);
  // A run's share of a head's softmax: e^(its log-sum-exp) over the sum of all runs'.
  for (int i = 0; i < heads; i++) {
    float top = -INFINITY, total = 0;
    for (int r = 0; r < runs; r++) top = std::max(top, lses[(size_t)r * heads + i]);
    float *y = b.att_out.data() + (size_t)i * hd;
    std::fill_n(y, hd, 0.0f);
    for (int r = 0; r < runs; r++) {
      const float w = std::exp(lses[(size_t)r * heads + i] - top);
      const float *o = outs.data() + ((size_t)r * heads + i) * hd;
      for (int j = 0; j < hd; j++) y[j] += w * o[j];
      total += w;
    }
    for (int j = 0; j < hd; j++) y[j] /= total;
  }
}

// Causal grouped-query attention of the n new tokens over the cache, after storing their keys and
// values (b.k, b.v) in it: one task per (block of tokens, kv head), so the query heads that share a
// kv head read its cache once. Scores and the weighted sum of values run in the kernel table (SIMD
// for f32 and f16 caches), one call per head. One token (a decode step): decode_attention.
void attention(context &c, int layer, int n, buffers &b) {
  if (n == 1) return decode_attention(c, layer, b);
  const model_config &cfg = c.m->config;
  const kernel_table &k = active_kernels();
  const int hd = cfg.head_dim, group = cfg.n_heads / cfg.n_kv_heads;
  const size_t q_dim = (size_t)cfg.n_heads * hd, kv_dim = (size_t)cfg.n_kv_heads * hd;
  // A task takes a kv head and a block of tokens: its group x block queries share every cache read.
  constexpr int kTokensPerTask = 8;
  const int blocks = (n + kTokensPerTask - 1) / kTokensPerTask;
  // With one block (a short prompt), each task stores its own head's keys and values: the key lines
  // it writes (one per key value, in the last tile) are lines its scores read next, so their misses
  // overlap the head's other reads. Several blocks need every earlier token's keys, so store first.
  const bool store_in_tasks = blocks == 1;
  if (!store_in_tasks)
    per_token(c, n, [&](int t) { kv_store(c, layer, c.pos + t, 0, cfg.n_kv_heads, &b.k[t * kv_dim], &b.v[t * kv_dim]); });
  auto heads = [&](auto cache_type, const kernel_table::attention_ops<decltype(cache_type)> &ops) {
    using T = decltype(cache_type);
    thread_pool::global().run((int64_t)blocks * cfg.n_kv_heads, c.threads, [&](int64_t task) {
      const int kvh = (int)(task % cfg.n_kv_heads), t0 = (int)(task / cfg.n_kv_heads) * kTokensPerTask;
      const int tokens = std::min(kTokensPerTask, n - t0), nq = tokens * group;
      const int count = c.pos + t0 + tokens;  // the block's last token sees positions 0 .. count - 1
      const size_t head0 = (size_t)kvh * group * hd;
      if (store_in_tasks)
        for (int t = 0; t < tokens; t++)
          kv_store(c, layer, c.pos + t, kvh, kvh + 1, &b.k[t * kv_dim + kvh * hd], &b.v[t * kv_dim + kvh * hd]);
      static thread_local std::vector<float> q, scores, out;
      q.resize((size_t)nq * hd);
      out.assign((size_t)nq * hd, 0.0f);
      scores.resize((size_t)nq * count);
      for (int t = 0; t < tokens; t++)
        std::copy_n(b.q.data() + (size_t)(t0 + t) * q_dim + head0, (size_t)group * hd, q.data() + (size_t)t * group * hd);
      ops.scores(key_view<T>(c, layer, kvh, 0, count), q.data(), nq, scores.data(), count);
      for (int i = 0; i < nq; i++) {
        float *s = scores.data() + (size_t)i * count;
        const int seen = c.pos + t0 + i / group + 1;  // causal: later positions get weight 0
        k.softmax(s, seen);
        std::fill(s + seen, s + count, 0.0f);
      }
      ops.mix(value_view<T>(c, layer, kvh, 0, count), scores.data(), count, nq, out.data());
      for (int t = 0; t < tokens; t++)
        std::copy_n(out.data() + (size_t)t * group * hd, (size_t)group * hd, b.att_out.data() + (size_t)(t0 + t) * q_dim + head0);
    });
  };
  if (c.kv == KV_F16) heads(uint16_t{}, k.attention_f16);
  else heads(float{}, k.attention_f32);
}

// Before a decode step's serial work (norms, activation quantization, attention's merge), when the
// pool's workers wait and DRAM idles: each worker requests the front of its share of the next
// linears' weights meanwhile (matmul_prefetch_next), so a gap streams part of the next dispatch.
void prefetch_next(const context &c, int n, std::initializer_list<const qtensor *> next, bool joint = false) {
  if (n != 1 || c.threads < 2) return;
  matmul_job jobs[kMaxLowRankJobs];
  int count = 0;
  for (const qtensor *w : next) jobs[count++] = {w, nullptr};
  matmul_prefetch_next(jobs, count, c.m->activations, c.threads, active_kernels(), joint);
}

void record(std::vector<float> &to, const std::vector<float> &from, size_t count) {
  to.insert(to.end(), from.begin(), from.begin() + count);
}

// SwiGLU MLP of layer l on the n normed vectors in b.xb: down(silu(gate(x)) * up(x)) into b.proj.
void mlp(context &c, int l, int n, buffers &b) {
  const model_config &cfg = c.m->config;
  const layer_weights &w = c.m->weights.layers[l];
  const bool recording = c.recorder && c.recorder->wanted[l];
  if (recording) record(c.recorder->ffn_in[l], b.xb, (size_t)n * cfg.dim);
  // silu(gate) * up on each task's rows as soon as it has written them (every token's)
  const size_t hidden = (size_t)cfg.hidden_dim;
  const kernel_table &k = active_kernels();
  const row_epilogue swiglu = [&](int64_t r0, int64_t r1) {
    for (int t = 0; t < n; t++) k.silu_mul(b.gate.data() + t * hidden + r0, b.up.data() + t * hidden + r0, r1 - r0);
  };
  apply(c, {job(w.gate, b.gate.data()), job(w.up, b.up.data())}, b.xb.data(), n, &swiglu);
  prefetch_next(c, n, {&w.down.w});
  if (recording) record(c.recorder->swiglu[l], b.gate, (size_t)n * cfg.hidden_dim);
  apply(c, {job(w.down, b.proj.data())}, b.gate.data(), n);
}

void check_abort(const context &c) {
  if (c.abort && c.abort->load(std::memory_order_relaxed)) throw std::runtime_error("aborted");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Forward

void forward(context &c, const int32_t *tokens, int n, float *logits, bool all_logits) {
  const model &m = *c.m;
  const model_config &cfg = m.config;
  if (n < 1) throw std::invalid_argument("no tokens to evaluate");
  if (c.pos + n > c.n_ctx)
    throw std::length_error("context is full: " + std::to_string(c.pos) + " + " + std::to_string(n) +
                            " tokens exceed its " + std::to_string(c.n_ctx) + " positions");
  for (int t = 0; t < n; t++)
    if (tokens[t] < 0 || tokens[t] >= cfg.vocab_size)
      throw std::out_of_range("token " + std::to_string(tokens[t]) + " is outside the vocabulary (size " +
                              std::to_string(cfg.vocab_size) + ")");
  const size_t n_layers = (size_t)cfg.n_layers;
  if (c.recorder && (c.recorder->wanted.size() != n_layers || c.recorder->ffn_in.size() != n_layers ||
                     c.recorder->swiglu.size() != n_layers))
    throw std::invalid_argument("the MLP recorder is not sized for this model's layers");
  const rotations rot(cfg, c.pos, n);
  const int dim = cfg.dim, hd = cfg.head_dim;
  const float inv_sqrt = 1.0f / std::sqrt((float)hd);
  const size_t q_dim = (size_t)cfg.n_heads * hd, kv_dim = (size_t)cfg.n_kv_heads * hd;
  buffers b(cfg, n);

  // token embeddings
  for (int t = 0; t < n; t++) qtensor_dequantize(m.weights.embedding, tokens[t], tokens[t] + 1, &b.x[(size_t)t * dim]);

  for (int l = 0; l < cfg.n_layers; l++) {
    check_abort(c);
    const layer_weights &w = m.weights.layers[l];
    // attention rmsnorm, then q, k, v for every new token
    per_token(c, n, [&](int t) {
      rmsnorm(&b.x[(size_t)t * dim], w.attn_norm.data(), dim, cfg.norm_eps, &b.xb[(size_t)t * dim]);
    });
    apply(c, {job(w.wq, b.q.data()), job(w.wk, b.k.data()), job(w.wv, b.v.data())}, b.xb.data(), n);
    // RoPE on q and k, q scaled by 1/sqrt(head_dim) for the scores; attention stores k and v in
    // the cache at their positions
    per_token(c, n, [&](int t) {
      rope(&b.q[t * q_dim], cfg.n_heads, cfg, rot, t);
      for (size_t i = t * q_dim; i < (t + 1) * q_dim; i++) b.q[i] *= inv_sqrt;
      rope(&b.k[t * kv_dim], cfg.n_kv_heads, cfg, rot, t);
    });
    attention(c, l, n, b);
    prefetch_next(c, n, {&w.wo.w});
    // output projection and residual, ffn rmsnorm
    apply(c, {job(w.wo, b.proj.data())}, b.att_out.data(), n);
    prefetch_next(c, n, {&w.gate.w, &w.up.w}, true);
    per_token(c, n, [&](int t) {
      for (size_t i = (size_t)t * dim; i < (size_t)(t + 1) * dim; i++) b.x[i] += b.proj[i];
      rmsnorm(&b.x[(size_t)t * dim], w.ffn_norm.data(), dim, cfg.norm_eps, &b.xb[(size_t)t * dim]);
    });
    // SwiGLU: down(silu(gate(x)) * up(x)), residual
    mlp(c, l, n, b);
    if (l + 1 < cfg.n_layers) {
      const layer_weights &next = m.weights.layers[l + 1];
      prefetch_next(c, n, {&next.wq.w, &next.wk.w, &next.wv.w});
    } else if (logits) {
      prefetch_next(c, n, {&m.weights.output});
    }
    per_token(c, n, [&](int t) {
      for (size_t i = (size_t)t * dim; i < (size_t)(t + 1) * dim; i++) b.x[i] += b.proj[i];
    });
  }
  check_abort(c);
  c.pos += n;
  c.tokens.insert(c.tokens.end(), tokens, tokens + n);
  if (!logits) return;
  // final rmsnorm and the classifier, for the last token or all of them
  const int first = all_logits ? 0 : n - 1, count = n - first;
  for (int t = first; t < n; t++)
    rmsnorm(&b.x[(size_t)t * dim], m.weights.final_norm.data(), dim, cfg.norm_eps, &b.xb[(size_t)(t - first) * dim]);
  matmul(m.weights.output, b.xb.data(), count, logits, m.activations, c.threads, active_kernels());
}

}  // namespace lb
