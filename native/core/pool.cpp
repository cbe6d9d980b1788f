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
    publish({++job_number_, nullptr, 0, 0}, true);
  }
  wake_.notify_all();
  for (std::thread &t : workers_) t.join();
}

void thread_pool::ensure_workers(int n) {
  while ((int)workers_.size() < n) {
    const int index = (int)workers_.size();
    const uint64_t seen = job_.version.load(std::memory_order_relaxed);  // no job is being written
    workers_.emplace_back([this, index, seen] { worker_main(index, seen); });
  }
}

namespace {

constexpr int kUnitBits = 28;
constexpr uint64_t kUnitMask = ((uint64_t)1 << kUnitBits) - 1;

uint64_t share_word(uint64_t tag, int64_t front, int64_t back) {
  return (tag & 0xff) << (2 * kUnitBits) | (uint64_t)front << kUnitBits | (uint64_t)back;
}

// Slot s's share of n units among `takers`, [begin, end), and the end of its first span: a quarter
// of the share, which its owner takes without claiming (a first compare-and-swap would wait for
// the line: the caller's on its store of the job line, a worker's on the previous job's thieves;
// the span's work hides that). Nobody else can take it, so it is kept short.
struct first_span {
  int64_t begin, first_end, end;
  first_span(int64_t n, int s, int takers)
      : begin(n * s / takers), first_end(begin + std::max<int64_t>(1, (n * (s + 1) / takers - begin) / 4)),
        end(n * (s + 1) / takers) {}
};

// A sequence lock on `version`: a writer moves it to the odd number before `even`, writes the
// fields, and releases it at `even`; a reader's copy stands when it saw the same even version
// before and after. (The job line and each worker's prefetch hints.)
template <class Write>
void seq_write(std::atomic<uint64_t> &version, uint64_t even, Write write) {
  version.store(even - 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  write();
  version.store(even, std::memory_order_release);
}

// Runs read() on the fields once; true, with the version in `seen`, when what it read stands.
template <class Read>
bool seq_read(const std::atomic<uint64_t> &version, uint64_t &seen, Read read) {
  const uint64_t v = version.load(std::memory_order_acquire);
  if (v % 2 != 0) return false;
  read();
  std::atomic_thread_fence(std::memory_order_acquire);
  if (version.load(std::memory_order_relaxed) != v) return false;
  seen = v;
  return true;
}

}  // namespace

// Claims a span of share s of the job: half of what is left (at least one unit), from its front
// or back; first sets the share to its initial range if nobody has in this job (its tag is the
// previous job's). Halving keeps the owner's first span long (one stream) and the last spans a
// unit or two.
bool thread_pool::claim(const job_view &job, int s, bool front, int64_t &u0, int64_t &u1) {
  std::atomic<uint64_t> &share = shares_[s].word;
  const uint64_t tag = job.number & 0xff;
  uint64_t v = share.load(std::memory_order_relaxed);
  for (;;) {
    if (job_.failed.load(std::memory_order_relaxed)) return false;
    if ((v >> (2 * kUnitBits)) != tag) {
      const first_span span(job.n_units, s, job.takers);
      const uint64_t start = share_word(tag, span.first_end, span.end);  // the first span is the owner's
      if (!share.compare_exchange_weak(v, start, std::memory_order_relaxed)) continue;
      v = start;
    }
    const int64_t f = (int64_t)(v >> kUnitBits & kUnitMask), b = (int64_t)(v & kUnitMask);
    if (f >= b) return false;
    const int64_t take = std::max<int64_t>(1, (b - f) / 2);
    const uint64_t next = front ? share_word(tag, f + take, b) : share_word(tag, f, b - take);
    if (share.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      u0 = front ? f : b - take;
      u1 = front ? f + take : b;
      return true;
    }
  }
}

void thread_pool::work_on_spans(const job_view &job, int slot) {
  try {
    const first_span span(job.n_units, slot, job.takers);
    if (!job_.failed.load(std::memory_order_relaxed)) (*job.fn)(span.begin, span.first_end);
    int64_t u0, u1;
    while (claim(job, slot, true, u0, u1)) (*job.fn)(u0, u1);
    for (int k = 1; k < job.takers; k++)
      while (claim(job, (slot + k) % job.takers, false, u0, u1)) (*job.fn)(u0, u1);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
    job_.failed.store(true, std::memory_order_relaxed);
  }
}

bool thread_pool::helper_asleep(int helpers) const {
  for (int i = 0; i < helpers; i++)
    if (finished_[i].asleep.load(std::memory_order_relaxed)) return true;
  return false;
}

bool thread_pool::helpers_done(int helpers, uint64_t job) const {
  for (int i = 0; i < helpers; i++)
    if (finished_[i].job.load(std::memory_order_seq_cst) != job) return false;
  return true;
}

void thread_pool::worker_main(int index, uint64_t seen) {
  uint64_t hint_seen = 0;
  byte_range todo[kPrefetchRanges];
  int todo_at = 0, todo_count = 0;  // todo[todo_at, todo_count) are left
  idle_prefetch *hints = &idle_[index];
  // Takes a newly posted hint; then requests its next line, if any (true when it did). Into L1
  // (prefetcht0): a MobileLLM-600M decode step ran 1.5-2.5% faster with it, 0-1% into L2.
  auto prefetch_step = [&] {
    if (hints->version.load(std::memory_order_relaxed) != hint_seen) {
      int count = 0;
      if (seq_read(hints->version, hint_seen, [&] {
            count = hints->count.load(std::memory_order_relaxed);
            for (int i = 0; i < count; i++)
              todo[i] = {hints->begin[i].load(std::memory_order_relaxed), hints->end[i].load(std::memory_order_relaxed)};
          }))
        todo_at = 0, todo_count = count;
    }
    while (todo_at < todo_count && todo[todo_at].begin >= todo[todo_at].end) todo_at++;
    if (todo_at == todo_count) return false;
    __builtin_prefetch(todo[todo_at].begin, 0, 3);
    todo[todo_at].begin += 64;
    return true;
  };
  auto unchanged = [&] { return job_.version.load(std::memory_order_seq_cst) == seen; };
  for (;;) {
    // Spin for a while: during decode the next job arrives within microseconds, or after the
    // hand-off of a token to JS and its sampling (about 0.2 ms on a MobileLLM-600M step here). A
    // worker that slept through that hand-off woke late into the next step's first job (the q, k,
    // v jobs started 3.3 us late on average with a 0.2 ms spin, 0.5 us with this one).
    spin_while(unchanged, 1000, prefetch_step);
    if (unchanged()) {
      std::unique_lock<std::mutex> lock(mutex_);
      finished_[index].asleep.store(true, std::memory_order_relaxed);
      wake_.wait(lock, [&] { return !unchanged(); });
      finished_[index].asleep.store(false, std::memory_order_relaxed);
    }
    todo_at = todo_count = 0;  // a job started: what is left of the hint is stale
    // Read the job line between two equal even versions (a worker that sat out a job may look
    // while the caller writes the next).
    job_view job;
    bool stop;
    while (!seq_read(job_.version, seen, [&] {
      job = {0, job_.fn.load(std::memory_order_relaxed), job_.n_units.load(std::memory_order_relaxed),
             job_.takers.load(std::memory_order_relaxed)};
      stop = job_.stop.load(std::memory_order_relaxed);
    }))
      LB_CPU_RELAX();
    job.number = seen / 2;
    if (stop) return;
    if (index + 1 >= job.takers) continue;
    work_on_spans(job, index + 1);
    // Read-modify-writes on both sides of this handshake with a sleeping caller, which every
    // machine and emulator orders fully (with a store then a load here, a qemu-user run hung once).
    finished_[index].job.exchange(job.number, std::memory_order_seq_cst);
    if (caller_asleep_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

// Writes the job line under its sequence lock, ending with a release store, not a fence: the
// caller goes on to its own span while the line travels.
void thread_pool::publish(const job_view &job, bool stop) {
  seq_write(job_.version, 2 * job.number, [&] {
    job_.failed.store(false, std::memory_order_relaxed);
    job_.fn.store(job.fn, std::memory_order_relaxed);
    job_.n_units.store(job.n_units, std::memory_order_relaxed);
    job_.takers.store(job.takers, std::memory_order_relaxed);
    job_.stop.store(stop, std::memory_order_relaxed);
  });
}

void thread_pool::wake_workers() {
  std::lock_guard<std::mutex> lock(mutex_);
  wake_.notify_all();
}

void thread_pool::run(int64_t n_tasks, int threads, const std::function<void(int64_t)> &task) {
  run_spans(n_tasks, threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) task(t);
  });
}

void thread_pool::run_spans(int64_t n_units, int threads, const std::function<void(int64_t, int64_t)> &fn) {
  if (n_units <= 0) return;
  if (n_units > kMaxUnits) {  // in pieces the share words can count
    for (int64_t u = 0; u < n_units; u += kMaxUnits)
      run_spans(std::min(kMaxUnits, n_units - u), threads, [&](int64_t u0, int64_t u1) { fn(u + u0, u + u1); });
    return;
  }
  const int helpers = (int)std::min<int64_t>({threads, n_units, kMaxWorkers + 1}) - 1;
  if (helpers <= 0) return fn(0, n_units);
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  const int takers = helpers + 1;
  const job_view job{++job_number_, &fn, n_units, takers};
  ensure_workers(helpers);
  // Shares of slots that sat out the previous job (or of a failed job) may hold any tag.
  for (int s = prev_takers_; s < takers; s++) {
    const first_span span(n_units, s, takers);
    shares_[s].word.store(share_word(job.number, span.first_end, span.end), std::memory_order_relaxed);
  }
  // A worker that goes to sleep while the job line travels is seen and woken below, while the
  // caller waits.
  publish(job, false);
  if (helper_asleep(helpers)) wake_workers();
  work_on_spans(job, 0);
  // Wait for the helpers: spin first, they finish within a span's time.
  unsigned checks = 0;
  spin_while(
      [&] {
        if (++checks % 64 == 0 && helper_asleep(helpers)) wake_workers();
        return !helpers_done(helpers, job.number);
      },
      100);
  if (!helpers_done(helpers, job.number)) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_asleep_.exchange(true, std::memory_order_seq_cst);
    // Under the mutex, a worker not yet asleep will see the job when it takes it. In waits of a
    // millisecond: a missed notification costs one, not the process.
    if (helper_asleep(helpers)) wake_.notify_all();
    while (!helpers_done(helpers, job.number)) done_.wait_for(lock, std::chrono::milliseconds(1));
    caller_asleep_.store(false, std::memory_order_relaxed);
  }
  const bool failed = job_.failed.load(std::memory_order_relaxed);
  prev_takers_ = failed ? 0 : takers;
  if (!failed) return;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::swap(error, error_);
  }
  std::rethrow_exception(error);
}

void thread_pool::prefetch_while_idle(int slot, const byte_range *ranges, int count) {
  if (slot < 1 || slot > kMaxWorkers) return;
  idle_prefetch &p = idle_[slot - 1];
  // Writers take turns by a flag released with a plain store: a mutex's unlock would wait for the
  // hint's line to reach this core (the worker polls it), a transfer for nothing.
  while (hint_writing_.exchange(true, std::memory_order_acquire)) LB_CPU_RELAX();
  seq_write(p.version, p.version.load(std::memory_order_relaxed) + 2, [&] {
    count = std::min(count, kPrefetchRanges);
    p.count.store(count, std::memory_order_relaxed);
    for (int i = 0; i < count; i++) {
      p.begin[i].store(ranges[i].begin, std::memory_order_relaxed);
      p.end[i].store(ranges[i].end, std::memory_order_relaxed);
    }
  });
  hint_writing_.store(false, std::memory_order_release);
}

}  // namespace lb
