// SHARP's fused product y = W x + B (A x) (research notes B4), for GEMV and GEMM, for several
// matrices that read the same input (q, k, v; gate, up): A x of every recovery is computed once per
// input, in one dispatch; then the main products run as matmul_many runs them and each pool task
// adds B (A x) to the output rows it has just written (an epilogue over the same row tiles), so B
// costs no dispatch and no pass over y of its own. W + B A is never formed: W may be quantized and
// shared by several layers.
#pragma once

#include "kernels.h"

namespace lb {

// One product: y = W x, plus B (A x) when a and b are set.
struct low_rank_job {
  const qtensor *w = nullptr;  // (rows, cols)
  float *y = nullptr;          // (n, rows)
  const qtensor *a = nullptr;  // (rank, cols), f32 or f16
  const qtensor *b = nullptr;  // (rows, rank), f32 or f16
};

// Up to kMaxLowRankJobs products of one input x (n x cols). W multiplies as matmul() does (int8
// or float activations); the low-rank term always in float, through table k's float kernels.
// `together` as for matmul_many (after each job's recovery).
constexpr int kMaxLowRankJobs = 8;
void matmul_low_rank(const low_rank_job *jobs, int count, const float *x, int64_t n, act_mode mode, int threads,
                     const kernel_table &k, const row_epilogue *together = nullptr);

// The epilogue: adds B (A x) to rows [r0, r1) of y (n x ldy), with A x prepared by act_prepare
// for table k.
void add_low_rank_rows(const qtensor &b, const act_f32 &ax, int64_t r0, int64_t r1, float *y, int64_t ldy,
                       const kernel_table &k);

}  // namespace lb
