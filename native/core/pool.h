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
  // spans from the back of another's share (all but its first quarter), so all finish within
  // about one unit of each other and a late or slowed thread costs little more. run() is this
  // with one task per unit.
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
  struct job_view {  // a job as a taking thread sees it
    uint64_t number;
    const std::function<void(int64_t, int64_t)> *fn;
    int64_t n_units;
    int takers;
  };
  void ensure_workers(int n);
  void worker_main(int index, uint64_t seen);
  bool claim(const job_view &job, int share, bool front, int64_t &u0, int64_t &u1);
  void work_on_spans(const job_view &job, int slot);
  bool helpers_done(int helpers, uint64_t job) const;
  bool helper_asleep(int helpers) const;
  void publish(const job_view &job, bool stop);
  void wake_workers();

  // A dispatch costs a few cache-line transfers between cores, in sequence: about 100 ns each when
  // the two cores share an L3, 300-800 ns when they do not (this host's vCPUs move between both
  // placements). So a job is one line the workers poll, each share is initialised by whoever
  // touches it first (not by the caller, which would pull every worker's line), and each worker
  // reports on a line of its own that only the caller reads.
  struct alignas(64) job_line {
    std::atomic<uint64_t> version{0};  // a sequence lock: odd while the caller writes the fields
    std::atomic<const std::function<void(int64_t, int64_t)> *> fn{nullptr};
    std::atomic<int64_t> n_units{0};
    std::atomic<int> takers{0};  // the caller (slot 0) and workers 0 .. takers - 2
    std::atomic<bool> stop{false};
    std::atomic<bool> failed{false};  // a task threw: the others stop claiming
  };
  // A taking thread's unclaimed units of the current job: tag << 56 | front << 28 | back, where
  // tag is the job's low 8 bits (a share from the previous job reads as not yet initialised). The
  // owner claims from the front, others from the back, by compare-and-swap on the one word.
  struct alignas(64) share_line {
    std::atomic<uint64_t> word{0};
  };
  struct alignas(64) done_line {     // a worker's, read by the caller
    std::atomic<uint64_t> job{0};    // the last job it finished
    std::atomic<bool> asleep{false};  // waiting on wake_ (set and cleared under mutex_)
  };
  static constexpr int kMaxWorkers = 256;
  static constexpr int64_t kMaxUnits = ((int64_t)1 << 28) - 1;  // per dispatch (larger calls are split)

  // prefetch_while_idle's ranges for one worker: a sequence lock (writers serialised by
  // hint_writing_, the version odd while they write; a worker keeps a copy read between two equal
  // even versions).
  struct alignas(64) idle_prefetch {
    std::atomic<uint64_t> version{0};
    std::atomic<int> count{0};
    std::atomic<const uint8_t *> begin[kPrefetchRanges], end[kPrefetchRanges];
  };

  // Read by every thread in every job, so on a line that nothing writes.
  alignas(64) const std::unique_ptr<share_line[]> shares_ = std::make_unique<share_line[]>(kMaxWorkers + 1);
  const std::unique_ptr<done_line[]> finished_ = std::make_unique<done_line[]>(kMaxWorkers);
  const std::unique_ptr<idle_prefetch[]> idle_ = std::make_unique<idle_prefetch[]>(kMaxWorkers);
  job_line job_;
  alignas(64) std::atomic<bool> caller_asleep_{false};  // read after every job, written around sleeps
  // The callers'.
  alignas(64) std::mutex run_mutex_;  // serialises jobs (run, run_spans)
  uint64_t job_number_ = 0;           // dispatched jobs (the job line's version / 2)
  int prev_takers_ = 0;               // slots that took part in the previous job (their shares are tagged)
  std::atomic<bool> hint_writing_{false};
  std::vector<std::thread> workers_;
  std::mutex mutex_;  // for sleeping: workers between jobs, the caller waiting for a long job
  std::condition_variable wake_, done_;
  std::exception_ptr error_;  // under mutex_
};

// Default thread count: the physical cores this process may use.
int default_threads();

}  // namespace lb
