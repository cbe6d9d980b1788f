// A Llama-architecture decoder: config, weights (every linear layer a QTensor, in any mix of
// formats) and a forward pass over the thread pool; a context holds the KV cache of one sequence.
// Structure after llama2.c's run.c: Config, Weights and State with shapes documented where they
// live, and one top-to-bottom forward() that reaches kernels only through matmul().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/qtensor.h"
#include "../kernels/kernels.h"

namespace lb {

enum rope_style : int32_t {
  ROPE_INTERLEAVED = 0,  // pairs (2i, 2i+1): Meta's checkpoints, llama2.c, GGUF "llama"
  ROPE_HALF = 1,         // pairs (i, i + head_dim/2): Hugging Face rotate_half
};

struct model_config {
  int dim = 0;          // model width
  int hidden_dim = 0;   // SwiGLU inner width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;   // grouped-query attention: n_heads / n_kv_heads query heads share one kv head
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  rope_style rope = ROPE_INTERLEAVED;
  // Llama-3 frequency scaling (rope_scaling.rope_type == "llama3"); factor 0 = none.
  float rope_factor = 0, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  // Or per-pair divisors of the frequencies, as GGUF files store them (rope_freqs.weight): empty
  // or head_dim / 2 values.
  std::vector<float> rope_freq_factors;
  int rope_original_max_pos = 8192;
};

// y = W x + B (A x): SHARP's low-rank recovery on a (possibly shared) weight; A (rank x in),
// B (out x rank), both float. Empty when rank == 0.
struct low_rank {
  qtensor a, b;
  bool empty() const { return !a.data; }
};

struct linear {
  qtensor w;
  low_rank recovery;
};

struct layer_weights {
  std::vector<float> attn_norm;  // (dim)
  std::vector<float> ffn_norm;   // (dim)
  linear wq;                     // (n_heads * head_dim, dim)
  linear wk, wv;                 // (n_kv_heads * head_dim, dim)
  linear wo;                     // (dim, n_heads * head_dim)
  linear gate, up;               // (hidden_dim, dim)
  linear down;                   // (dim, hidden_dim)

  // fn(l) for each linear, in the order a forward pass reads them.
  template <class Self, class Fn>
  static void each_linear(Self &w, Fn fn) {
    for (auto *l : {&w.wq, &w.wk, &w.wv, &w.wo, &w.gate, &w.up, &w.down}) fn(*l);
  }
};

struct model_weights {
  qtensor embedding;               // (vocab, dim): rows are looked up
  std::vector<layer_weights> layers;
  std::vector<float> final_norm;   // (dim)
  qtensor output;                  // (vocab, dim); may share the embedding's storage
};

struct model {
  model_config config;
  model_weights weights;
  act_mode activations = ACT_Q8;  // how quantized layers multiply
};

// Checks shapes and sizes of every tensor against the config; returns "" or the problem, naming
// the tensor.
std::string model_validate(const model &m);

// Copies the layer tensors (weights and recovery factors, codes and scales) under 2 MiB into one
// arena, in the order a forward pass reads them, storage shared between layers (SHARP) copied
// once. They are too small for a transparent huge page of their own (aligned_buffer), and on 4 KiB
// pages a streaming GEMV takes a TLB miss every 4 KiB: in one arena they share huge pages
// (MobileLLM-600M, whose tensors are all smaller, decodes 3-6% faster). The model must own them.
void model_pack_weights(model &m);

// Rewrites the layer weights table k has an interleaved GEMV for (quantized, whole groups
// of rows; docs/KERNELS.md) into that layout, in place, when the model multiplies in int8. The
// model must own their storage: other handles on it would see the new layout unmarked.
void model_interleave_weights(model &m, const kernel_table &k);

enum kv_type : int32_t { KV_F32 = 0, KV_F16 = 1 };

// Records what chosen layers' MLPs read, for calibration (SHARP's fitting): per layer the post-norm
// hidden states (gate's and up's input) and the SwiGLU products (down's input), appended by every
// forward() call.
struct mlp_recorder {
  std::vector<char> wanted;                // (n_layers): 1 = record this layer
  std::vector<std::vector<float>> ffn_in;  // per layer: (tokens, dim)
  std::vector<std::vector<float>> swiglu;  // per layer: (tokens, hidden_dim)
};

// One sequence's state: the KV cache and scratch buffers sized for up to `batch` tokens per call.
struct context {
  const model *m = nullptr;
  int n_ctx = 0;               // positions the cache holds
  kv_type kv = KV_F32;
  int threads = 1;
  int pos = 0;                 // next position to fill
  std::vector<int32_t> tokens; // tokens in the cache, in order
  // In kv type, one block per layer holding its kv heads tile by tile, kKeyTile positions a tile:
  // [cache_positions() / kKeyTile][kv head][tile], a values tile by position ([kKeyTile]
  // [head_dim]), a keys tile transposed ([head_dim][kKeyTile]) for the attention kernels
  // (kernels.h, kv_rows and kv_columns). A layer's cache up to a position is one contiguous block,
  // which a decode step streams (model.cpp, decode_attention). On huge pages where large
  // (aligned_buffer): on 4 KiB pages every page costs a TLB miss and a fresh start of the
  // hardware prefetcher (docs/KERNELS.md, Attention).
  std::unique_ptr<aligned_buffer> k_cache, v_cache;
  int64_t cache_positions() const { return (n_ctx + kKeyTile - 1) / kKeyTile * kKeyTile; }
  std::atomic<bool> *abort = nullptr;     // polled between layers
  mlp_recorder *recorder = nullptr;       // when set, forward() records MLP inputs into it
};

void context_init(context &c, const model &m, int n_ctx, kv_type kv, int threads);

// Runs `n` tokens at positions pos .. pos+n-1 and appends them to the cache. Writes logits of the
// last token (vocab floats) or of every token (n x vocab) into `logits` when it is non-null.
// Throws std::runtime_error on bad tokens, a full context or an abort.
void forward(context &c, const int32_t *tokens, int n, float *logits, bool all_logits);

// Drops cached positions from `keep` on (to reuse a common prefix).
void context_truncate(context &c, int keep);

}  // namespace lb
