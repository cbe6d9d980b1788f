// The attention kernels (kernel_table::attention_f32 / attention_f16) of every ISA this CPU runs
// against float64 sums over the same cache values: scores over tiled, transposed keys and the
// weighted mix of value rows, f32 and f16 caches, head sizes and position counts on and off the
// vector, its blocks and the key tile, strided value rows, several queries at once, and masked
// (zero-weight) positions. Also the bulk f32 -> f16 conversion that fills f16 caches.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "../core/formats.h"
#include "every-isa.h"
#include "harness.h"

using namespace lb;

namespace {

inline float cache_value(float v) { return v; }
inline float cache_value(uint16_t v) { return f16_to_f32(v); }
inline void store(float &to, float v) { to = v; }
inline void store(uint16_t &to, float v) { to = f32_to_f16(v); }

// Head size n, cached positions, queries, and the slack in the value rows' stride.
const int64_t kShapes[][4] = {{1, 1, 1, 0}, {7, 5, 3, 2}, {48, 33, 8, 0}, {64, 1, 1, 0}, {64, 40, 4, 64},
                              {100, 9, 2, 3}, {128, 70, 8, 128}, {256, 12, 1, 0}, {64, 96, 5, 7}, {64, 200, 24, 0},
                              {64, 45, 3, 20}, {80, 21, 9, 16}};
constexpr double kTolerance = 2e-6;  // per unit of sum |terms|: float rounding over these lengths

template <class T>
void check_attention(const kernel_table &k, const kernel_table::attention_ops<T> &ops, const char *cache_name) {
  lbtest::rng r(11);
  for (const auto &shape : kShapes) {
    const int64_t n = shape[0], count = shape[1], stride = n + shape[3];
    const int nq = (int)shape[2];
    // Tiles of positions tile_stride apart (other heads' tiles between them in a cache, here
    // values the kernels must not read): values by position (rows stride apart), keys each tile
    // transposed (kernels.h, key_index); the key tile past count holds values the kernels may
    // read but must not use. Scores and weights go in rows ld apart, past count.
    const int64_t tiles = (count + kKeyTile - 1) / kKeyTile, tile_stride = (n + shape[3]) * kKeyTile,
                  value_tile_stride = stride * kKeyTile + shape[3] * n, ld = count + shape[3];
    std::vector<T> cache(tiles * value_tile_stride);
    for (auto &v : cache) store(v, r.normal());
    std::vector<T> keys(tiles * tile_stride);
    for (auto &v : keys) store(v, r.normal());
    std::vector<float> q(nq * n), a(nq * ld), y(nq * n);
    for (auto &v : q) v = r.normal();
    for (auto &v : a) v = r.below(4) == 0 ? 0.0f : r.uniform(0, 1);  // some masked positions
    for (auto &v : y) v = r.normal();
    const kv_rows<T> kv{cache.data(), stride, count, n, value_tile_stride};
    const kv_columns<T> kc{keys.data(), count, n, tile_stride};
    const std::string what = std::string(isa_name(k.id)) + " " + cache_name + " n=" + std::to_string(n) +
                             " count=" + std::to_string(count) + " nq=" + std::to_string(nq);

    std::vector<float> s(nq * ld, -1.0f);
    ops.scores(kc, q.data(), nq, s.data(), ld);
    double worst = 0;
    for (int i = 0; i < nq; i++)
      for (int64_t p = 0; p < count; p++) {
        double dot = 0, size = 0;
        for (int64_t j = 0; j < n; j++) {
          const double t = (double)cache_value(keys[key_index(p, j, tile_stride)]) * q[i * n + j];
          dot += t, size += std::fabs(t);
        }
        const double err = std::fabs(s[i * ld + p] - dot) / (kTolerance * size + 1e-30);
        worst = std::max(worst, err);
      }
    for (int i = 0; i < nq; i++)  // the padding past count is left alone
      for (int64_t p = count; p < ld; p++) CHECK_MSG(s[i * ld + p] == -1.0f, what + " scores wrote past count");
    CHECK_MSG(worst <= 1, what + " scores off by " + std::to_string(worst) + " tolerances");

    std::vector<float> got = y;
    ops.mix(kv, a.data(), ld, nq, got.data());
    worst = 0;
    for (int i = 0; i < nq; i++)
      for (int64_t j = 0; j < n; j++) {
        double want = y[i * n + j], size = std::fabs(want);
        for (int64_t p = 0; p < count; p++) {
          const double t = (double)a[i * ld + p] * cache_value(cache[row_index(p, stride, value_tile_stride) + j]);
          want += t, size += std::fabs(t);
        }
        worst = std::max(worst, std::fabs(got[i * n + j] - want) / (kTolerance * size + 1e-30));
      }
    CHECK_MSG(worst <= 1, what + " mix off by " + std::to_string(worst) + " tolerances");
  }
}

}  // namespace

