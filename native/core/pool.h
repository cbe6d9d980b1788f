// A persistent thread pool for data-parallel loops. One job runs at a time (callers from several
// threads are serialised); the calling thread works on the job too. Workers spin briefly after a
// job before sleeping, because a decode step issues hundreds of short jobs back to back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lb {

class thread_pool {
 public:
  // The process-wide pool (created on first use, never destroyed before exit).
  static thread_pool &global();

  // Runs task(i) for every i in [0, n_tasks) on at most `threads` threads, the caller included,
  // and returns when all are done. The first exception thrown by a task is rethrown here.
  void run(int64_t n_tasks, int threads, const std::function<void(int64_t)> &task);

  // Runs fn(u0, u1) over disjoint spans that together cover the units [0, n_units), on at most
  // `threads` threads. Each thread owns a contiguous share and walks it front to back in shrinking
  // spans (one sequential memory stream, as a streaming GEMV wants); a thread that runs out takes
  // spans from the back of another's share, so all finish within about one unit of each other
  // (a late or slowed thread costs no more). n_units must be below 2^31.
  void run_spans(int64_t n_units, int threads, const std::function<void(int64_t, int64_t)> &fn);

  // Memory the worker of run_spans slot `slot` (1 .. threads - 1; the caller, slot 0, takes none)
  // requests, a line at a time, while it waits for its next job, which drops what is left: its
  // share of the next job's weights (matmul_prefetch_next), so that a decode step's serial gaps,
  // when the worker idles and DRAM too, stream part of what comes next. Replaces earlier ranges.
  struct byte_range {
    const uint8_t *begin = nullptr, *end = nullptr;
  };
  static constexpr int kPrefetchRanges = 8;
  void prefetch_while_idle(int slot, const byte_range *ranges, int count);

  ~thread_pool();

 private:
  thread_pool() = default;
  void ensure_workers(int n);
  void worker_main(int index);
  void start_job(int helpers);
  void finish_job();
  void work_on_job(int slot);
  void work_on_spans(int slot);

  std::mutex run_mutex_;  // serialises jobs (run, run_spans)
  std::mutex mutex_;      // guards the fields below and the wake-up
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  bool stop_ = false;

  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};      // workers still on the current job
  std::atomic<int64_t> next_{0};    // next task index
  int64_t n_tasks_ = 0;
  int wanted_workers_ = 0;          // workers [0, wanted) take part in the current job
  const std::function<void(int64_t)> *task_ = nullptr;        // run()'s job, or
  const std::function<void(int64_t, int64_t)> *spans_ = nullptr;  // run_spans()'s
  // run_spans: each taking thread's unclaimed units, packed as front << 32 | back. A slot's owner
  // claims from the front, others from the back; both by compare-and-swap on the one word.
  std::vector<std::atomic<uint64_t>> shares_;
  std::exception_ptr error_;
  // prefetch_while_idle's ranges for one worker: a sequence lock (writers serialised by
  // hint_mutex_, the version odd while they write; a worker keeps a copy read between two equal
  // even versions).
  struct idle_prefetch {
    std::atomic<uint64_t> version{0};
    std::atomic<int> count{0};
    std::atomic<const uint8_t *> begin[kPrefetchRanges], end[kPrefetchRanges];
  };
  static constexpr int kMaxWorkers = 256;  // that take hints
  std::unique_ptr<idle_prefetch[]> idle_ = std::make_unique<idle_prefetch[]>(kMaxWorkers);
  std::mutex hint_mutex_;
};

// Default thread count: the physical cores this process may use.
int default_threads();

}  // namespace lb
