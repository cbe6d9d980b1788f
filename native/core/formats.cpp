// The format table and the scalar packing rule (see formats.h).
#include "formats.h"

#include <cmath>
#include <cstring>

namespace lb {

bool format_from_name(const char *name, format *out) {
  for (int i = 0; i < FORMAT_COUNT; i++) {
    if (std::strcmp(kFormatTraits[i].name, name) == 0) {
      *out = (format)i;
      return true;
    }
  }
  return false;
}

code_slot plane_slot(int w, int64_t cols, int64_t col) {
  const int64_t chunk = col / kChunkCols;
  const int64_t start = chunk * kChunkCols;
  const int64_t width = cols - start < kChunkCols ? cols - start : kChunkCols;  // T
  const int64_t stride = (width * w + 7) / 8;                                   // B
  const int64_t i = col - start;
  return {(size_t)(start * w / 8 + i % stride), (int)(w * (i / stride))};
}

void pack_row(format f, const uint8_t *codes, int64_t cols, uint8_t *dst) {
  const format_traits &t = traits(f);
  std::memset(dst, 0, row_bytes(f, cols));
  int low_bits = 0;
  for (int p = 0; p < t.n_planes; p++) {
    const int w = t.plane_bits[p];
    const unsigned mask = (1u << w) - 1;
    for (int64_t j = 0; j < cols; j++) {
      code_slot s = plane_slot(w, cols, j);
      dst[s.byte] |= (uint8_t)(((codes[j] >> low_bits) & mask) << s.shift);
    }
    dst += plane_row_bytes(w, cols);
    low_bits += w;
  }
}

void unpack_row(format f, const uint8_t *src, int64_t cols, uint8_t *codes) {
  const format_traits &t = traits(f);
  std::memset(codes, 0, (size_t)cols);
  int low_bits = 0;
  for (int p = 0; p < t.n_planes; p++) {
    const int w = t.plane_bits[p];
    const unsigned mask = (1u << w) - 1;
    for (int64_t j = 0; j < cols; j++) {
      code_slot s = plane_slot(w, cols, j);
      codes[j] |= (uint8_t)(((src[s.byte] >> s.shift) & mask) << low_bits);
    }
    src += plane_row_bytes(w, cols);
    low_bits += w;
  }
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions, exact and round-to-nearest-even (no dependence on F16C).

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf / nan
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal half: value = man * 2^-24
    float v = std::ldexp((float)man, -24);
    std::memcpy(&u, &v, 4);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00;       // nan
  if (abs >= 0x477ff000u) return sign | 0x7c00;      // overflow (>= 65520 rounds to inf)
  if (abs < 0x38800000u) {                           // below the smallest normal half
    float a;
    std::memcpy(&a, &abs, 4);
    return sign | (uint16_t)std::nearbyint(std::ldexp(a, 24));  // subnormal (or zero)
  }
  // Normal: drop 13 mantissa bits with round-half-even; a carry into the exponent is correct.
  const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1);
  return sign | (uint16_t)((rounded - (112u << 23)) >> 13);
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // keep nan a nan
  u += 0x7fffu + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

float round_to_source(float v, source_dtype s) {
  switch (s) {
    case SOURCE_F16: return f16_to_f32(f32_to_f16(v));
    case SOURCE_BF16: return bf16_to_f32(f32_to_bf16(v));
    default: return v;
  }
}

}  // namespace lb
