// The kernel table: one row of entry points per instruction set, filled once at start-up from the
// CPU's features (dispatch.cpp). model/ and napi/ reach kernels only through matmul().
//
// Integer kernels multiply codes by int8 activations. The SIMD kernels keep A integer
// accumulators per row, each of V/4 32-bit lanes, and sum a whole row in them before any float
// work; so activations are quantized per *lane class*: class (a, l) holds the columns that feed
// lane l of accumulator a (super-chunks s with s % A == a, bytes 4l..4l+3 of each load). With A
// lanes-per-row chosen for about 64 classes, a class spans as many columns as a 64-column block
// would, and the float work per row is A multiply-adds at the end. The reference kernel reads the
// same quantized values in natural order (with a scale per column), so SIMD and reference results
// differ only by float summation order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../core/pool.h"
#include "../core/qtensor.h"

namespace lb {

enum isa : int32_t { ISA_REF = 0, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_NEON_DOTPROD, ISA_COUNT };

const char *isa_name(isa i);
bool isa_from_name(const char *name, isa *out);

// Plane widths 1, 2 and 4 bits have slots 0, 1, 2.
inline int width_slot(int w) { return w == 1 ? 0 : w == 2 ? 1 : 2; }

// How an ISA lays activations out for its kernels: vector bytes V (0 = natural column order, the
// reference kernels) and accumulators per row A.
struct act_shape {
  int vector_bytes = 0;
  int accs = 1;
  int field_classes = 1;  // fields with their own classes (kernels that sum each field apart)
  int lanes() const { return vector_bytes / 4; }
};

// Activations of n vectors of `cols` values, quantized to int8 for one plane width.
struct act_q8_plane {
  act_shape shape;
  bool built = false;
  int64_t n_super = 0;            // vector loads per row of this plane (SIMD layouts)
  int64_t q_stride = 0;           // int8 values per vector
  int64_t scale_stride = 0;       // floats per vector
  std::vector<int8_t> q;          // SIMD: [n][n_super][field][V]; natural: [n][cols]
  std::vector<float> scale;       // SIMD: [n][A][field classes][V/4] class scales; natural: [n][cols]
  std::vector<float> scratch;     // one permuted float vector, reused between calls
};

// One vector for the interleaved GEMV of plane width w (qtensor_interleave): int8 in natural
// column order, one scale per class (block of interleaved_block_cols(w) columns, the last one
// taking the row's leftover chunks too; field): field k of a 64-column chunk holds its columns
// 8w*k .. 8w*k + 8w - 1. A kernel folds its integer sums into floats once per block and field, so
// the block is as long as the classes allow: every class spans kInterleaveClassCols columns
// whatever the width (8/w fields, each 8w columns of a chunk), the blocks of 1-bit codes 1024
// columns, of 2-bit 512, of 4-bit 256. (The folds of 256-column blocks cost 1-bit rows 20% and
// 2-bit rows 8% of their cache-resident speed; llama.cpp scales its int8 activations per 32 (Q8_0)
// or 256 (Q8_K) columns.)
constexpr int64_t kInterleaveClassCols = 128;
constexpr int64_t interleaved_block_cols(int w) { return kInterleaveClassCols * 8 / w; }
// A row of `chunks` chunks has this many blocks: whole ones, the last also taking the chunks left
// over. A fold costs as much after two chunks as after a whole block, so MobileLLM's 1152-column
// rows (two chunks past one 1-bit block) folded twice; one fold sped its decode 1-6% (b1), 1-3% (b2).
constexpr int64_t interleaved_blocks(int64_t chunks, int w) {
  return std::max<int64_t>(1, chunks / (interleaved_block_cols(w) / kChunkCols));
}
// The chunks [first, end) of block b of such a row.
constexpr int64_t interleaved_block_first(int64_t b, int w) { return b * (interleaved_block_cols(w) / kChunkCols); }
constexpr int64_t interleaved_block_end(int64_t b, int64_t chunks, int w) {
  return b + 1 == interleaved_blocks(chunks, w) ? chunks : interleaved_block_first(b + 1, w);
}
struct act_interleaved {
  bool built = false;
  std::vector<int8_t> q;      // [cols]
  std::vector<float> scale;   // [block][8 / w]
  float x_sum = 0;            // sum of x, for the zero offset term (once per call, not per span)
};

// The plane width whose activations (act_interleaved) the interleaved GEMV of format f multiplies
// its whole codes by: its own, or for fused b3 words (qtensor.h) the 1-bit one, whose classes
// their bytes follow.
constexpr int interleaved_act_width(format f) { return interleaved_fused(f) ? 1 : kFormatTraits[f].plane_bits[0]; }

struct act_q8 {
  int64_t cols = 0, n = 0;
  std::vector<float> segment_sum;  // [n][ceil(cols/32)]: float sums of x, for the offset term
  act_q8_plane planes[3];
  act_interleaved interleaved[3];  // n == 1, per plane width, for interleaved weights
};

// Float activations, natural order (borrowed) or permuted for SIMD float kernels.
struct act_f32_plane {
  bool built = false;
  int64_t n_super = 0, stride = 0;
  std::vector<float> x;  // [n][n_super][field][V]
};

struct act_f32 {
  int64_t cols = 0, n = 0;
  const float *x = nullptr;        // [n][cols]
  std::vector<float> segment_sum;  // [n][ceil(cols/32)]
  act_f32_plane planes[3];
};

// Sums of x over 32-column segments (both activation kinds carry them).
void act_segment_sums(const float *x, int64_t n, int64_t cols, std::vector<float> &out);
// The natural-order (reference) quantization: int8 per contiguous 64 columns.
void act_quantize_natural(const float *x, int64_t n, int64_t cols, act_q8_plane &out);
// The same quantized values as a SIMD layout, in natural order (to run the reference kernel on
// exactly what a SIMD kernel saw).
void act_layout_to_natural(const act_q8_plane &in, int w, int64_t cols, int64_t n, act_q8_plane &out);
// Which natural column feeds each position of a SIMD layout (-1: none); cached per shape.
const std::vector<int32_t> &layout_columns(int64_t cols, int w, int vector_bytes);

// One call computes output rows [r0, r1) for all n vectors: y[v * ldy + r].
struct gemm_q8_args {
  const qtensor *w;
  const act_q8 *a;
  float *y;
  int64_t ldy, r0, r1;
};
struct gemm_f32_args {
  const qtensor *w;
  const act_f32 *a;
  float *y;
  int64_t ldy, r0, r1;
};
typedef void (*gemm_q8_fn)(const gemm_q8_args &);
typedef void (*gemm_f32_fn)(const gemm_f32_args &);

// One kv head's slice of a KV cache (f32, or f16 bits): `count` positions of n values each, in
// tiles of kKeyTile positions `tile_stride` elements apart (a cache keeps a layer's kv heads tile
// by tile, model.h: the other heads' tiles lie between).
//   kv_rows (values):        position p's values are data[row_index(p, stride, tile_stride) + j],
//                            j < n: rows `stride` apart within a tile
//   kv_columns (keys):       each tile transposed: key (p, j) is at key_index(p, j, tile_stride).
//                            Scores for a run of positions are vector FMAs with no reduction, and
//                            a tile is one contiguous block to stream (a fully transposed cache is
//                            n strided streams). Storage holds whole tiles, so kernels may read a
//                            tile past count.
constexpr int64_t kKeyTile = 32;  // a multiple of every ISA's float vector
inline int64_t row_index(int64_t p, int64_t stride, int64_t tile_stride) {
  return (p / kKeyTile) * tile_stride + (p % kKeyTile) * stride;
}
inline int64_t key_index(int64_t p, int64_t j, int64_t tile_stride) {
  return (p / kKeyTile) * tile_stride + j * kKeyTile + p % kKeyTile;
}
template <class T>
struct kv_rows {
  const T *data;
  int64_t stride, count, n, tile_stride;  // tile_stride >= kKeyTile * stride
};
template <class T>
struct kv_columns {
  const T *data;
  int64_t count, n, tile_stride;  // tile_stride >= n * kKeyTile
};

struct kernel_table {
  isa id;
  act_shape shape;                      // activation layout the kernels read
  gemm_q8_fn gemm_q8[FORMAT_COUNT];     // quantized weights x int8 activations
  gemm_f32_fn gemm_f32[FORMAT_COUNT];   // any weights x float activations
  // One vector (a.n == 1, a.interleaved built) times interleaved weights, rows [r0, r1) in whole
  // groups; null where the ISA has none (interleaved weights then run from row copies).
  gemm_q8_fn gemv_interleaved[FORMAT_COUNT];
  // Builds the layouts of plane width w for n vectors of x (row-major n x cols), on up to
  // `threads` threads when n is large (prefill).
  void (*prepare_q8)(const float *x, int64_t n, int64_t cols, int w, act_q8_plane &out, int threads);
  void (*prepare_f32)(const float *x, int64_t n, int64_t cols, int w, act_f32_plane &out, int threads);
  // The interleaved GEMV's activations of one vector (with gemv_interleaved).
  void (*prepare_interleaved)(const float *x, int64_t cols, int w, act_interleaved &out);
  // Scale groups this table's kernels handle for format f (others use the reference).
  bool (*supports_group)(format f, int64_t group);
  // Reads n bytes (n a multiple of 256) as fast as the ISA allows; for bandwidth measurement.
  uint64_t (*read_bytes)(const uint8_t *p, size_t n);
  // out[i] = x[i] as IEEE half, rounded to nearest even (f32_to_f16 in bulk: KV cache stores).
  void (*to_f16)(const float *x, int64_t n, uint16_t *out);
  // fastmath.h's silu_mul and softmax, vectorized for the ISA: SwiGLU's gate, gate[i] =
  // silu(gate[i]) * up[i], and attention's in-place softmax of v[0, n) (returns log sum e^v).
  void (*silu_mul)(float *gate, const float *up, int64_t n);
  float (*softmax)(float *v, int n);
  // Attention over the cache of one kv head, for nq queries at once so that each cached value
  // is read once for all of them (the query heads of a group, several tokens):
  //   scores: s[i][p] = sum_j key(p, j) q[i][j]           q rows n floats apart, s rows ld_s apart
  //                                                        (queries come scaled by 1/sqrt(n))
  //   mix:    y[i] += sum_p a[i][p] * value row p          a rows ld_a apart, y rows n floats apart
  template <class T>
  struct attention_ops {
    void (*scores)(const kv_columns<T> &keys, const float *q, int nq, float *s, int64_t ld_s);
    void (*mix)(const kv_rows<T> &values, const float *a, int64_t ld_a, int nq, float *y);
  };
  attention_ops<float> attention_f32;
  attention_ops<uint16_t> attention_f16;
  bool fused_b3 = false;  // runs the 3-bit GEMMs that b3_gemm_fusable() accepts in one pass
};

// 3-bit GEMMs (n > 1) of rows of whole chunks with one scale per row: a table with fused_b3 runs
// both planes in one pass, multiplying the high bits with the 2-bit plane's activations too.
inline bool b3_gemm_fusable(const qtensor &w, int64_t n) {
  return w.fmt == FORMAT_B3 && n > 1 && w.group == 0 && w.cols % kChunkCols == 0;
}

const kernel_table &kernels_ref();
#if defined(__x86_64__)
const kernel_table &kernels_avx2();
const kernel_table &kernels_avx512();
#endif
#if defined(__aarch64__)
const kernel_table &kernels_neon();
const kernel_table &kernels_neon_dotprod();
#endif

// Which ISAs this CPU and build can run.
bool isa_supported(isa i);
// The table in use: LOWBIT_ISA if set (throws std::domain_error when unsupported), else the best.
const kernel_table &active_kernels();
const kernel_table &kernels_for(isa i);  // throws std::domain_error when unsupported

// Activation precision of a matmul with quantized weights.
enum act_mode : int32_t { ACT_Q8 = 0, ACT_F32 = 1 };

// Builds what format f's kernels of table k read from x (n x cols): every plane's layout.
void act_prepare(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, act_q8 &out, int threads = 1);
void act_prepare(const kernel_table &k, format f, const float *x, int64_t n, int64_t cols, act_f32 &out, int threads = 1);

// Work a matmul task does on the output rows [r0, r1) it has just written, while they are in
// cache (SHARP's low-rank term: kernels/low-rank.h).
using row_epilogue = std::function<void(int64_t r0, int64_t r1)>;

// y (n x rows) = x (n x cols) * W^T, on `threads` threads of the global pool; each task runs
// `epilogue` (when set) on its rows after the kernel.
void matmul(const qtensor &w, const float *x, int64_t n, float *y, act_mode mode, int threads,
            const kernel_table &k, const row_epilogue &epilogue = nullptr);

// Several matrices applied to the same x (q, k, v; gate, up): activations are prepared once and
// all rows run in one dispatch of the pool. With `together`, the jobs (all of the same rows) are
// split into row blocks taken by one task each, which then runs together(r0, r1) on those rows of
// every job's output (SwiGLU on gate and up, with no pass of its own).
struct matmul_job {
  const qtensor *w;
  float *y;                                // n x w->rows
  const row_epilogue *epilogue = nullptr;  // run on each task's rows, when set
};
void matmul_many(const matmul_job *jobs, int count, const float *x, int64_t n, act_mode mode, int threads,
                 const kernel_table &k, const row_epilogue *together = nullptr);

// Before a decode step's serial work: has each pool worker request, while it waits, the front of
// its share of the weights the next matmul_many of these jobs (one vector; `joint` when it has
// `together`) will hand it (thread_pool::prefetch_while_idle).
void matmul_prefetch_next(const matmul_job *jobs, int count, act_mode mode, int threads, const kernel_table &k,
                          bool joint = false);
// The first `budget` bytes of that share of run_spans slot `slot` (codes, then scales, job by job).
std::vector<thread_pool::byte_range> matmul_share_front(const matmul_job *jobs, int count, act_mode mode, int threads,
                                                        const kernel_table &k, bool joint, int slot, size_t budget);

// Benchmark helpers (bench.cpp). Seconds per pass of reading the caller's `data` on `threads`
// threads (each an equal share), repeated for at least min_seconds (a probe reuses its buffer:
// faulting 1 GiB in costs more than reading it). And one matmul by each of `ws` in turn (one call
// from JS for many short kernels): seconds per matmul.
double measure_read_seconds(const uint8_t *data, size_t bytes, int threads, double min_seconds, const kernel_table &k);
double run_matmuls(const std::vector<const qtensor *> &ws, const float *x, int64_t n, act_mode mode, int threads,
                   const kernel_table &k);

}  // namespace lb
