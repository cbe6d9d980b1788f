// QTensor storage, shape checks, views and dequantization.
#include "qtensor.h"

#include <algorithm>
#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

#include "pool.h"

namespace lb {

aligned_buffer::aligned_buffer(size_t bytes) : size_(bytes) {
  // Large tensors start on a 2 MiB boundary and ask for transparent huge pages over their whole
  // 2 MiB extents: kernels stream them, and 4 KiB pages would cost a TLB miss every few rows. The
  // padding past the end stays on small pages: a huge page there would keep up to 2 MiB of zeros
  // resident per tensor (150 MiB on a 1B model).
  const bool huge = bytes >= kHugePage;
  const size_t total = footprint(bytes);
  void *p = nullptr;
  if (posix_memalign(&p, huge ? kHugePage : kAlign, total) != 0) throw std::bad_alloc();
  data_ = static_cast<uint8_t *>(p);
#if defined(__linux__)
  if (huge) madvise(data_, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
  std::memset(data_ + bytes, 0, total - bytes);
}

aligned_buffer::aligned_buffer(std::shared_ptr<aligned_buffer> arena, size_t offset, size_t bytes)
    : size_(bytes), arena_(std::move(arena)) {
  if (offset % kAlign != 0 || offset + footprint(bytes) > arena_->size() + kPadding)
    throw std::invalid_argument("aligned_buffer: slice outside its arena");
  data_ = arena_->data() + offset;
  std::memset(data_ + bytes, 0, kPadding);
}

aligned_buffer::~aligned_buffer() {
  if (!arena_) std::free(data_);
}

size_t qtensor::bytes() const {
  size_t n = (size_t)rows * row_stride();
  if (traits(fmt).quantized) n += (size_t)rows * n_groups() * sizeof(float);
  return n;
}

// Largest tensor we accept: 2^40 bytes of codes, far above any model yet far below overflow.
static constexpr int64_t kMaxTensorBytes = int64_t(1) << 40;

std::string qtensor_check_shape(format f, int64_t rows, int64_t cols, int64_t group) {
  if (!format_valid(f)) return "unknown format";
  if (rows < 1 || cols < 1) return "rows and cols must be at least 1";
  if (cols > kMaxTensorBytes || rows > kMaxTensorBytes / (int64_t)row_bytes(f, cols) ||
      rows > kMaxTensorBytes / cols)
    return "rows x cols is too large (limit 2^40 bytes)";
  if (!traits(f).quantized) return group == 0 ? "" : "float formats have no scale groups";
  if (group < 0 || group % 32 != 0) return "group must be 0 (one scale per row) or a multiple of 32";
  // SIMD kernels need every 4-column lane inside one group; a group that is not a multiple of
  // 64 would split the last, partial chunk of a row unless that chunk is 32 columns.
  if (group % 64 != 0 && cols % 32 != 0)
    return "a group that is not a multiple of 64 needs cols to be a multiple of 32";
  return "";
}

qtensor qtensor_alloc(format f, int64_t rows, int64_t cols, int64_t group) {
  std::string problem = qtensor_check_shape(f, rows, cols, group);
  if (!problem.empty()) throw std::invalid_argument(problem);
  qtensor t;
  t.fmt = f;
  t.rows = rows;
  t.cols = cols;
  t.group = group;
  t.data = std::make_shared<aligned_buffer>((size_t)rows * row_bytes(f, cols));
  if (traits(f).quantized)
    t.scales = std::make_shared<aligned_buffer>((size_t)rows * t.n_groups() * sizeof(float));
  return t;
}

qtensor qtensor_view(const qtensor &base, int64_t row_begin, int64_t row_count) {
  if (row_begin < 0 || row_count < 1 || row_begin + row_count > base.rows)
    throw std::out_of_range("view rows out of range");
  if (base.interleaved) throw std::invalid_argument("an interleaved tensor has no row views");
  qtensor v = base;
  v.row0 = base.row0 + row_begin;
  v.rows = row_count;
  return v;
}

void qtensor_dequantize(const qtensor &t, int64_t r0, int64_t r1, float *out) {
  const format_traits &tr = traits(t.fmt);
  const int64_t cols = t.cols;
  std::vector<uint8_t> codes(tr.quantized ? cols : 0), row(t.interleaved ? t.row_stride() : 0);
  for (int64_t r = r0; r < r1; r++, out += cols) {
    const uint8_t *src = row.empty() ? t.row(r) : row.data();
    if (!row.empty()) qtensor_copy_rows(t, r, r + 1, row.data());
    if (t.fmt == FORMAT_F32) {
      std::memcpy(out, src, cols * sizeof(float));
    } else if (t.fmt == FORMAT_F16) {
      const uint16_t *h = reinterpret_cast<const uint16_t *>(src);
      for (int64_t j = 0; j < cols; j++) out[j] = f16_to_f32(h[j]);
    } else {
      unpack_row(t.fmt, src, cols, codes.data());
      const float *d = t.row_scales(r);
      const int64_t g = t.group ? t.group : cols;
      for (int64_t j = 0; j < cols; j++) out[j] = d[j / g] * ((float)codes[j] + tr.offset);
    }
  }
}

bool qtensor_interleavable(const qtensor &t) {
  const format_traits &tr = traits(t.fmt);
  return tr.quantized && t.group == 0 && !t.interleaved && t.row0 == 0 &&
         t.rows % kInterleaveRows == 0 && t.cols % kChunkCols == 0 && t.data &&
         t.data->size() == (size_t)t.rows * t.row_stride();
}

namespace {

// Bytewise on 32-bit words (4 columns of a class at a time): bits [from, from + n) of every byte
// of v, moved to bit `to`.
uint32_t bits(uint32_t v, int from, int n, int to) {
  const uint32_t mask = 0x01010101u * ((1u << n) - 1);
  return ((v >> from) & mask) << to;
}

}  // namespace

// Row-major b3 chunk: 2-bit words lo[m] (byte j, field k: column 16k + 4m + j), 1-bit words hi[m]
// (byte j, bit k: column 8k + 4m + j). Set m of the fused chunk takes its even classes' low bits
// from lo[m], its odd classes' from lo[2 + m], and its high bits from hi[m].
void b3_fuse_chunk(const uint32_t *lo, const uint32_t *hi, uint32_t *out) {
  for (int m = 0; m < 2; m++) {
    const uint32_t e = lo[m], o = lo[2 + m], h = hi[m];
    out[3 * m] = bits(e, 0, 2, 0) | bits(h, 0, 1, 2) | bits(o, 0, 2, 3) | bits(h, 1, 1, 5) | bits(e, 6, 2, 6);
    out[3 * m + 1] = bits(e, 2, 2, 0) | bits(h, 2, 1, 2) | bits(o, 2, 2, 3) | bits(h, 3, 1, 5) | bits(o, 6, 2, 6);
    out[3 * m + 2] = bits(e, 4, 2, 0) | bits(h, 4, 1, 2) | bits(o, 4, 2, 3) | bits(h, 5, 1, 5) | bits(h, 6, 2, 6);
  }
}

void b3_unfuse_chunk(const uint32_t *in, uint32_t *lo, uint32_t *hi) {
  for (int m = 0; m < 2; m++) {
    const uint32_t a = in[3 * m], b = in[3 * m + 1], c = in[3 * m + 2];
    lo[m] = bits(a, 0, 2, 0) | bits(b, 0, 2, 2) | bits(c, 0, 2, 4) | bits(a, 6, 2, 6);
    lo[2 + m] = bits(a, 3, 2, 0) | bits(b, 3, 2, 2) | bits(c, 3, 2, 4) | bits(b, 6, 2, 6);
    hi[m] = bits(a, 2, 1, 0) | bits(a, 5, 1, 1) | bits(b, 2, 1, 2) | bits(b, 5, 1, 3) | bits(c, 2, 1, 4) | bits(c, 5, 1, 5) |
            bits(c, 6, 2, 6);
  }
}

namespace {

// A packed row's `words` 4-byte words in their interleaved order (fused for b3), and back.
void row_to_interleaved(format f, const uint8_t *row, int64_t cols, size_t words, uint32_t *out) {
  if (!interleaved_fused(f)) return (void)std::memcpy(out, row, words * 4);
  const int64_t chunks = cols / kChunkCols;
  for (int64_t c = 0; c < chunks; c++) {
    uint32_t lo[4], hi[2];
    std::memcpy(lo, row + 16 * c, sizeof lo);
    std::memcpy(hi, row + 16 * chunks + 8 * c, sizeof hi);
    b3_fuse_chunk(lo, hi, out + 6 * c);
  }
}

void interleaved_to_row(format f, const uint32_t *in, int64_t cols, size_t words, uint8_t *row) {
  if (!interleaved_fused(f)) return (void)std::memcpy(row, in, words * 4);
  const int64_t chunks = cols / kChunkCols;
  for (int64_t c = 0; c < chunks; c++) {
    uint32_t lo[4], hi[2];
    b3_unfuse_chunk(in + 6 * c, lo, hi);
    std::memcpy(row + 16 * c, lo, sizeof lo);
    std::memcpy(row + 16 * chunks + 8 * c, hi, sizeof hi);
  }
}

}  // namespace

void qtensor_interleave(qtensor &t) {
  if (!qtensor_interleavable(t)) throw std::invalid_argument("qtensor_interleave: tensor cannot be interleaved");
  const size_t stride = t.row_stride(), words = stride / 4, group_bytes = kInterleaveRows * stride;
  // On the pool: a model's weights take a few hundred ms on one core.
  const int64_t groups = t.rows / kInterleaveRows, per_task = 64;
  thread_pool::global().run((groups + per_task - 1) / per_task, default_threads(), [&](int64_t task) {
    std::vector<uint32_t> group(words * kInterleaveRows), ordered(words);
    for (int64_t g = task * per_task; g < std::min(groups, (task + 1) * per_task); g++) {
      uint8_t *base = t.data->data() + g * group_bytes;
      for (int l = 0; l < kInterleaveRows; l++) {
        row_to_interleaved(t.fmt, base + l * stride, t.cols, words, ordered.data());
        for (size_t m = 0; m < words; m++) group[m * kInterleaveRows + l] = ordered[m];
      }
      std::memcpy(base, group.data(), group_bytes);
    }
  });
  t.interleaved = true;
}

qtensor qtensor_interleaved_copy(const qtensor &t) {
  if (!qtensor_interleavable(t)) throw std::invalid_argument("qtensor_interleave: tensor cannot be interleaved");
  qtensor copy = qtensor_alloc(t.fmt, t.rows, t.cols, t.group);
  std::memcpy(copy.data->data(), t.data->data(), copy.data->size());
  std::memcpy(copy.scales->data(), t.scales->data(), copy.scales->size());
  qtensor_interleave(copy);
  return copy;
}

void qtensor_copy_rows(const qtensor &t, int64_t r0, int64_t r1, uint8_t *out) {
  const size_t stride = t.row_stride();
  if (!t.interleaved) {
    std::memcpy(out, t.row(r0, stride), (size_t)(r1 - r0) * stride);
    return;
  }
  const size_t words = stride / 4;
  std::vector<uint32_t> ordered(words);
  for (int64_t r = r0; r < r1; r++, out += stride) {
    const uint8_t *group = t.data->data() + (r / kInterleaveRows) * kInterleaveRows * stride;
    const int l = (int)(r % kInterleaveRows);
    for (size_t m = 0; m < words; m++) std::memcpy(&ordered[m], group + (m * kInterleaveRows + l) * 4, 4);
    interleaved_to_row(t.fmt, ordered.data(), t.cols, words, out);
  }
}

}  // namespace lb
