// Scalar math written without libm calls, so that loops over it vectorize (libm's expf is a call
// per element: the SiLU and softmax loops of a decode step spent more time in it than in their
// arithmetic), and the softmax of attention built on it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Always inlined: ISA files (built with other -m flags) call these too, and an out-of-line copy
// from one of them must not be what the linker keeps for every caller.
#define LB_FASTMATH inline __attribute__((always_inline))

namespace lb {

// Round half to even by adding 1.5 * 2^23 (valid for |v| < 2^22).
LB_FASTMATH float round_even(float v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

// e^x within 2 ulp for |x| <= 87 (clamped outside: e^-87 ~ 1.6e-38, e^87 ~ 6.1e37): x = k ln2
// + r with |r| <= ln2 / 2, e^r from Cephes' degree-6 polynomial for expf, 2^k through the exponent
// bits. ln2 is split in two (0.693359375 exact in 9 bits) so k * ln2 subtracts without rounding.
LB_FASTMATH float exp_fast(float x) {
  // One select (GCC 12 stops vectorizing at two, or at std::min/max).
  x = std::fabs(x) > 87.0f ? std::copysign(87.0f, x) : x;
  const float k = round_even(x * 1.44269504088896341f);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)k + 127) << 23;
  float two_k;
  std::memcpy(&two_k, &bits, 4);
  return p * two_k;
}

// SwiGLU's gate: gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x). Kernel tables wrap it
// so that it vectorizes with each ISA's flags (see kernel_table::silu_mul).
LB_FASTMATH void silu_mul(float *__restrict gate, const float *__restrict up, int64_t n) {
  for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + exp_fast(-gate[i])) * up[i];
}

// In-place softmax of v[0, n), n >= 1 (kernel tables wrap it too: kernel_table::softmax); returns
// log sum_i e^v[i], which merges softmaxes taken over parts of a row. The running max and sum are
// kept in 8 interleaved partials: a single running value is a serial chain the compiler cannot
// vectorize.
LB_FASTMATH float softmax(float *v, int n) {
  constexpr int K = 8;
  float part[K];
  for (int k = 0; k < K; k++) part[k] = v[0];
  int i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; k++) part[k] = v[i + k] > part[k] ? v[i + k] : part[k];
  float max = v[0];
  for (int k = 0; k < K; k++) max = part[k] > max ? part[k] : max;
  for (; i < n; i++) max = v[i] > max ? v[i] : max;
  for (i = 0; i < n; i++) v[i] = exp_fast(v[i] - max);
  for (int k = 0; k < K; k++) part[k] = 0;
  for (i = 0; i + K <= n; i += K)
    for (int k = 0; k < K; k++) part[k] += v[i + k];
  float sum = 0;
  for (int k = 0; k < K; k++) sum += part[k];
  for (; i < n; i++) sum += v[i];
  const float inv = 1.0f / sum;
  for (i = 0; i < n; i++) v[i] *= inv;
  return max + std::log(sum);
}

}  // namespace lb
