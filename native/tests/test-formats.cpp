// Packing round trips, the documented byte layout, half-precision conversions, tensor storage,
// the libm-free exp and softmax of the model's SiLU and attention.
#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "../core/fastmath.h"
#include "../core/formats.h"
#include "../core/qtensor.h"
#include "every-isa.h"
#include "harness.h"

using namespace lb;

static const int64_t kCols[] = {1, 2, 3, 7, 8, 31, 32, 33, 44, 63, 64, 65, 100, 127, 128,
                                129, 172, 255, 256, 257, 511, 512, 513, 576, 1000};

static std::vector<uint8_t> random_codes(lbtest::rng &r, const format_traits &t, int64_t n) {
  std::vector<uint8_t> c(n);
  for (auto &v : c) v = (uint8_t)r.below(t.n_codes);
  return c;
}

TEST(pack_unpack_round_trip) {
  lbtest::rng r(1);
  for (int f = FORMAT_B1; f < FORMAT_COUNT; f++) {
    const format_traits &t = traits((format)f);
    for (int64_t cols : kCols) {
      std::vector<uint8_t> codes = random_codes(r, t, cols), back(cols);
      std::vector<uint8_t> packed(row_bytes((format)f, cols));
      pack_row((format)f, codes.data(), cols, packed.data());
      unpack_row((format)f, packed.data(), cols, back.data());
      CHECK_MSG(codes == back, std::string(t.name) + " cols " + std::to_string(cols));
      CHECK(packed.size() == (size_t)((cols * t.code_bits + 7) / 8) || f == FORMAT_B3);
    }
  }
}

// The layout spelled out independently of plane_slot(): a 64-column chunk of width w puts column
// j + 8w*k in field k of byte j; a last chunk of T columns uses stride B = ceil(T*w/8).
static std::vector<uint8_t> plane_by_rule(const std::vector<uint8_t> &vals, int w) {
  const int64_t cols = (int64_t)vals.size();
  std::vector<uint8_t> out;
  for (int64_t start = 0; start < cols; start += 64) {
    const int64_t T = std::min<int64_t>(64, cols - start), B = (T * w + 7) / 8;
    for (int64_t j = 0; j < B; j++) {
      uint8_t byte = 0;
      for (int k = 0; k < 8 / w; k++)
        if (j + B * k < T) byte |= (uint8_t)(vals[start + j + B * k] << (w * k));
      out.push_back(byte);
    }
  }
  return out;
}

TEST(layout_matches_documented_rule) {
  lbtest::rng r(2);
  for (int f = FORMAT_B1; f < FORMAT_COUNT; f++) {
    const format_traits &t = traits((format)f);
    for (int64_t cols : kCols) {
      std::vector<uint8_t> codes = random_codes(r, t, cols);
      std::vector<uint8_t> packed(row_bytes((format)f, cols)), expect;
      pack_row((format)f, codes.data(), cols, packed.data());
      int low = 0;
      for (int p = 0; p < t.n_planes; p++) {
        std::vector<uint8_t> vals(cols);
        for (int64_t j = 0; j < cols; j++) vals[j] = (codes[j] >> low) & ((1 << t.plane_bits[p]) - 1);
        std::vector<uint8_t> plane = plane_by_rule(vals, t.plane_bits[p]);
        expect.insert(expect.end(), plane.begin(), plane.end());
        low += t.plane_bits[p];
      }
      CHECK_MSG(packed == expect, std::string(t.name) + " cols " + std::to_string(cols));
    }
  }
  // One hand-written example: b2, 64 columns, byte 0 holds columns 0, 16, 32, 48.
  std::vector<uint8_t> codes(64, 0), packed(16);
  codes[0] = 1, codes[16] = 2, codes[32] = 3, codes[48] = 1;
  pack_row(FORMAT_B2, codes.data(), 64, packed.data());
  CHECK(packed[0] == (1 | 2 << 2 | 3 << 4 | 1 << 6));
}

