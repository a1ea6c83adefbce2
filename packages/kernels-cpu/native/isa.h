// The run-time dispatch state every kernel driver shares (defined in isa.cc): the ISA table in use (g_isa,
// chosen among the IsaKernels tables of kernels.h), the thread pool (g_pool) and parallel(), which runs a job's
// chunks on it, the chunking rules, and the per-thread scratch buffer type. The SIMD code is in
// kernels_<isa>.cc behind the IsaKernels tables; everything here is compiled for the baseline ISA.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>

#include "kernels.h"
#include "threadpool.h"

namespace bd {

extern const IsaKernels* g_isa;
extern ThreadPool* g_pool;  // never destroyed: joining threads at process exit is not worth the risk

// The bf16 GEMM and its packing when the CPU has AVX512_BF16 and an AVX-512 ISA is selected, else null.
const Bf16Kernels* bf16_gemm();

// Picks the best ISA this CPU has and starts the pool (once per process; addon.cc's Init calls it).
void init_dispatch();

// Runs chunks 0..nchunks-1 of fn on the pool; a concurrent call (another Node worker thread) runs them on its
// own thread instead.
void parallel(int64_t nchunks, ThreadPool::Fn fn, void* ctx);

// [begin, end) of chunk c of n units split into nchunks contiguous ranges.
inline void split(int64_t n, int64_t c, int64_t nchunks, int64_t* begin, int64_t* end) {
  *begin = n * c / nchunks;
  *end = n * (c + 1) / nchunks;
}

// Below this many weights a product runs as one chunk: waking a worker costs more than it saves.
constexpr int64_t kMinParallelWeights = 1 << 16;
// Chunks per thread for the streaming kernels: small enough that a thread arriving late still finds work,
// large enough (tens of KiB of weights) that the hardware prefetchers see long sequential runs.
constexpr int64_t kChunksPerThread = 8;

inline int64_t chunk_count(int64_t units, int64_t weights) {
  if (weights < kMinParallelWeights || g_pool->size() == 1) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(units, g_pool->size() * kChunksPerThread));
}

// Below this many elements an op runs on the calling thread: waking the pool costs more than it saves.
constexpr int64_t kMinParallelElems = int64_t{1} << 15;

// Number of chunks for `elems` elements split into at most `units` pieces.
inline int64_t elem_chunks(int64_t elems, int64_t units) {
  if (elems < kMinParallelElems || g_pool->size() == 1) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(units, 4 * g_pool->size()));
}

// Scratch larger than this is refused (E_MEMORY) rather than attempted: 1 TiB, far above any real request.
constexpr int64_t kMaxScratchBytes = int64_t{1} << 40;

// A growing 64-byte aligned scratch buffer per thread (activations, GEMM packing). `get` returns nullptr when
// the size is absurd (saturated) or the allocation fails.
struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  ~Scratch() { free(p); }
  void* get(size_t bytes) {
    if (bytes > static_cast<size_t>(kMaxScratchBytes)) return nullptr;
    if (bytes > cap) {
      free(p);
      cap = (bytes + 63) & ~size_t{63};
      p = aligned_alloc(64, cap);
      if (p == nullptr) cap = 0;
    }
    return p;
  }
};

}  // namespace bd
