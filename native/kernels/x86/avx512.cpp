// AVX-512 kernels (Ice Lake / Zen 4 class: F, BW, VL, DQ, VNNI, VBMI, GFNI). Fields are
// extracted with one GFNI affine byte transform each and multiplied with VPDPBUSD
// (u8 codes x s8 activations, four products per 32-bit lane). Matches kernels/ref/ref.cpp.
#include <immintrin.h>

#include "../simd-gemm.h"

#ifndef LB_FIELD_GFNI
#define LB_FIELD_GFNI 0
#endif

namespace lb {
namespace {

// GF(2) matrix for gf2p8affine that moves bits [W*K, W*K + W) of every byte to bits [0, W):
// output bit i is the parity of (matrix byte 7-i AND input byte).
constexpr long long field_matrix(int w, int k) {
  unsigned long long m = 0;
  for (int i = 0; i < w; i++) m |= (unsigned long long)(1u << (w * k + i)) << (8 * (7 - i));
  return (long long)m;
}

struct VecAvx512 {
  static constexpr int kBytes = 64;
  // Fields stay in place and each keeps its sums: F x 16 activation classes per row (64 for b2).
  static constexpr bool kFieldsInPlace = true;
  static constexpr int kAccs = 1, kSums = 24;
  static constexpr int kGemvRows = 4, kGemmRows = 4, kGemmVecs = 2;
  using Codes = __m512i;
  using Sum = __m512i;
  using Fv = __m512;

