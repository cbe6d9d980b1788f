// AVX2 kernels (Haswell and later: AVX2, FMA, F16C). Fields are extracted with shift and mask;
// products use VPMADDUBSW (u8 x s8 -> s16 pairs) summed in 16 bits across the fields of a load —
// at most 8 * 2 * 15 * 127 < 2^15, so nothing saturates — and widened once per load with
// VPMADDWD. Matches kernels/ref/ref.cpp.
#include <immintrin.h>

#include "../simd-gemm.h"

namespace lb {
namespace {

struct VecAvx2 {
  static constexpr int kBytes = 32;
  // VPMADDUBSW sums pairs in 16 bits: fields are shifted down to plain codes (no in-place).
  static constexpr bool kFieldsInPlace = false;
  static constexpr int kAccs = 4, kSums = 8;  // 4 x 8 lanes = 32 activation classes per row
  static constexpr int kGemvRows = 2, kGemmRows = 1, kGemmVecs = 2;
  static constexpr bool kFusedB3 = false;
  using Codes = __m256i;
  using Sum = __m256i;   // 32-bit lanes
  using Part = __m256i;  // 16-bit partial sums of one load, widened into Sum by part_end
  using Fv = __m256;

  // No interleaved GEMV: measured 1.2-1.3x faster on 1280-column rows but 0.7-0.9x on 8192-column
  // ones (VPMADDUBSW + VPMADDWD + add per field and 32 bytes; docs/KERNELS.md).
  static constexpr bool kInterleaved = false;

  static Codes load(const uint8_t *p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)); }
  template <int W, int K>
  static Codes field(Codes v) {
    const __m256i mask = _mm256_set1_epi8((char)((1 << W) - 1));
    if constexpr (K == 0) return _mm256_and_si256(v, mask);
    else return _mm256_and_si256(_mm256_srli_epi16(v, W * K), mask);
  }
  static Sum sum_zero() { return _mm256_setzero_si256(); }
  static constexpr bool kPartIsSum = false;
  static Part part_zero() { return _mm256_setzero_si256(); }
  static Part dot(Part acc, Codes c, const int8_t *x) {
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(c, load(reinterpret_cast<const uint8_t *>(x))));
  }
  static void part_end(Sum &sum, Part part) { sum = _mm256_add_epi32(sum, _mm256_madd_epi16(part, _mm256_set1_epi16(1))); }
  static Fv f_zero() { return _mm256_setzero_ps(); }
  static Fv f_scale(Sum sum, const float *s, Fv f) { return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_loadu_ps(s), f); }
  static Fv f_scale_by(Sum sum, const float *s, float g, Fv f) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(_mm256_loadu_ps(s), _mm256_set1_ps(g)), f);
  }
  static Fv f_add_scaled(Fv part, float g, Fv f) { return _mm256_fmadd_ps(part, _mm256_set1_ps(g), f); }
  static Fv f_codes(Codes c, const float *x, Fv f) {
    const __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
    f = _mm256_fmadd_ps(to_float(lo), _mm256_loadu_ps(x), f);
    f = _mm256_fmadd_ps(to_float(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), f);
    f = _mm256_fmadd_ps(to_float(hi), _mm256_loadu_ps(x + 16), f);
    return _mm256_fmadd_ps(to_float(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), f);
  }
  static constexpr int kFloats = 8;
  static Fv f_load(const float *p) { return _mm256_loadu_ps(p); }
  static Fv f_load(const uint16_t *p) { return half(p); }
  static Fv f_fma(Fv a, Fv b, Fv c) { return _mm256_fmadd_ps(a, b, c); }
  static Fv f_add(Fv a, Fv b) { return _mm256_add_ps(a, b); }
  static Fv f_set1(float v) { return _mm256_set1_ps(v); }
  static void f_store(float *p, Fv f) { _mm256_storeu_ps(p, f); }
  static void f_store(uint16_t *p, Fv f) {
    _mm_storeu_si128(reinterpret_cast<__m128i *>(p), _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static float hsum(Fv f) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Codes bxor(Codes a, Codes b) { return _mm256_xor_si256(a, b); }
  static uint64_t low64(Codes a) { return (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(a)); }

 private:
  static __m256 to_float(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }
  static __m256 half(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
  }
};

}  // namespace

const kernel_table &kernels_avx2() {
  static const kernel_table table = simd::make_table<VecAvx2>(ISA_AVX2);
  return table;
}

}  // namespace lb
