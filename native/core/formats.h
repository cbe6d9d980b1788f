// Weight formats: the one table that describes every format, and the packing rule all kernels read.
//
// A quantized weight is w = d * (c + o): d is the scale of its row (or of its group of columns),
// c an unsigned code in [0, 2^code_bits) and o the format's offset. ParetoQ's grids (arXiv
// 2502.02631; research/paretoq-sharp.md A2/A3) in this form, with alpha the paper's learned scale:
//
//   format  levels q       as d*(c+o)                 d from alpha
//   b1      {-1,+1}        c in {0,1},   o = -0.5     d = 2*alpha
//   t158    {-1,0,+1}      c in {0,1,2}, o = -1       d = 2*alpha/3
//   b2      {-2..1}+0.5    c in {0..3},  o = -1.5     d = alpha/2
//   b3      {-4..3}        c in {0..7},  o = -4       d = alpha
//   b4      {-8..7}        c in {0..15}, o = -8       d = alpha
//
// so every integer kernel uses one identity: sum_j w_j x_j = d * (sum_j c_j x_j + o * sum_j x_j).
//
// Packing (docs/KERNELS.md explains why): codes are split into planes of 1, 2 or 4 bits (b3 = a
// 2-bit plane holding c & 3 and a 1-bit plane holding c >> 2). Each row stores plane 0 for all its
// columns, then plane 1. A plane of width w packs 64 columns into a chunk of 8*w bytes: byte j
// holds column j + 8*w*k in bits [w*k, w*k + w). A last chunk of T < 64 columns uses B = ceil(T*w/8)
// bytes and holds column j + B*k in field k of byte j. Rows are contiguous and unpadded.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lb {

enum format : int32_t {
  FORMAT_F32 = 0,
  FORMAT_F16 = 1,
  FORMAT_B1 = 2,
  FORMAT_T158 = 3,
  FORMAT_B2 = 4,
  FORMAT_B3 = 5,
  FORMAT_B4 = 6,
  FORMAT_COUNT
};

constexpr int kMaxPlanes = 2;
constexpr int kChunkCols = 64;  // columns per packing chunk, for every plane width

struct format_traits {
  const char *name;
  float bits_per_weight;  // nominal, without scales
  bool quantized;
  int code_bits;          // bits of a code c (0 for float formats)
  int n_codes;            // valid codes are [0, n_codes)
  float offset;           // o in w = d * (c + o)
  int n_planes;
  int plane_bits[kMaxPlanes];  // width of each plane, low bits first
  int float_bytes;        // bytes per weight for float formats
  // Round-to-nearest initial scale (ParetoQ train.py): d = rtn_factor * (mean|w| or max|w|).
  bool rtn_from_mean;
  float rtn_factor;
};

// The table, usable at compile time by kernel templates.
inline constexpr format_traits kFormatTraits[FORMAT_COUNT] = {
    // name  bpw   quant cbits ncodes offset planes widths fbytes rtn: mean? factor
    {"f32", 32.0f, false, 0, 0, 0.0f, 0, {0, 0}, 4, false, 0.0f},
    {"f16", 16.0f, false, 0, 0, 0.0f, 0, {0, 0}, 2, false, 0.0f},
    // alpha = mean|w|, d = 2 alpha
    {"b1", 1.0f, true, 1, 2, -0.5f, 1, {1, 0}, 0, true, 2.0f},
    // alpha = max|w|, d = alpha / 1.5
    {"t158", 2.0f, true, 2, 3, -1.0f, 1, {2, 0}, 0, false, 1.0f / 1.5f},
    // alpha = max|w|, d = alpha / 2
    {"b2", 2.0f, true, 2, 4, -1.5f, 1, {2, 0}, 0, false, 0.5f},
    // alpha = max|w| / 3 = d
    {"b3", 3.0f, true, 3, 8, -4.0f, 2, {2, 1}, 0, false, 1.0f / 3.0f},
    // alpha = max|w| / 7 = d
    {"b4", 4.0f, true, 4, 16, -8.0f, 1, {4, 0}, 0, false, 1.0f / 7.0f},
};

inline const format_traits &traits(format f) { return kFormatTraits[f]; }
bool format_from_name(const char *name, format *out);

inline bool format_valid(int32_t f) { return f >= 0 && f < FORMAT_COUNT; }

// Bytes one plane of width `w` bits takes for `cols` columns (a partial chunk rounds up).
inline size_t plane_row_bytes(int w, int64_t cols) { return (size_t)((cols * w + 7) / 8); }

// Bytes of one packed row (all planes, or the floats of an unquantized row). Inline: kernels
// compute row addresses with it.
inline size_t row_bytes(format f, int64_t cols) {
  const format_traits &t = traits(f);
  if (!t.quantized) return (size_t)cols * t.float_bytes;
  size_t n = 0;
  for (int p = 0; p < t.n_planes; p++) n += plane_row_bytes(t.plane_bits[p], cols);
  return n;
}

// Where column `col` lives in a plane of width w for a row of `cols` columns.
struct code_slot {
  size_t byte;  // byte index within the plane
  int shift;    // bit position of the field within that byte
};
code_slot plane_slot(int w, int64_t cols, int64_t col);

// Scalar packing of one row of codes (the definition; used by quantizers, loaders and tests).
void pack_row(format f, const uint8_t *codes, int64_t cols, uint8_t *dst);
void unpack_row(format f, const uint8_t *src, int64_t cols, uint8_t *codes);

// Number of scale groups of a row: group == 0 means one scale for the whole row.
inline int64_t groups_per_row(int64_t cols, int64_t group) {
  return group == 0 ? 1 : (cols + group - 1) / group;
}

// IEEE half and bfloat16 conversions (round to nearest even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);

// The precision a weight came from: exact quantization verifies d*(c+o) rounds back to it.
enum source_dtype : int32_t { SOURCE_F32 = 0, SOURCE_F16 = 1, SOURCE_BF16 = 2 };
float round_to_source(float v, source_dtype s);

}  // namespace lb
