// ParetoQ quantizers: float rows -> codes + scales of a QTensor, one row (or group) at a time.
//
//  exact: the weights already lie on the grid (released ParetoQ checkpoints are fake-quantized);
//         find the scale, pack losslessly, fail naming the row otherwise.
//  rtn:   round to nearest with ParetoQ's initial scale (train.py), the paper's PTQ baseline.
//  mse:   per-group scale search plus Lloyd refinement minimising the squared error.
#pragma once

#include <cstdint>
#include <string>

#include "qtensor.h"

namespace lb {

enum quant_method : int32_t { METHOD_EXACT = 0, METHOD_RTN = 1, METHOD_MSE = 2 };

bool quant_method_from_name(const char *name, quant_method *out);

// Quantizes rows [r0, r1) of the row-major matrix w (t.rows x t.cols) into t. Returns an empty
// string on success, else a message naming the first failing row (and group). `src` is the
// precision w was stored in, which exact quantization must reproduce.
std::string quantize_rows(qtensor &t, const float *w, int64_t r0, int64_t r1, quant_method m,
                          source_dtype src);

}  // namespace lb
