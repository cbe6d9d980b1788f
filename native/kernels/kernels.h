// The kernel table: one row of entry points per instruction set, filled once at start-up from the
// CPU's features (dispatch.cpp). model/ and napi/ reach kernels only through matmul().
//
// Activations reach integer kernels as int8 with one scale per 64-column chunk (the packing
// chunk of formats.h), so every 32-bit lane of a SIMD accumulator covers columns of one chunk and
// one scale; the kernel converts the integer sum of each super-chunk (one vector load of a plane)
// to float and multiplies it by that lane's scale. act_q8 holds the quantized activations once
// in natural order (for the reference kernel) and, per plane width, permuted so that field k of
// a loaded weight vector lines up with the activations of its columns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/qtensor.h"

namespace lb {

enum isa : int32_t { ISA_REF = 0, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_NEON_DOTPROD, ISA_COUNT };

const char *isa_name(isa i);
bool isa_from_name(const char *name, isa *out);

// Plane widths 1, 2 and 4 bits have layouts 0, 1, 2.
inline int width_slot(int w) { return w == 1 ? 0 : w == 2 ? 1 : 2; }

// Activations of n vectors of `cols` values, quantized to int8 per 64-column chunk.
struct act_q8 {
  int64_t cols = 0, n = 0, n_chunks = 0, n_segments = 0;
  std::vector<int8_t> q;          // [n][cols], natural order
  std::vector<float> chunk_scale; // [n][n_chunks]: x ~= chunk_scale * q
  std::vector<float> segment_sum; // [n][n_segments]: chunk_scale * sum(q) over each 32 columns

  // Layout of one plane width for vectors of `vector_bytes` (built by prepare_layout).
  struct layout {
    int vector_bytes = 0;        // 0 = not built
    int64_t n_super = 0;         // super-chunks: one vector load of plane bytes each
    int64_t q_stride = 0;        // int8 values per vector (n_super * fields * vector_bytes)
    int64_t scale_stride = 0;    // floats per vector (n_super * vector_bytes / 4)
    std::vector<int8_t> q;       // [n][n_super][field][vector_bytes]
    std::vector<float> lane_scale;  // [n][n_super][vector_bytes / 4]
  } layouts[3];
};

// Quantizes n vectors (row-major, n x cols) into a (layouts are built on demand).
void act_quantize(const float *x, int64_t n, int64_t cols, act_q8 &a);
void act_prepare_layout(act_q8 &a, int w, int vector_bytes);

// Float activations of n vectors, also permuted per plane width for SIMD float kernels.
struct act_f32 {
  int64_t cols = 0, n = 0;
  const float *x = nullptr;        // [n][cols], natural order (borrowed)
  std::vector<float> segment_sum;  // [n][ceil(cols/32)] sums over each 32 columns
  struct layout {
    int vector_bytes = 0;
    int64_t n_super = 0, stride = 0;
    std::vector<float> x;  // [n][n_super][field][vector_bytes]
  } layouts[3];
};
void act_f32_init(const float *x, int64_t n, int64_t cols, act_f32 &a);
void act_f32_prepare_layout(act_f32 &a, int w, int vector_bytes);

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

struct kernel_table {
  isa id;
  int vector_bytes;                     // layout the kernels expect (0 = natural order)
  gemm_q8_fn gemm_q8[FORMAT_COUNT];     // quantized weights x int8 activations
  gemm_f32_fn gemm_f32[FORMAT_COUNT];   // any weights x float activations
  // Scale groups this table's SIMD kernels handle for format f (others use the reference).
  bool (*supports_group)(format f, int64_t group);
  // Reads n bytes (n a multiple of 256) as fast as the ISA allows; for bandwidth measurement.
  uint64_t (*read_bytes)(const uint8_t *p, size_t n);
};

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
// The table in use: LOWBIT_ISA if set (throws std::runtime_error when unsupported), else the best.
const kernel_table &active_kernels();
const kernel_table &kernels_for(isa i);  // throws when unsupported

// Activation precision of a matmul with quantized weights.
enum act_mode : int32_t { ACT_Q8 = 0, ACT_F32 = 1 };

// y (n x rows) = x (n x cols) * W^T, on `threads` threads of the global pool.
void matmul(const qtensor &w, const float *x, int64_t n, float *y, act_mode mode, int threads,
            const kernel_table &k);

// Benchmark helpers (bench.cpp). Seconds per pass of reading `bytes` (rounded down to whole
// pages per thread) on `threads` threads, repeated for at least min_seconds; and seconds per
// matmul cycling through `ws`.
double measure_read_seconds(size_t bytes, int threads, double min_seconds, const kernel_table &k);
double measure_matmul_seconds(const std::vector<const qtensor *> &ws, const float *x, int64_t n, act_mode mode,
                              int threads, double min_seconds, const kernel_table &k);

}  // namespace lb