TEST(attention_every_isa) {
  lbtest::for_each_isa([](const kernel_table &k) {
    check_attention(k, k.attention_f32, "f32");
    check_attention(k, k.attention_f16, "f16");
  });
}

// to_f16 must give f32_to_f16's bits (round to nearest even) for every value a cache may see:
// normals, ties, subnormals, overflow to infinity, infinities, NaN (any NaN), on and off the vector.
TEST(to_f16_every_isa) {
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f, 65519.0f, 65520.0f, -1e9f, 5.9604645e-8f, 2.9802322e-8f,
                          1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 6.1035156e-5f, 6.0e-5f, 1e-30f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  lbtest::rng r(5);
  for (int i = 0; i < 300; i++) x.push_back(r.normal() * std::ldexp(1.0f, (int)r.below(40) - 25));
  for (int i = 0; i < 64; i++) {  // every tie between two neighbouring halves, near 1
    uint32_t u = 0x3f800000u + (uint32_t)i * 0x2000u + 0x1000u;
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (size_t n : {x.size(), x.size() - 1, (size_t)5}) {
      std::vector<uint16_t> got(n, 0x1234);
      k.to_f16(x.data(), (int64_t)n, got.data());
      for (size_t i = 0; i < n; i++) {
        const uint16_t want = f32_to_f16(x[i]);
        const bool nan = (want & 0x7c00) == 0x7c00 && (want & 0x3ff);
        CHECK_MSG(nan ? ((got[i] & 0x7c00) == 0x7c00 && (got[i] & 0x3ff)) : got[i] == want,
                  std::string(isa_name(k.id)) + " to_f16(" + std::to_string(x[i]) + ")");
      }
    }
  });
}

// silu_mul (SwiGLU's gate) against float64 on every ISA: values across exp_fast's range and its
// clamp, lengths on and off the vector width; within a few ulp (exp_fast: 2 ulp).
TEST(silu_mul_every_isa) {
  lbtest::rng r(11);
  std::vector<float> gate, up;
  for (float g : {0.0f, -0.0f, 1.0f, -1.0f, 20.0f, -20.0f, 86.0f, -86.0f, 88.0f, -88.0f, 200.0f, -200.0f}) {
    gate.push_back(g);
    up.push_back(r.normal());
  }
  for (int i = 0; i < 300; i++) {
    gate.push_back(r.normal() * 6.0f);
    up.push_back(r.normal());
  }
  lbtest::for_each_isa([&](const kernel_table &k) {
    for (size_t n : {gate.size(), gate.size() - 3, (size_t)7}) {
      std::vector<float> got(gate.begin(), gate.begin() + n);
      k.silu_mul(got.data(), up.data(), (int64_t)n);
      for (size_t i = 0; i < n; i++) {
        const double g = gate[i], want = g / (1.0 + std::exp(-g)) * up[i];
        CHECK_MSG(std::fabs(got[i] - want) <= 4e-7 * std::fabs(want) + 1e-30,
                  std::string(isa_name(k.id)) + " silu_mul(" + std::to_string(g) + ")");
      }
    }
  });
}
