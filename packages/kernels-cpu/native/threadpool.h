// A fixed pool of worker threads for data-parallel kernels. The calling thread works too, so a pool of n
// threads starts n - 1 OS threads. A job is split into chunks that threads claim one at a time from a shared
// counter: a worker that is descheduled (2 cores shared with other processes, GC threads) delays nothing,
// because the others - at worst the caller alone - take its chunks. Workers spin for a short while after
// each job (a product takes tens of microseconds; waking a sleeping thread costs about as much) and then
// sleep on a condition variable.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BD_PAUSE() _mm_pause()
#else
#define BD_PAUSE() std::this_thread::yield()
#endif

namespace bd {

class ThreadPool {
 public:
  using Fn = void (*)(void* ctx, int64_t chunk, int64_t nchunks);
  static constexpr int64_t kMaxChunks = (int64_t{1} << 18) - 1;

  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop_workers(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  void resize(int n) {
    if (n < 1) n = 1;
    if (n == size_) return;
    stop_workers();
    size_ = n;
    stop_.store(false);
    // The generation is read here, not in the new thread: a job posted before the thread first runs must
    // still count as new to it.
    const uint64_t g = gen_.load();
    for (int tid = 1; tid < n; tid++) workers_.emplace_back([this, g] { worker_loop(g); });
  }

  // Runs fn(ctx, c, nchunks) for c = 0..nchunks-1 (nchunks <= kMaxChunks) on the pool and the calling
  // thread; returns when every chunk has finished. One job at a time (callers serialise).
  void run(int64_t nchunks, Fn fn, void* ctx) {
    if (nchunks <= 0) return;
    if (nchunks == 1 || size_ == 1) {
      for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, nchunks);
      return;
    }
    const uint64_t g = (gen_.load(std::memory_order_relaxed) + 1) & kGenMask;
    fn_ = fn;
    ctx_ = ctx;
    done_.store(0, std::memory_order_relaxed);
    claim_.store(pack(g, static_cast<uint64_t>(nchunks), 0), std::memory_order_release);
    gen_.store(g);  // seq_cst: pairs with the sleepers_ check below (no lost wake-up)
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      cv_.notify_all();
    }
    work(g);
    while (done_.load(std::memory_order_acquire) != nchunks) BD_PAUSE();
  }

 private:
  // claim_ = generation (28 bits) | chunk count (18) | next chunk (18), so one atomic snapshot says which
  // job a chunk index belongs to; a stale worker's compare-exchange fails instead of running a chunk of
  // the wrong job.
  static constexpr uint64_t kGenMask = (uint64_t{1} << 28) - 1;
  static uint64_t pack(uint64_t g, uint64_t n, uint64_t i) { return (g << 36) | (n << 18) | i; }

  void work(uint64_t g) {
    uint64_t v = claim_.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t vg = v >> 36, n = (v >> 18) & kMaxChunks, i = v & kMaxChunks;
      if (vg != g || i >= n) return;
      if (claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        fn_(ctx_, static_cast<int64_t>(i), static_cast<int64_t>(n));
        done_.fetch_add(1, std::memory_order_release);
        v = claim_.load(std::memory_order_acquire);
      }
    }
  }

  void worker_loop(uint64_t seen) {
    for (;;) {
      seen = wait_for_change(seen);
      if (stop_.load(std::memory_order_acquire)) return;
      work(seen);
    }
  }

  uint64_t wait_for_change(uint64_t seen) {
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t spins = 1;; spins++) {
      const uint64_t g = gen_.load(std::memory_order_acquire);
      if (g != seen) return g;
      BD_PAUSE();
      if ((spins & 255) == 0 && std::chrono::steady_clock::now() - start > kSpin) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1);
    cv_.wait(lock, [&] { return gen_.load() != seen; });
    sleepers_.fetch_sub(1);
    return gen_.load();
  }

  void stop_workers() {
    if (workers_.empty()) return;
    stop_.store(true, std::memory_order_release);
    gen_.store((gen_.load() + 1) & kGenMask);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  static constexpr std::chrono::microseconds kSpin{300};

  int size_ = 0;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace bd
