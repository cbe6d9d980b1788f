// NEON vector traits for simd-gemm.h, shared by neon.cpp (baseline ARMv8-A) and neon-dotprod.cpp
// (ARMv8.2-A dot product). Codes are at most 15, so they are valid s8 operands and the signed
// dot product serves u8 codes x s8 activations.
#pragma once

#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "../simd-gemm.h"

namespace lb {

// Without SDOT: products are accumulated per byte in 16 bits across the fields of a load
// (at most 8 * 15 * 127 < 2^15) and folded to 32-bit lanes of 4 bytes once per load.
struct neon_acc16 {
  int16x8_t lo, hi;
};

template <bool DOTPROD>
struct VecNeon {
  static constexpr int kBytes = 16;
  // SDOT is signed x signed: fields are shifted down to codes that fit s8 (no in-place).
  static constexpr bool kFieldsInPlace = false;
  static constexpr int kAccs = 8, kSums = 16;  // 8 x 4 lanes = 32 activation classes per row
  static constexpr int kGemvRows = 2, kGemmRows = 1, kGemmVecs = 2;
  static constexpr bool kFusedB3 = false;
  using Codes = uint8x16_t;
  using Sum = int32x4_t;
  using Part = std::conditional_t<DOTPROD, int32x4_t, neon_acc16>;
  using Fv = float32x4_t;

  // The interleaved GEMV (4 rows per load) needs SDOT; without it models stay row-major.
  static constexpr bool kInterleaved = DOTPROD;
  static constexpr int kInterleaveSums = 16, kInterleaveSumsMax = 16;
  using Bcast = Codes;
  static Bcast broadcast4(const int8_t *x) {
    int32_t v;
    std::memcpy(&v, x, 4);
    return vreinterpretq_u8_s32(vdupq_n_s32(v));
  }
  static Sum dot4(Sum acc, Codes c, Codes xb) {
#if defined(__ARM_FEATURE_DOTPROD)
    if constexpr (DOTPROD) return vdotq_s32(acc, vreinterpretq_s8_u8(c), vreinterpretq_s8_u8(xb));
#endif
    return acc;  // not reached: no interleaved GEMV without SDOT
  }
  static Sum sum_add(Sum a, Sum b) { return vaddq_s32(a, b); }
  static Fv f_scale1(Sum sum, float s, Fv f) { return vfmaq_n_f32(f, vcvtq_f32_s32(sum), s); }

  static Codes load(const uint8_t *p) { return vld1q_u8(p); }
  template <int W, int K>
  static Codes field(Codes v) {
    if constexpr (K == 0) return vandq_u8(v, vdupq_n_u8((1 << W) - 1));
    else if constexpr (W * (K + 1) == 8) return vshrq_n_u8(v, W * K);  // top field: no mask
    else return vandq_u8(vshrq_n_u8(v, W * K), vdupq_n_u8((1 << W) - 1));
  }
  static Sum sum_zero() { return vdupq_n_s32(0); }
  static constexpr bool kPartIsSum = DOTPROD;  // SDOT adds straight into the row sums
  static Part part_zero() {
    if constexpr (DOTPROD) return vdupq_n_s32(0);
    else return {vdupq_n_s16(0), vdupq_n_s16(0)};
  }
  static Part dot(Part acc, Codes c, const int8_t *x) {
    const int8x16_t xv = vld1q_s8(x), cv = vreinterpretq_s8_u8(c);
#if defined(__ARM_FEATURE_DOTPROD)
    if constexpr (DOTPROD) return vdotq_s32(acc, cv, xv);
#endif
    if constexpr (!DOTPROD)
      return {vmlal_s8(acc.lo, vget_low_s8(cv), vget_low_s8(xv)), vmlal_high_s8(acc.hi, cv, xv)};
  }
  // Without SDOT, 16-bit byte products are folded to 32-bit lanes of 4 bytes once per load.
  static void part_end(Sum &sum, Part part) {
    if constexpr (!DOTPROD) sum = vaddq_s32(sum, vpaddq_s32(vpaddlq_s16(part.lo), vpaddlq_s16(part.hi)));
  }
  static Fv f_zero() { return vdupq_n_f32(0); }
  static Fv f_scale(Sum sum, const float *s, Fv f) { return vfmaq_f32(f, vcvtq_f32_s32(sum), vld1q_f32(s)); }
  static Fv f_scale_by(Sum sum, const float *s, float g, Fv f) {
    return vfmaq_f32(f, vcvtq_f32_s32(sum), vmulq_n_f32(vld1q_f32(s), g));
  }
  static Fv f_add_scaled(Fv part, float g, Fv f) { return vfmaq_n_f32(f, part, g); }
  static Fv f_codes(Codes c, const float *x, Fv f) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(c)), hi = vmovl_high_u8(c);
    f = vfmaq_f32(f, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), vld1q_f32(x));
    f = vfmaq_f32(f, vcvtq_f32_u32(vmovl_high_u16(lo)), vld1q_f32(x + 4));
    f = vfmaq_f32(f, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), vld1q_f32(x + 8));
    return vfmaq_f32(f, vcvtq_f32_u32(vmovl_high_u16(hi)), vld1q_f32(x + 12));
  }
  static constexpr int kFloats = 4;
  static Fv f_load(const float *p) { return vld1q_f32(p); }
  static Fv f_load(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static Fv f_fma(Fv a, Fv b, Fv c) { return vfmaq_f32(c, a, b); }
  static Fv f_add(Fv a, Fv b) { return vaddq_f32(a, b); }
  static Fv f_set1(float v) { return vdupq_n_f32(v); }
  static void f_store(float *p, Fv f) { vst1q_f32(p, f); }
  static void f_store(uint16_t *p, Fv f) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(f))); }
  static float hsum(Fv f) { return vaddvq_f32(f); }
  static Codes bxor(Codes a, Codes b) { return veorq_u8(a, b); }
  static uint64_t low64(Codes a) { return vgetq_lane_u64(vreinterpretq_u64_u8(a), 0); }
};

}  // namespace lb