TEST(half_conversions) {
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(-2.0f) == 0xc000);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);           // rounds to infinity
  CHECK(f32_to_f16(5.9604645e-8f) == 0x0001);      // smallest subnormal
  CHECK(f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); // tie to even
  CHECK(f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02); // tie to even, upwards
  CHECK(f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80); // tie to even
  CHECK(f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    const float f16 = f16_to_f32((uint16_t)h), b16 = bf16_to_f32((uint16_t)h);
    if (!std::isnan(f16) && f32_to_f16(f16) != h) bad++;
    if (!std::isnan(b16) && f32_to_bf16(b16) != h) bad++;
  }
  CHECK_MSG(bad == 0, std::to_string(bad) + " half values do not round trip");
}

#if defined(__linux__)
// This process's resident bytes (/proc/self/statm), or 0 where unreadable.
static size_t resident_bytes() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return got == 2 ? resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}
#endif

// Large storage starts on a 2 MiB boundary and ends in zeroed padding, and creating it makes only
// the padding resident: a transparent huge page there would pin up to 2 MiB of zeros per tensor.
TEST(large_storage_alignment_and_padding) {
  constexpr size_t kHuge = aligned_buffer::kHugePage;
  const size_t bytes = 2 * kHuge;
#if defined(__linux__)
  const size_t before = resident_bytes();
#endif
  aligned_buffer buf(bytes);
  CHECK((uintptr_t)buf.data() % kHuge == 0);
  for (size_t i = 0; i < aligned_buffer::kPadding; i++) CHECK(buf.data()[bytes + i] == 0);
#if defined(__linux__)
  const size_t after = resident_bytes();
  if (before > 0 && after > 0)
    CHECK_MSG(after < before + 256 * 1024, std::to_string((after - before) >> 10) + " KiB became resident for 64 bytes of padding");
#endif
}

// exp_fast against double exp: within 3 float ulps over the range it promises, clamped beyond,
// exact at 0, and rounding halves to even.
TEST(exp_fast_matches_exp) {
  CHECK(round_even(2.5f) == 2.0f && round_even(3.5f) == 4.0f && round_even(-2.5f) == -2.0f);
  CHECK(exp_fast(0.0f) == 1.0f);
  double worst = 0;
  for (float x = -87.0f; x <= 87.0f; x += 0.001953125f) {
    const double want = std::exp((double)x);
    worst = std::max(worst, std::fabs(exp_fast(x) - want) / want);
  }
  CHECK_MSG(worst <= 3 * 5.96e-8, "exp_fast relative error " + std::to_string(worst));
  CHECK(exp_fast(-1000.0f) > 0 && exp_fast(-1000.0f) <= 1.0e-37f);
  CHECK(std::isfinite(exp_fast(1000.0f)) && exp_fast(1000.0f) >= 1.0e37f);
}

// softmax (every ISA's) and its log-sum-exp against a double reference, at lengths on and off its 8 partials, with a large spread
// (entries far below the max underflow to ~0, as they should).
TEST(softmax_matches_double) {
  lbtest::rng r(5);
  for (int n : {1, 2, 7, 8, 9, 31, 64, 200}) {
    std::vector<float> v(n);
    for (auto &x : v) x = 12.0f * r.normal();
    std::vector<double> want(n);
    double max = v[0], sum = 0;
    for (float x : v) max = std::max(max, (double)x);
    for (int i = 0; i < n; i++) sum += (want[i] = std::exp(v[i] - max));
    lbtest::for_each_isa([&](const kernel_table &k) {
      std::vector<float> got = v;
      const float lse = k.softmax(got.data(), n);
      double worst = 0, total = 0;
      for (int i = 0; i < n; i++) worst = std::max(worst, std::fabs(got[i] - want[i] / sum)), total += got[i];
      CHECK_MSG(worst <= 1e-6 && std::fabs(total - 1) <= 1e-5, std::string(isa_name(k.id)) + " softmax n=" +
                                                                    std::to_string(n) + " off by " + std::to_string(worst));
      CHECK_MSG(std::fabs(lse - (max + std::log(sum))) <= 1e-6 * std::fabs(max) + 1e-6,
                std::string(isa_name(k.id)) + " softmax n=" + std::to_string(n) + " log-sum-exp");
    });
  }
}