  // The empty asm pins the loaded bytes to a register: otherwise GCC folds the load into every
  // field's AND and reads the same 64 bytes once per field.
  static Codes load(const uint8_t *p) {
    Codes v = _mm512_loadu_si512(p);
    __asm__("" : "+v"(v));
    return v;
  }
  static void store(uint8_t *p, Codes v) { _mm512_storeu_si512(p, v); }
  template <int W, int K>
  static Codes field(Codes v) {
    const __m512i mask = _mm512_set1_epi8((char)((1 << W) - 1));
    if constexpr (K == 0)
      return _mm512_and_si512(v, mask);
    else if constexpr (LB_FIELD_GFNI)
      return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(field_matrix(W, K)), 0);
    else
      return _mm512_and_si512(_mm512_srli_epi16(v, W * K), mask);
  }
  template <int W, int K>
  static Codes field_in_place(Codes v) {
    return _mm512_and_si512(v, _mm512_set1_epi8((char)(((1 << W) - 1) << (W * K))));
  }
  static Sum sum_zero() { return _mm512_setzero_si512(); }
  static constexpr bool kPartIsSum = true;
  // Inline asm ties the accumulator to one register: with the intrinsic, GCC 12 copies every
  // accumulator twice per loop iteration (a move per multiply). The activations are a plain load
  // that the compiler shares between the rows of a tile.
  static Sum dot(Sum acc, Codes c, const int8_t *x) {
    const __m512i xv = _mm512_loadu_si512(x);
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(c), "v"(xv));
    return acc;
  }
  // The interleaved GEMV (16 rows per load).
  static constexpr bool kInterleaved = true;
  static constexpr int kInterleaveSums = 8, kInterleaveSumsMax = 16;
  // The 4 activation bytes stay in memory: VPDPBUSD broadcasts them as part of its load
  // ({1to16}). A separate VPBROADCASTD per multiply costs a vector slot (1.2 against 1.0 cycles
  // per multiply-add with its mask, measured in a loop of independent chains here).
  using Bcast = const int8_t *;
  static Bcast broadcast4(const int8_t *x) { return x; }
  static Sum dot4(Sum acc, Codes c, Bcast x) {
    typedef int32_t __attribute__((may_alias)) word;
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(c), "m"(*reinterpret_cast<const word *>(x)));
    return acc;
  }
  static Sum sum_add(Sum a, Sum b) { return _mm512_add_epi32(a, b); }
  static Fv f_scale1(Sum sum, float s, Fv f) { return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(s), f); }
  static Fv f_zero() { return _mm512_setzero_ps(); }
  static Fv f_scale(Sum sum, const float *s, Fv f) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_loadu_ps(s), f);
  }
  static Fv f_scale_by(Sum sum, const float *s, float g, Fv f) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(_mm512_loadu_ps(s), _mm512_set1_ps(g)), f);
  }
  static Fv f_add_scaled(Fv part, float g, Fv f) { return _mm512_fmadd_ps(part, _mm512_set1_ps(g), f); }
  static Fv f_codes(Codes c, const float *x, Fv f) {
    f = _mm512_fmadd_ps(to_float(_mm512_extracti32x4_epi32(c, 0)), _mm512_loadu_ps(x), f);
    f = _mm512_fmadd_ps(to_float(_mm512_extracti32x4_epi32(c, 1)), _mm512_loadu_ps(x + 16), f);
    f = _mm512_fmadd_ps(to_float(_mm512_extracti32x4_epi32(c, 2)), _mm512_loadu_ps(x + 32), f);
    return _mm512_fmadd_ps(to_float(_mm512_extracti32x4_epi32(c, 3)), _mm512_loadu_ps(x + 48), f);
  }
  static constexpr int kFloats = 16;
  static Fv f_load(const float *p) { return _mm512_loadu_ps(p); }
  static Fv f_load(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))); }
  static Fv f_fma(Fv a, Fv b, Fv c) { return _mm512_fmadd_ps(a, b, c); }
  static Fv f_add(Fv a, Fv b) { return _mm512_add_ps(a, b); }
  static Fv f_set1(float v) { return _mm512_set1_ps(v); }
  static void f_store(float *p, Fv f) { _mm512_storeu_ps(p, f); }
  static void f_store(uint16_t *p, Fv f) {
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(p), _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static float hsum(Fv f) { return _mm512_reduce_add_ps(f); }
  // 3-bit codes: a 2-bit load covers four 64-column chunks, byte j of chunk c holding columns
  // j + 16K; the 1-bit plane holds column j' + 8K' of the chunk at bit K' of its byte j'. So
  // column 16K + j (j < 16) has its high bit at bit 2K + j / 8 of high byte j % 8: one VPERMB
  // copies each chunk's 8 high bytes to both halves of its 16, and the upper halves shift down a
  // bit, leaving bit 2K for every field K.
  static constexpr bool kFusedB3 = true;
  static Codes b3_high(const uint8_t *p) {
    alignas(64) static const uint8_t index[64] = {
        0,  1,  2,  3,  4,  5,  6,  7,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13,
        14, 15, 8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 16, 17, 18, 19,
        20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 24, 25, 26, 27, 28, 29, 30, 31};
    const __m512i bytes = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
    const __m512i spread = _mm512_permutexvar_epi8(_mm512_load_si512(index), bytes);
    // (a 16-bit shift moves a neighbour's bit 0 into bit 7, which no field reads)
    return _mm512_mask_blend_epi8(0xff00ff00ff00ff00ull, spread, _mm512_srli_epi16(spread, 1));
  }
  template <int K>
  static Codes b3_codes(Codes lo, Codes high) {
    const __m512i low = K == 0 ? lo : _mm512_srli_epi16(lo, 2 * K);
    const __m512i top = K == 0 ? _mm512_slli_epi16(high, 2) : K == 1 ? high : _mm512_srli_epi16(high, 2 * K - 2);
    // (low & 3) | (top & ~3), then keep three bits
    const __m512i merged = _mm512_ternarylogic_epi32(_mm512_set1_epi8(3), low, top, 0xca);
    return _mm512_and_si512(merged, _mm512_set1_epi8(7));
  }
  static Codes bxor(Codes a, Codes b) { return _mm512_xor_si512(a, b); }
  static uint64_t low64(Codes a) { return (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(a)); }

 private:
  static __m512 to_float(__m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)); }
};

}  // namespace

const kernel_table &kernels_avx512() {
  static const kernel_table table = simd::make_table<VecAvx512>(ISA_AVX512);
  return table;
}

}  // namespace lb
