// QTensor: a rows x cols weight matrix in one format — packed codes plus per-row (or per-group)
// scales, or plain f32/f16 values. Storage is reference counted so a view can alias the rows of
// another tensor (SHARP reuses a reference layer's weights without a copy).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "formats.h"

namespace lb {

// A 64-byte aligned byte buffer with 64 readable bytes of zero padding after its end, so SIMD
// kernels may load a whole vector at the last row's tail. Either owns its memory or is a slice of
// a larger buffer (an arena), which it keeps alive.
class aligned_buffer {
 public:
  explicit aligned_buffer(size_t bytes);
  // `bytes` at `offset` of arena (a multiple of kAlign; the kPadding bytes after them must lie in
  // the arena, and are zeroed here).
  aligned_buffer(std::shared_ptr<aligned_buffer> arena, size_t offset, size_t bytes);
  ~aligned_buffer();
  aligned_buffer(const aligned_buffer &) = delete;
  aligned_buffer &operator=(const aligned_buffer &) = delete;
  uint8_t *data() { return data_; }
  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }

  static constexpr size_t kAlign = 64;
  static constexpr size_t kPadding = 64;
  static constexpr size_t kHugePage = 2 << 20;
  // Bytes a buffer of `bytes` takes in an arena, padding included.
  static size_t footprint(size_t bytes) { return (bytes + kPadding + kAlign - 1) / kAlign * kAlign; }

 private:
  uint8_t *data_;
  size_t size_;
  std::shared_ptr<aligned_buffer> arena_;  // set for a slice
};

struct qtensor {
  format fmt = FORMAT_F32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t group = 0;  // columns per scale; 0 = one scale per row
  std::shared_ptr<aligned_buffer> data;    // packed rows (or floats), starting at row `row0`
  std::shared_ptr<aligned_buffer> scales;  // float [rows][groups_per_row]; null for float formats
  int64_t row0 = 0;                        // first row of this view within the buffers
  // Rows stored in groups of kInterleaveRows, 4-byte words of their packed rows interleaved
  // (qtensor_interleave): row(r) does not apply; kernels and dequantization read it through
  // qtensor_copy_rows or the interleaved GEMV.
  bool interleaved = false;

  size_t row_stride() const { return row_bytes(fmt, cols); }
  int64_t n_groups() const { return groups_per_row(cols, group); }
  const uint8_t *row(int64_t r) const { return row(r, row_stride()); }
  // Row r given row_stride(), for kernels that compute it once per call rather than per tile.
  const uint8_t *row(int64_t r, size_t stride) const { return data->data() + (size_t)(row0 + r) * stride; }
  uint8_t *row(int64_t r) { return data->data() + (size_t)(row0 + r) * row_stride(); }
  const float *row_scales(int64_t r) const {
    return reinterpret_cast<const float *>(scales->data()) + (row0 + r) * n_groups();
  }
  float *row_scales(int64_t r) {
    return reinterpret_cast<float *>(scales->data()) + (row0 + r) * n_groups();
  }
  // Bytes this tensor's own rows occupy (codes + scales), what a file stores for it.
  size_t bytes() const;
};

// Throws std::invalid_argument / std::length_error with a message on bad shapes.
qtensor qtensor_alloc(format f, int64_t rows, int64_t cols, int64_t group);
qtensor qtensor_view(const qtensor &base, int64_t row_begin, int64_t row_count);

// Validates a (rows, cols, group) triple for format f; returns an empty string when fine.
std::string qtensor_check_shape(format f, int64_t rows, int64_t cols, int64_t group);

// Dequantize rows [r0, r1) into out (row-major, (r1 - r0) x cols floats).
void qtensor_dequantize(const qtensor &t, int64_t r0, int64_t r1, float *out);

// The interleaved layout, for decode GEMVs of short rows: a group of 16 rows stores each 4-byte
// word of its packed rows for all 16 rows together, so one 64-byte vector holds a word of each
// row. A kernel then keeps one row per 32-bit lane: no horizontal sum per row, one float fold per
// group and block of columns (docs/KERNELS.md). Word m of row r lies in group r / 16 (from byte
// (r / 16) * 16 * stride), at byte (m * 16 + r % 16) * 4 of it: the words go chunk by chunk (64
// columns), so a group is one sequential stream, which the hardware prefetcher follows.
//
// b3 is re-encoded: its row-major layout (a 2-bit plane, then a 1-bit plane) costs two
// multiply-adds per weight and two streams per group. Its interleaved rows hold "fused" words
// instead, each 3-bit code whole in one byte where it fits (one multiply-add per code and a
// quarter). A 64-column chunk c of a row is two sets m of three words A, B, C (word 6c + 3m + 0,
// 1, 2 of the row); byte j of set m holds the codes of columns 8K + 4m + j (K = 0..7: the classes
// of the 1-bit activations) as A = c0 | c1 << 3 | low2(c6) << 6, B = c2 | c3 << 3 | low2(c7) << 6,
// C = c4 | c5 << 3 | high(c6) << 6 | high(c7) << 7.
constexpr int kInterleaveRows = 16;
constexpr bool interleaved_fused(format f) { return f == FORMAT_B3; }
// One b3 chunk's six fused words from its row-major words (lo: the four 2-bit words, hi: the two
// 1-bit words), and back.
void b3_fuse_chunk(const uint32_t *lo, const uint32_t *hi, uint32_t *out);
void b3_unfuse_chunk(const uint32_t *in, uint32_t *lo, uint32_t *hi);
// Quantized formats with one scale per row, whole groups of rows and whole 64-column chunks
// (every real model width), on a whole tensor (not a view).
bool qtensor_interleavable(const qtensor &t);
// Rewrites t's storage in place into the interleaved layout and marks t. Every other qtensor on
// the same storage (a shared SHARP weight, the handle it was built from) sees the new layout
// without the mark: the caller must own the storage (the model, which drops those handles).
void qtensor_interleave(qtensor &t);
// An interleaved copy of t (own storage; t is left as it is). Throws like qtensor_interleave.
qtensor qtensor_interleaved_copy(const qtensor &t);
// Packed rows [r0, r1) of t, row after row (row_stride() bytes each), whatever its layout.
void qtensor_copy_rows(const qtensor &t, int64_t r0, int64_t r1, uint8_t *out);

}  // namespace lb
