// Timing loops for the benchmarks: a native streaming read (the bandwidth the kernels are measured
// against) and a run of matmuls, both on the thread pool, so no JS overhead enters the numbers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>

#include "../core/pool.h"
#include "kernels.h"

namespace lb {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double measure_read_seconds(const uint8_t *data, size_t bytes, int threads, double min_seconds, const kernel_table &k) {
  const size_t per = bytes / threads;  // each thread's share
  if (per < 4 * 64) throw std::invalid_argument("measure_read: the buffer is too small for the thread count");
  std::atomic<uint64_t> sink{0};  // keeps the reads from being optimised away
  auto pass = [&] {
    thread_pool::global().run(threads, threads, [&](int64_t t) {
      sink.fetch_xor(k.read_bytes(data + t * per, per), std::memory_order_relaxed);
    });
  };
  pass();  // warm up (and fill caches for the cache-resident measurement)
  int passes = 0;
  const double t0 = now();
  double t1 = t0;
  while (passes < 3 || t1 - t0 < min_seconds) {
    pass();
    passes++;
    t1 = now();
  }
  return (t1 - t0) / passes;  // per pass over per * threads bytes
}

double run_matmuls(const std::vector<const qtensor *> &ws, const float *x, int64_t n, act_mode mode, int threads,
                   const kernel_table &k) {
  int64_t rows = 0;
  for (const qtensor *w : ws) rows = std::max(rows, w->rows);
  std::unique_ptr<float[]> y(new float[n * rows]);
  const double t0 = now();
  for (const qtensor *w : ws) matmul(*w, x, n, y.get(), mode, threads, k);
  return (now() - t0) / (double)ws.size();
}

}  // namespace lb
