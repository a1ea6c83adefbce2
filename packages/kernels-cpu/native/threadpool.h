// A fixed pool of worker threads for data-parallel kernels. The calling thread is worker 0, so a pool of
// n threads starts n - 1 OS threads. Workers spin for a short while after each job (a product takes tens of
// microseconds; waking a sleeping thread costs about as much) and then sleep on a condition variable.
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
  using Fn = void (*)(void* ctx, int tid, int nthreads);

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
    stop_ = false;
    // The generation is read here, not in the new thread: a job posted before the thread first runs must
    // still count as new to it.
    const uint64_t g = generation_.load(std::memory_order_acquire);
    for (int tid = 1; tid < n; tid++) workers_.emplace_back([this, tid, g] { worker_loop(tid, g); });
  }

  // Runs fn(ctx, tid, n) for tid = 0..n-1 with n = min(nthreads, size()), tid 0 on the calling thread, and
  // returns when all have finished. Not reentrant: one job at a time (Node-API calls arrive on one thread).
  void run(int nthreads, Fn fn, void* ctx) {
    int n = nthreads < size_ ? nthreads : size_;
    if (n <= 1) {
      fn(ctx, 0, 1);
      return;
    }
    fn_ = fn;
    ctx_ = ctx;
    active_ = n;
    pending_.store(size_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    fn(ctx, 0, n);
    while (pending_.load(std::memory_order_acquire) != 0) BD_PAUSE();
  }

 private:
  void worker_loop(int tid, uint64_t seen) {
    for (;;) {
      uint64_t g = wait_for_change(seen);
      seen = g;
      if (stop_.load(std::memory_order_acquire)) return;
      if (tid < active_) fn_(ctx_, tid, active_);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  uint64_t wait_for_change(uint64_t seen) {
    auto start = std::chrono::steady_clock::now();
    for (uint32_t spins = 1;; spins++) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      if (g != seen) return g;
      BD_PAUSE();
      if ((spins & 255) == 0 && std::chrono::steady_clock::now() - start > kSpin) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    return generation_.load(std::memory_order_acquire);
  }

  void stop_workers() {
    if (workers_.empty()) return;
    stop_.store(true, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  static constexpr std::chrono::microseconds kSpin{300};

  int size_ = 0;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  int active_ = 0;
};

}  // namespace bd
