// Thread pool (see pool.h).
#include "pool.h"

#include <chrono>

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
template <class Cond>
static void spin_while(Cond cond, int micros) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  for (unsigned i = 1; cond(); i++) {
    LB_CPU_RELAX();
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

void thread_pool::work_on_job() {
  for (;;) {
    const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_tasks_) return;
    try {
      (*task_)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_.store(n_tasks_, std::memory_order_relaxed);  // skip the rest
    }
  }
}

void thread_pool::worker_main(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin for a short while: the next job usually arrives within microseconds during decode.
    spin_while([&] { return generation_.load(std::memory_order_acquire) == seen; }, 200);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      if (index >= wanted_workers_) continue;
    }
    work_on_job();
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

void thread_pool::run(int64_t n_tasks, int threads, const std::function<void(int64_t)> &task) {
  if (n_tasks <= 0) return;
  const int helpers = (int)std::min<int64_t>(threads, n_tasks) - 1;
  if (helpers <= 0) {
    for (int64_t i = 0; i < n_tasks; i++) task(i);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_workers(helpers);
    task_ = &task;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    wanted_workers_ = helpers;
    active_.store(helpers, std::memory_order_relaxed);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  work_on_job();
  // Wait for the helpers: spin first, they finish within a task's time.
  spin_while([&] { return active_.load(std::memory_order_acquire) != 0; }, 100);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_.load(std::memory_order_acquire) == 0; });
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace lb
