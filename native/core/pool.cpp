// Thread pool (see pool.h).
#include "pool.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define LB_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define LB_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define LB_CPU_RELAX() ((void)0)
#endif

namespace lb {

int default_threads() { return cpu().physical_cores; }

// Spins while cond() holds, for at most `micros` microseconds; reads the clock only every 256
// checks, as clock reads cost far more than a pause.
template <class Cond, class Work = bool (*)()>
static void spin_while(Cond cond, int micros, Work work = [] { return false; }) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  for (unsigned i = 1; cond(); i++) {
    if (!work()) LB_CPU_RELAX();
    if (i % 256 == 0 && std::chrono::steady_clock::now() >= until) return;
  }
}

thread_pool &thread_pool::global() {
  // Leaked on purpose: worker threads must not be joined from static destructors at exit.
  static thread_pool *pool = new thread_pool();
  return *pool;
}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_++;
  }
  wake_.notify_all();
  for (std::thread &t : workers_) t.join();
}

void thread_pool::ensure_workers(int n) {
  while ((int)workers_.size() < n) {
    const int index = (int)workers_.size();
    workers_.emplace_back([this, index] { worker_main(index); });
  }
}

void thread_pool::work_on_job(int slot) {
  try {
    if (spans_) return work_on_spans(slot);
    for (;;) {
      const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_tasks_) return;
      (*task_)(i);
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
    next_.store(n_tasks_, std::memory_order_relaxed);  // skip the rest
    for (auto &share : shares_) share.store(0, std::memory_order_relaxed);
  }
}

namespace {

// Claims a span of a share: half of what is left (at least one unit), from its front or back.
// Halving keeps the owner's first span long (one stream) and the last spans a unit or two.
bool claim(std::atomic<uint64_t> &share, bool front, int64_t &u0, int64_t &u1) {
  uint64_t v = share.load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t f = (uint32_t)(v >> 32), b = (uint32_t)v;
    if (f >= b) return false;
    const uint32_t take = std::max<uint32_t>(1, (b - f) / 2);
    const uint64_t next = front ? (uint64_t)(f + take) << 32 | b : (uint64_t)f << 32 | (b - take);
    if (share.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      u0 = front ? f : b - take;
      u1 = front ? f + take : b;
      return true;
    }
  }
}

}  // namespace

void thread_pool::work_on_spans(int slot) {
  const int n = (int)shares_.size();
  int64_t u0, u1;
  while (claim(shares_[slot], true, u0, u1)) (*spans_)(u0, u1);
  for (int k = 1; k < n; k++)
    while (claim(shares_[(slot + k) % n], false, u0, u1)) (*spans_)(u0, u1);
}

void thread_pool::prefetch_while_idle(int slot, const byte_range *ranges, int count) {
  if (slot < 1 || slot > kMaxWorkers) return;
  idle_prefetch &p = idle_[slot - 1];
  std::lock_guard<std::mutex> lock(hint_mutex_);
  const uint64_t v = p.version.load(std::memory_order_relaxed);
  p.version.store(v + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  count = std::min(count, kPrefetchRanges);
  p.count.store(count, std::memory_order_relaxed);
  for (int i = 0; i < count; i++) {
    p.begin[i].store(ranges[i].begin, std::memory_order_relaxed);
    p.end[i].store(ranges[i].end, std::memory_order_relaxed);
  }
  p.version.store(v + 2, std::memory_order_release);
}

void thread_pool::worker_main(int index) {
  uint64_t seen = 0, hint_seen = 0;
  byte_range todo[kPrefetchRanges];
  int todo_at = 0, todo_count = 0;  // todo[todo_at, todo_count) are left
  idle_prefetch *hints = index < kMaxWorkers ? &idle_[index] : nullptr;
  // Takes a newly posted hint; then requests its next line, if any (true when it did). Into L1
  // (prefetcht0): a MobileLLM-600M decode step ran 1.5-2.5% faster with it, 0-1% into L2.
  auto prefetch_step = [&] {
    if (!hints) return false;
    const uint64_t v = hints->version.load(std::memory_order_acquire);
    if (v != hint_seen && v % 2 == 0) {
      const int count = hints->count.load(std::memory_order_relaxed);
      for (int i = 0; i < count; i++)
        todo[i] = {hints->begin[i].load(std::memory_order_relaxed), hints->end[i].load(std::memory_order_relaxed)};
      std::atomic_thread_fence(std::memory_order_acquire);
      if (hints->version.load(std::memory_order_relaxed) == v) hint_seen = v, todo_at = 0, todo_count = count;
    }
    while (todo_at < todo_count && todo[todo_at].begin >= todo[todo_at].end) todo_at++;
    if (todo_at == todo_count) return false;
    __builtin_prefetch(todo[todo_at].begin, 0, 3);
    todo[todo_at].begin += 64;
    return true;
  };
  for (;;) {
    // Spin for a while: during decode the next job arrives within microseconds, or after the
    // hand-off of a token to JS and its sampling (about 0.2 ms on a MobileLLM-600M step here). A
    // worker that slept through that hand-off woke late into the next step's first job (the q, k,
    // v jobs started 3.3 us late on average with a 0.2 ms spin, 0.5 us with this one).
    spin_while([&] { return generation_.load(std::memory_order_acquire) == seen; }, 1000, prefetch_step);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      todo_at = todo_count = 0;  // a job started: what is left of the hint is stale
      if (stop_) return;
      if (index >= wanted_workers_) continue;
    }
    work_on_job(index + 1);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

void thread_pool::start_job(int helpers) {
  ensure_workers(helpers);
  wanted_workers_ = helpers;
  active_.store(helpers, std::memory_order_relaxed);
  error_ = nullptr;
  generation_.fetch_add(1, std::memory_order_release);
}

void thread_pool::finish_job() {
  wake_.notify_all();
  work_on_job(0);
  // Wait for the helpers: spin first, they finish within a task's time.
  spin_while([&] { return active_.load(std::memory_order_acquire) != 0; }, 100);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_.load(std::memory_order_acquire) == 0; });
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void thread_pool::run(int64_t n_tasks, int threads, const std::function<void(int64_t)> &task) {
  if (n_tasks <= 0) return;
  const int helpers = (int)std::min<int64_t>(threads, n_tasks) - 1;
  if (helpers <= 0) {
    for (int64_t i = 0; i < n_tasks; i++) task(i);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &task;
    spans_ = nullptr;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    start_job(helpers);
  }
  finish_job();
}

void thread_pool::run_spans(int64_t n_units, int threads, const std::function<void(int64_t, int64_t)> &fn) {
  if (n_units <= 0) return;
  if (n_units >= (int64_t)1 << 31) throw std::length_error("run_spans: too many units");
  const int helpers = (int)std::min<int64_t>(threads, n_units) - 1;
  if (helpers <= 0) return fn(0, n_units);
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const int takers = helpers + 1;
    if ((int)shares_.size() != takers) shares_ = std::vector<std::atomic<uint64_t>>(takers);
    for (int t = 0; t < takers; t++)
      shares_[t].store((uint64_t)(n_units * t / takers) << 32 | (uint64_t)(n_units * (t + 1) / takers),
                       std::memory_order_relaxed);
    spans_ = &fn;
    task_ = nullptr;
    start_job(helpers);
  }
  finish_job();
}

}  // namespace lb
