// Node-API glue, run-time ISA dispatch, the thread-pool drivers of every kernel, the ternary repack and the
// fp32 GEMM blocking. Compiled for the baseline ISA; the SIMD code is in kernels_<isa>.cc behind the
// IsaKernels tables. Arguments are checked here again (the TypeScript side checks first): a length that
// does not fit throws an error with code E_ARGUMENT (E_MEMORY when scratch cannot be had) instead of reading out
// of bounds; src/native.ts turns those into the project's typed errors. Every size a check compares is computed
// with saturating arithmetic (prod, sat_add), so no extreme dimension can overflow int64 into a passing check.
#include <node_api.h>
#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"
#include "tensor_ops.h"
#include "threadpool.h"

namespace bd {
namespace {

// ---------------------------------------------------------------------------------------------------------
// ISA detection and state

bool cpu_has_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512vnni() {
#if defined(__x86_64__) && defined(__GNUC__)
  // libgcc's __builtin_cpu_supports also checks that the OS saves the zmm state (XCR0).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni") && cpu_has_avx2();
#else
  return false;
#endif
}

// AMX-TILE + AMX-INT8 (CPUID.7.0:EDX bits 24, 25), and Linux's permission to use the tile data state
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA; process-wide, asked once).
bool cpu_has_amx() {
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
  static const bool ok = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if ((d & (1u << 24)) == 0 || (d & (1u << 25)) == 0) return false;
    constexpr int kArchReqXcompPerm = 0x1023;
    constexpr int kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

// The "amx" ISA: the AVX-512 VNNI table with the AMX ternary product.
const IsaKernels* amx_isa() {
  static const IsaKernels table = [] {
    IsaKernels t = *kAvx512VnniKernels;
    t.name = "amx";
    t.ternary = kAmxKernels->ternary;
    return t;
  }();
  return &table;
}

// Usable ISAs, lowest first.
std::vector<const IsaKernels*> available_isas() {
  std::vector<const IsaKernels*> out{kScalarKernels};
  if (kAvx2Kernels != nullptr && cpu_has_avx2()) out.push_back(kAvx2Kernels);
  if (kAvx512VnniKernels != nullptr && cpu_has_avx512vnni()) {
    out.push_back(kAvx512VnniKernels);
    if (kAmxKernels != nullptr && cpu_has_amx()) out.push_back(amx_isa());
  }
  return out;
}

// CPUs this process may run on (a container's cpuset or taskset, not the whole host).
int cpu_count() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

const IsaKernels* g_isa = nullptr;
ThreadPool* g_pool = nullptr;  // never destroyed: joining threads at process exit is not worth the risk
std::mutex g_run_mutex;

// Runs chunks 0..nchunks-1 of fn on the pool; a concurrent call (another Node worker thread) runs them on its
// own thread instead.
void parallel(int64_t nchunks, ThreadPool::Fn fn, void* ctx) {
  std::unique_lock<std::mutex> lock(g_run_mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, nchunks);
    return;
  }
  g_pool->run(nchunks, fn, ctx);
}

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

int64_t chunk_count(int64_t units, int64_t weights) {
  if (weights < kMinParallelWeights || g_pool->size() == 1) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(units, g_pool->size() * kChunksPerThread));
}

// Saturating size arithmetic: a product or sum that would overflow int64 (or has a negative operand) is INT64_MAX,
// which no buffer length reaches, so a `len < prod(...)` or `len != prod(...)` check fails closed.
constexpr int64_t kSat = INT64_MAX;
inline int64_t sat_mul(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return kSat;
  return r;
}
inline int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return kSat;
  return r;
}
inline int64_t prod(int64_t a) { return a < 0 ? kSat : a; }
template <typename... Rest>
inline int64_t prod(int64_t a, int64_t b, Rest... rest) {
  return prod(sat_mul(a, b), rest...);
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
thread_local Scratch t_xbuf, t_abuf, t_bbuf, t_kbuf, t_xvbuf;

// ---------------------------------------------------------------------------------------------------------
// Ternary repack: HF BitNet packing -> t4x256 (kernels.h). Returns -1, or the byte index (p * in + j) of the
// first byte that holds code 3 in a slot that belongs to a real row.

int64_t repack_ternary(const uint8_t* hf, int64_t out, int64_t in, uint8_t* dst) {
  const int64_t prow = (out + 3) / 4;  // packed rows; slot i of packed row p is original row i * prow + p
  for (int64_t p = 0; p < prow; p++) {
    const uint8_t* src = hf + p * in;
    int slots = 0;
    for (int i = 0; i < 4; i++)
      if (i * prow + p < out) slots++;
    const uint8_t bad_mask = static_cast<uint8_t>((1u << (2 * slots)) - 1);  // bits of the real rows
    for (int64_t j = 0; j < in; j++) {
      const uint8_t b = src[j];
      const uint8_t hi = static_cast<uint8_t>((b >> 1) & b & 0x55);  // low bit of each slot set iff code 3
      if ((hi & bad_mask) != 0) return p * in + j;
    }
  }
  const int64_t nblk = (in + kBlockCols - 1) / kBlockCols;
  const int64_t tiles = (out + kTileRows - 1) / kTileRows;
  memset(dst, 0x55, static_cast<size_t>(tiles * nblk * kTileBlockBytes));
  for (int64_t o = 0; o < out; o++) {
    const int64_t p = o % prow;
    const int shift = static_cast<int>(2 * (o / prow));
    const uint8_t* src = hf + p * in;
    const int64_t t = o / kTileRows;
    const int64_t r = o % kTileRows;
    for (int64_t k = 0; k < nblk; k++) {
      uint8_t* d = dst + ((t * nblk + k) * kTileRows + r) * kBlockBytes;
      for (int jj = 0; jj < kBlockBytes; jj++) {
        uint32_t byte = 0;
        for (int s = 0; s < 4; s++) {
          const int64_t j = k * kBlockCols + 64 * s + jj;
          const uint32_t code = j < in ? (src[j] >> shift) & 3u : 1u;
          byte |= code << (2 * s);
        }
        d[jj] = static_cast<uint8_t>(byte);
      }
    }
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------------
// Drivers

struct TernaryCtx {
  const IsaKernels* isa;
  TernaryJob job;
  int64_t tiles;
};

void ternary_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<TernaryCtx*>(p);
  int64_t b, e;
  split(c->tiles, chunk, n, &b, &e);
  if (b < e) c->isa->ternary(c->job, b, e);
}

struct MatvecCtx {
  const IsaKernels* isa;
  MatvecJob job;
};

void matvec_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<MatvecCtx*>(p);
  const int64_t quads = (c->job.rows + 3) / 4;
  int64_t b, e;
  split(quads, chunk, n, &b, &e);
  e = std::min(e * 4, c->job.rows);
  if (b * 4 < e) c->isa->matvec(c->job, b * 4, e);
}

// fp32 GEMM: C[m, n] = A[m, k] @ B[k, n] with A(i, p) = a[i * sai + p * sap], B(p, j) = b[p * sbp + j * sbj]
// (so a transpose is only a change of strides), C row-major with row stride ldc. Goto/BLIS blocking:
// a KC x NC panel of B and an MC x KC block of A are packed into the micro-kernel's order (zero padded to
// whole micro-tiles), then MR x NR micro-tiles of C are computed from them.
struct GemmView {
  const float* a;
  int64_t sai, sap;
  const float* b;
  int64_t sbp, sbj;
  float* c;
  int64_t ldc;
  int64_t m, n, k;
};

constexpr int64_t kKc = 256;

// dst[p * w + i] = element (i, p) of a strip of `rows` lines whose element (i, p) is at src[i * si + p * sp];
// zero for rows <= i < w. Strips contiguous along p (sp == 1) go to the ISA's transposing packer; the
// others are copies of `rows` contiguous values per p (si == 1) or strided loops.
void pack_strip(const IsaKernels& K, const float* src, int64_t si, int64_t sp, int64_t rows, int64_t kc, int w, float* dst) {
  if (sp == 1 && K.pack_trans != nullptr) {
    K.pack_trans(src, si, rows, kc, w, dst);
    return;
  }
  for (int64_t p = 0; p < kc; p++) {
    float* d = dst + p * w;
    const float* s = src + p * sp;
    if (si == 1) {
      for (int64_t i = 0; i < rows; i++) d[i] = s[i];  // 12 or 32 floats: a loop, not a memcpy call per p
    } else {
      for (int64_t i = 0; i < rows; i++) d[i] = s[i * si];
    }
    for (int64_t i = rows; i < w; i++) d[i] = 0.0f;
  }
}

void pack_a(const IsaKernels& K, const GemmView& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t is = 0; is < mc; is += K.mr) {
    const int64_t rows = std::min<int64_t>(K.mr, mc - is);
    pack_strip(K, g.a + (i0 + is) * g.sai + p0 * g.sap, g.sai, g.sap, rows, kc, K.mr, dst + is * kc);
  }
}

void pack_b(const IsaKernels& K, const GemmView& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t js = 0; js < nc; js += K.nr) {
    const int64_t cols = std::min<int64_t>(K.nr, nc - js);
    pack_strip(K, g.b + p0 * g.sbp + (j0 + js) * g.sbj, g.sbj, g.sbp, cols, kc, K.nr, dst + js * kc);
  }
}

void gemm_serial(const IsaKernels& K, const GemmView& g) {
  const int mr = K.mr, nr = K.nr;
  if (g.k == 0) {
    for (int64_t i = 0; i < g.m; i++) memset(g.c + i * g.ldc, 0, sizeof(float) * g.n);
    return;
  }
  const int64_t mc_max = mr * 16;
  const int64_t nc_max = nr * 64;
  float* abuf = static_cast<float*>(t_abuf.get(sizeof(float) * mc_max * kKc));
  float* bbuf = static_cast<float*>(t_bbuf.get(sizeof(float) * nc_max * kKc));
  if (abuf == nullptr || bbuf == nullptr) {  // no memory for the packed panels: plain loops
    for (int64_t i = 0; i < g.m; i++) {
      for (int64_t j = 0; j < g.n; j++) {
        float acc = 0.0f;
        for (int64_t p = 0; p < g.k; p++) acc += g.a[i * g.sai + p * g.sap] * g.b[p * g.sbp + j * g.sbj];
        g.c[i * g.ldc + j] = acc;
      }
    }
    return;
  }
  float tmp[32 * 32];  // one micro-tile (mr * nr <= 12 * 32)
  for (int64_t jc = 0; jc < g.n; jc += nc_max) {
    const int64_t nc = std::min(nc_max, g.n - jc);
    for (int64_t pc = 0; pc < g.k; pc += kKc) {
      const int64_t kc = std::min(kKc, g.k - pc);
      const int accumulate = pc > 0;
      pack_b(K, g, pc, kc, jc, nc, bbuf);
      for (int64_t ic = 0; ic < g.m; ic += mc_max) {
        const int64_t mc = std::min(mc_max, g.m - ic);
        pack_a(K, g, ic, mc, pc, kc, abuf);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int64_t ncols = std::min<int64_t>(nr, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int64_t nrows = std::min<int64_t>(mr, mc - ir);
            float* cp = g.c + (ic + ir) * g.ldc + jc + jr;
            if (nrows == mr && ncols == nr) {
              K.gemm_micro(kc, abuf + ir * kc, bbuf + jr * kc, cp, g.ldc, accumulate);
              continue;
            }
            K.gemm_micro(kc, abuf + ir * kc, bbuf + jr * kc, tmp, nr, 0);
            for (int64_t i = 0; i < nrows; i++) {
              for (int64_t j = 0; j < ncols; j++) {
                cp[i * g.ldc + j] = accumulate ? cp[i * g.ldc + j] + tmp[i * nr + j] : tmp[i * nr + j];
              }
            }
          }
        }
      }
    }
  }
}

struct GemmCtx {
  const IsaKernels* isa;
  GemmView g;
  bool split_n;
};

void gemm_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<GemmCtx*>(p);
  GemmView v = c->g;
  const int64_t unit = c->split_n ? c->isa->nr : c->isa->mr;
  const int64_t total = c->split_n ? v.n : v.m;
  int64_t b, e;
  split((total + unit - 1) / unit, chunk, n, &b, &e);
  b *= unit;
  e = std::min(e * unit, total);
  if (b >= e) return;
  if (c->split_n) {
    v.b += b * v.sbj;
    v.c += b;
    v.n = e - b;
  } else {
    v.a += b * v.sai;
    v.c += b * v.ldc;
    v.m = e - b;
  }
  gemm_serial(*c->isa, v);
}

// Split along k: chunk t computes the product over its k blocks into C (t = 0) or into partial[t - 1] (row
// stride n), and a second pass adds the partials into C.
struct GemmSplitKCtx {
  const IsaKernels* isa;
  GemmView g;
  float* partial;  // [nchunks - 1, m, n]
  int64_t nchunks;
};

void gemm_splitk_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<GemmSplitKCtx*>(p);
  GemmView v = c->g;
  int64_t b, e;
  split((v.k + kKc - 1) / kKc, chunk, n, &b, &e);
  b *= kKc;
  e = std::min(e * kKc, v.k);
  v.a += b * v.sap;
  v.b += b * v.sbp;
  v.k = e - b;
  if (chunk > 0) {
    v.c = c->partial + (chunk - 1) * v.m * v.n;
    v.ldc = v.n;
  }
  gemm_serial(*c->isa, v);
}

void gemm_splitk_sum_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<GemmSplitKCtx*>(p);
  const GemmView& g = c->g;
  int64_t b, e;
  split(g.m, chunk, n, &b, &e);
  for (int64_t i = b; i < e; i++) {
    float* ci = g.c + i * g.ldc;
    for (int64_t t = 0; t + 1 < c->nchunks; t++) {
      const float* pi = c->partial + (t * g.m + i) * g.n;
      for (int64_t j = 0; j < g.n; j++) ci[j] += pi[j];
    }
  }
}

// Largest C (floats) that a product may split along k for: the partial sums cost one extra pass over C each.
constexpr int64_t kSplitKMaxC = int64_t{1} << 20;

// One product on the pool. Splitting along n or m makes every thread pack its own copy of the other operand's
// panels; a long k with a small C (the weight gradients x^T dy of a training step: C is [in, out], k the
// tokens) is split along k instead, which packs nothing twice.
void gemm_parallel(const IsaKernels* isa, const GemmView& g) {
  const int threads = g_pool->size();
  if (g.m * g.n * g.k < (int64_t{1} << 18) || threads == 1) {
    gemm_serial(*isa, g);
    return;
  }
  const int64_t kblocks = (g.k + kKc - 1) / kKc;
  if (kblocks >= threads && g.k >= std::max(g.m, g.n) && g.m * g.n * (threads - 1) <= kSplitKMaxC) {
    GemmSplitKCtx ctx{isa, g, nullptr, threads};
    ctx.partial = static_cast<float*>(t_kbuf.get(sizeof(float) * static_cast<size_t>((threads - 1) * g.m * g.n)));
    if (ctx.partial != nullptr) {
      parallel(threads, gemm_splitk_task, &ctx);
      parallel(threads, gemm_splitk_sum_task, &ctx);
      return;
    }
  }
  GemmCtx ctx{};
  ctx.isa = isa;
  ctx.g = g;
  ctx.split_n = g.n >= g.m;
  // One chunk per thread: every chunk packs its own panels, so more chunks would repeat that work.
  parallel(threads, gemm_task, &ctx);
}

// A batch of GEMMs C_i = op(A_{aidx[i]}) @ op(B_{bidx[i]}) (tfjs BatchMatMul after batch broadcasting): item i
// reads matrix aidx[i] of A (m * k floats each) and bidx[i] of B (k * n each) and writes matrix i of C.
struct GemmBatchCtx {
  const IsaKernels* isa;
  GemmView g;  // item 0 with matrix 0 of A and B
  const int32_t* aidx;
  const int32_t* bidx;
  int64_t batch;
};

void gemm_batch_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<GemmBatchCtx*>(p);
  int64_t b, e;
  split(c->batch, chunk, n, &b, &e);
  for (int64_t i = b; i < e; i++) {
    GemmView v = c->g;
    v.a += c->aidx[i] * v.m * v.k;
    v.b += c->bidx[i] * v.k * v.n;
    v.c += i * v.m * v.n;
    gemm_serial(*c->isa, v);
  }
}

struct StreamCtx {
  StreamFn fn;
  const uint8_t* p;
  size_t n;
  int streams;  // concurrent sequential streams per chunk
  std::atomic<uint64_t> sum{0};
};

// One chunk read as `streams` equal sequential parts in lockstep, 4 KiB of each in turn: that many concurrent
// streams per thread for the hardware prefetchers (one stream per thread does not saturate some memory systems).
void stream_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<StreamCtx*>(p);
  const size_t lines = c->n / 64;  // chunk borders on 64-byte boundaries keep the checksum split-invariant
  const size_t b = lines * chunk / n * 64;
  const size_t e = chunk == n - 1 ? c->n : lines * (chunk + 1) / n * 64;
  if (c->streams <= 1) {
    c->sum.fetch_add(c->fn(c->p + b, e - b), std::memory_order_relaxed);
    return;
  }
  constexpr size_t kStep = 4096;
  const size_t S = static_cast<size_t>(c->streams);
  const size_t part = (e - b) / S / 64 * 64;
  uint64_t sum = 0;
  for (size_t off = 0; off < part; off += kStep) {
    const size_t len = std::min(kStep, part - off);
    for (size_t s = 0; s < S; s++) sum += c->fn(c->p + b + s * part + off, len);
  }
  sum += c->fn(c->p + b + S * part, e - b - S * part);  // the remainder
  c->sum.fetch_add(sum, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------------------
// Node-API helpers

bool throw_if(napi_env env, bool cond, const char* msg) {
  if (cond) napi_throw_range_error(env, "E_ARGUMENT", msg);
  return cond;
}

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return false;
  if (argc < want) {
    napi_throw_type_error(env, "E_ARGUMENT", "too few arguments");
    return false;
  }
  return true;
}

bool get_i64(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t* out, const char* what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= static_cast<double>(lo)) ||
      !(d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d))) {
    std::string msg = std::string(what) + " must be an integer in range";
    napi_throw_range_error(env, "E_ARGUMENT", msg.c_str());
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

bool get_f64(napi_env env, napi_value v, double* out) {
  if (napi_get_value_double(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "E_ARGUMENT", "expected a number");
    return false;
  }
  return true;
}

bool get_bool(napi_env env, napi_value v, bool* out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "E_ARGUMENT", "expected a boolean");
    return false;
  }
  return true;
}

// A typed array of the given type: its data pointer (offset applied) and element count.
template <typename T>
bool get_typed(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* len, const char* what) {
  bool is_ta = false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, &ptr, &ab, &off) != napi_ok || type != want) {
    std::string msg = std::string(what) + " has the wrong typed-array type";
    napi_throw_type_error(env, "E_ARGUMENT", msg.c_str());
    return false;
  }
  *data = static_cast<T*>(ptr);
  return true;
}

napi_value make_number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

napi_value make_string(napi_env env, const char* s) {
  napi_value out;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

constexpr int64_t kMaxDim = int64_t{1} << 31;

// ---------------------------------------------------------------------------------------------------------
// Exported functions

// info() -> {isa, available: string[], threads, cpus}
// The data/unified caches CPUID describes (deterministic cache parameters: leaf 4 on Intel, 0x8000001D on AMD
// with TopologyExtensions), as {level, type, bytes, sharedBy}. A VM's sysfs often has no L3 entry while CPUID
// passes the host's through; the benchmarks size their cold-weight rotation from this.
struct CacheLevel {
  int level;
  int type;  // 1 data, 3 unified
  int64_t bytes;
  int shared_by;
  bool legacy;  // AMD's older leaf 0x80000006 (L3 of the whole package on some parts)
};

std::vector<CacheLevel> cpuid_caches() {
  std::vector<CacheLevel> out;
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return out;
  const bool amd = b == 0x68747541u || b == 0x6f677948u;  // "Auth"enticAMD, "Hygo"nGenuine
  unsigned leaf = 4;
  if (amd) {
    // Leaf 0x80000006 EDX[31:18]: L3 size in 512 KiB units. Under a VM it can describe the host package (tens of
    // CCXs) where 0x8000001D describes one CCX; both are reported and a benchmark takes the larger.
    if (__get_cpuid(0x80000006u, &a, &b, &c, &d) && (d >> 18) != 0) out.push_back({3, 3, static_cast<int64_t>(d >> 18) * 512 * 1024, 0, true});
    if (!__get_cpuid(0x80000001u, &a, &b, &c, &d) || (c & (1u << 22)) == 0) return out;
    leaf = 0x8000001Du;
  } else if (a < 4) {
    return out;
  }
  for (unsigned i = 0; i < 16; i++) {
    __cpuid_count(leaf, i, a, b, c, d);
    const int type = static_cast<int>(a & 31);
    if (type == 0) break;
    if (type == 2) continue;  // instruction cache
    const int64_t ways = ((b >> 22) & 1023) + 1, parts = ((b >> 12) & 1023) + 1, line = (b & 4095) + 1, sets = static_cast<int64_t>(c) + 1;
    out.push_back({static_cast<int>((a >> 5) & 7), type, ways * parts * line * sets, static_cast<int>(((a >> 14) & 4095) + 1), false});
  }
#endif
  return out;
}

napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, arr;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "isa", make_string(env, g_isa->name));
  auto isas = available_isas();
  napi_create_array_with_length(env, isas.size(), &arr);
  for (size_t i = 0; i < isas.size(); i++) napi_set_element(env, arr, static_cast<uint32_t>(i), make_string(env, isas[i]->name));
  napi_set_named_property(env, obj, "available", arr);
  napi_set_named_property(env, obj, "threads", make_number(env, g_pool->size()));
  napi_set_named_property(env, obj, "cpus", make_number(env, cpu_count()));
  const auto caches = cpuid_caches();
  napi_value carr;
  napi_create_array_with_length(env, caches.size(), &carr);
  for (size_t i = 0; i < caches.size(); i++) {
    napi_value o;
    napi_create_object(env, &o);
    napi_set_named_property(env, o, "level", make_number(env, caches[i].level));
    napi_set_named_property(env, o, "type", make_string(env, caches[i].type == 1 ? "data" : "unified"));
    napi_set_named_property(env, o, "bytes", make_number(env, static_cast<double>(caches[i].bytes)));
    napi_set_named_property(env, o, "sharedBy", make_number(env, caches[i].shared_by));
    napi_set_named_property(env, o, "leaf", make_string(env, caches[i].legacy ? "0x80000006" : "deterministic"));
    napi_set_element(env, carr, static_cast<uint32_t>(i), o);
  }
  napi_set_named_property(env, obj, "caches", carr);
  return obj;
}

// setIsa(name) -> boolean (false: not available on this CPU or build)
napi_value SetIsa(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return nullptr;
  char name[32];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &len) != napi_ok) {
    napi_throw_type_error(env, "E_ARGUMENT", "setIsa: expected a string");
    return nullptr;
  }
  bool found = false;
  for (const IsaKernels* k : available_isas()) {
    if (strcmp(k->name, name) == 0) {
      g_isa = k;
      found = true;
    }
  }
  napi_value out;
  napi_get_boolean(env, found, &out);
  return out;
}

// setThreads(n) -> n
napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t n;
  if (!get_args(env, info, 1, argv) || !get_i64(env, argv[0], 1, 256, &n, "threads")) return nullptr;
  std::lock_guard<std::mutex> lock(g_run_mutex);
  g_pool->resize(static_cast<int>(n));
  return make_number(env, static_cast<double>(n));
}

// misalignment(bytes: Uint8Array) -> address of bytes[0] modulo 64. ArrayBuffer memory does not move, so
// JS can over-allocate and view a cache-line aligned window (memory that V8 owns and frees promptly).
napi_value Misalignment(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t* p;
  size_t n;
  if (!get_args(env, info, 1, argv) || !get_typed(env, argv[0], napi_uint8_array, &p, &n, "bytes")) return nullptr;
  return make_number(env, static_cast<double>(reinterpret_cast<uintptr_t>(p) % 64));
}

// repackTernary(hf: Uint8Array, out, in, dst: Uint8Array) -> -1, or the index of a byte holding code 3
napi_value RepackTernary(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return nullptr;
  uint8_t *hf, *dst;
  size_t hf_len, dst_len;
  int64_t out, in;
  if (!get_typed(env, argv[0], napi_uint8_array, &hf, &hf_len, "hf") ||
      !get_i64(env, argv[1], 1, kMaxDim, &out, "out") || !get_i64(env, argv[2], 1, kMaxDim, &in, "in") ||
      !get_typed(env, argv[3], napi_uint8_array, &dst, &dst_len, "dst"))
    return nullptr;
  const int64_t need = prod((out + 3) / 4, (in + kBlockCols - 1) / kBlockCols, kTileBlockBytes);
  if (throw_if(env, static_cast<int64_t>(hf_len) != prod((out + 3) / 4, in), "repackTernary: hf is not [ceil(out/4), in]") ||
      throw_if(env, static_cast<int64_t>(dst_len) < need, "repackTernary: dst too small"))
    return nullptr;
  return make_number(env, static_cast<double>(repack_ternary(hf, out, in, dst)));
}

// ternaryMatMul(w, rows, cols, x: Int8Array [batch, cols], batch, y: Int32Array | Float32Array [batch, rows],
//               actScale?: Float32Array [batch], weightScale?: number, float32Factor?: boolean)
// With a Float32Array y: y = acc * (weightScale / actScale[b]), the product done in double (with float32Factor,
// the factor is rounded to float32 before the product).
// Runs the ternary product of ctx (w, rows, nblk, tiles, y or yf + factor set) on int8 activations x [batch,
// cols]: a zero-padded copy of x (the kernels read whole 256-column blocks) and its row sums, the AMX layout
// where that path runs, then the tiles on the pool. False when the scratch cannot be allocated.
bool ternary_product(TernaryCtx* ctx, const int8_t* x, int64_t cols, int64_t batch) {
  const int64_t xs = ctx->job.nblk * kBlockCols;
  const size_t xbytes = static_cast<size_t>(batch * xs);
  int8_t* xp = static_cast<int8_t*>(t_xbuf.get(xbytes + sizeof(int32_t) * batch));
  if (xp == nullptr) return false;
  int32_t* xsum = reinterpret_cast<int32_t*>(xp + xbytes);  // xbytes is a multiple of 256
  for (int64_t b = 0; b < batch; b++) xsum[b] = g_isa->prep_x(x + b * cols, cols, xp + b * xs, xs);
  ctx->job.xv = nullptr;
  if (kAmxKernels != nullptr && g_isa->ternary == kAmxKernels->ternary && batch >= kAmxKernels->min_batch) {
    int8_t* xv = static_cast<int8_t*>(t_xvbuf.get(static_cast<size_t>((batch + 15) / 16 * 16 * xs)));
    if (xv == nullptr) return false;
    kAmxKernels->prep_xv(xp, batch, xs, xv);
    ctx->job.xv = xv;
  }
  ctx->job.x = xp;
  ctx->job.xsum = xsum;
  ctx->job.batch = batch;
  parallel(chunk_count(ctx->tiles, ctx->job.rows * cols), ternary_task, ctx);
  return true;
}

napi_value TernaryMatMul(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  size_t argc = 10;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (throw_if(env, argc != 6 && argc != 8 && argc != 9 && argc != 10, "ternaryMatMul: expected 6, 8, 9 or 10 arguments")) return nullptr;
  uint8_t* w;
  int8_t* x;
  size_t w_len, x_len, y_len;
  int64_t rows, cols, batch;
  if (!get_typed(env, argv[0], napi_uint8_array, &w, &w_len, "w") ||
      !get_i64(env, argv[1], 1, kMaxDim, &rows, "rows") || !get_i64(env, argv[2], 1, int64_t{1} << 23, &cols, "cols") ||
      !get_typed(env, argv[3], napi_int8_array, &x, &x_len, "x") ||
      !get_i64(env, argv[4], 1, 1 << 20, &batch, "batch"))
    return nullptr;
  TernaryCtx ctx{};
  ctx.isa = g_isa;
  ctx.job.nblk = (cols + kBlockCols - 1) / kBlockCols;
  ctx.tiles = (rows + kTileRows - 1) / kTileRows;
  if (throw_if(env, static_cast<int64_t>(w_len) < prod(ctx.tiles, ctx.job.nblk, kTileBlockBytes), "ternaryMatMul: w too small") ||
      throw_if(env, static_cast<int64_t>(x_len) < prod(batch, cols), "ternaryMatMul: x too small"))
    return nullptr;
  std::vector<double> factor;
  std::vector<int64_t> seg_end;
  if (argc >= 8) {
    float* act;
    size_t act_len;
    if (!get_typed(env, argv[5], napi_float32_array, &ctx.job.yf, &y_len, "y") ||
        !get_typed(env, argv[6], napi_float32_array, &act, &act_len, "actScale"))
      return nullptr;
    // weightScale: one number, or (argc 10) a Float64Array of per-segment scales with argv[9] an Int32Array of
    // each segment's end row (strictly increasing, the last = rows): matrices stacked by rows, each with its scale.
    std::vector<double> ws;
    if (argc == 10) {
      double* wsp;
      int32_t* ends;
      size_t ns, ne;
      if (!get_typed(env, argv[7], napi_float64_array, &wsp, &ns, "weightScale") || !get_typed(env, argv[9], napi_int32_array, &ends, &ne, "segmentEnds")) return nullptr;
      bool ok = ns >= 1 && ns == ne && ends[ns - 1] == rows;
      for (size_t s = 0; ok && s < ns; s++) ok = ends[s] > (s == 0 ? 0 : ends[s - 1]);
      if (throw_if(env, !ok, "ternaryMatMul: segmentEnds must rise strictly to rows, one per weightScale")) return nullptr;
      ws.assign(wsp, wsp + ns);
      seg_end.assign(ends, ends + ne);
    } else {
      double w1;
      if (!get_f64(env, argv[7], &w1)) return nullptr;
      ws.push_back(w1);
      seg_end.push_back(rows);
    }
    if (throw_if(env, static_cast<int64_t>(act_len) < batch, "ternaryMatMul: actScale too small")) return nullptr;
    bool f32_factor = false;
    if (argc >= 9 && napi_get_value_bool(env, argv[8], &f32_factor) != napi_ok) {
      napi_throw_type_error(env, "E_ARGUMENT", "ternaryMatMul: float32Factor must be a boolean");
      return nullptr;
    }
    factor.resize(ws.size() * static_cast<size_t>(batch));
    for (size_t s = 0; s < ws.size(); s++) {
      for (int64_t b = 0; b < batch; b++) {
        const double f = ws[s] / static_cast<double>(act[b]);
        // float32Factor: the factor rounded to float32 first (the runtime's Math.fround(scale / s)).
        factor[s * static_cast<size_t>(batch) + static_cast<size_t>(b)] = f32_factor ? static_cast<double>(static_cast<float>(f)) : f;
      }
    }
    ctx.job.factor = factor.data();
    ctx.job.seg_end = seg_end.data();
  } else if (!get_typed(env, argv[5], napi_int32_array, &ctx.job.y, &y_len, "y")) {
    return nullptr;
  }
  if (throw_if(env, static_cast<int64_t>(y_len) < prod(batch, rows), "ternaryMatMul: y too small")) return nullptr;

  ctx.job.w = w;
  ctx.job.rows = rows;
  if (!ternary_product(&ctx, x, cols, batch)) {
    napi_throw_error(env, "E_MEMORY", "ternaryMatMul: out of memory");
    return nullptr;
  }
  return nullptr;
}

// quantizeActivations(x: Float32Array [rows, dim], rows, dim, q: Int8Array [rows, dim], scale: Float32Array [rows])
napi_value QuantizeActivations(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return nullptr;
  float *x, *scale;
  int8_t* q;
  size_t xl, ql, sl;
  int64_t rows, dim;
  if (!get_typed(env, argv[0], napi_float32_array, &x, &xl, "x") || !get_i64(env, argv[1], 0, kMaxDim, &rows, "rows") ||
      !get_i64(env, argv[2], 1, kMaxDim, &dim, "dim") || !get_typed(env, argv[3], napi_int8_array, &q, &ql, "q") ||
      !get_typed(env, argv[4], napi_float32_array, &scale, &sl, "scale"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(xl) < prod(rows, dim) || static_cast<int64_t>(ql) < prod(rows, dim) || static_cast<int64_t>(sl) < rows,
               "quantizeActivations: array too small"))
    return nullptr;
  for (int64_t r = 0; r < rows; r++) scale[r] = g_isa->quantize(x + r * dim, dim, q + r * dim);
  return nullptr;
}

// matvecF32(w: Float32Array [rows, cols], x: [batch, cols], y: [batch, rows], rows, cols, batch)
napi_value MatvecF32(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv)) return nullptr;
  MatvecCtx ctx{};
  ctx.isa = g_isa;
  float *w, *x, *y;
  size_t wl, xl, yl;
  if (!get_typed(env, argv[0], napi_float32_array, &w, &wl, "w") ||
      !get_typed(env, argv[1], napi_float32_array, &x, &xl, "x") ||
      !get_typed(env, argv[2], napi_float32_array, &y, &yl, "y") ||
      !get_i64(env, argv[3], 1, kMaxDim, &ctx.job.rows, "rows") || !get_i64(env, argv[4], 1, kMaxDim, &ctx.job.cols, "cols") ||
      !get_i64(env, argv[5], 1, 1 << 20, &ctx.job.batch, "batch"))
    return nullptr;
  const MatvecJob& j = ctx.job;
  if (throw_if(env, static_cast<int64_t>(wl) < prod(j.rows, j.cols) || static_cast<int64_t>(xl) < prod(j.batch, j.cols) ||
                        static_cast<int64_t>(yl) < prod(j.batch, j.rows),
               "matvecF32: array too small"))
    return nullptr;
  ctx.job.w = w;
  ctx.job.x = x;
  ctx.job.y = y;
  parallel(chunk_count((j.rows + 3) / 4, j.rows * j.cols), matvec_task, &ctx);
  return nullptr;
}

// gemmF32(a, b, c, m, k, n, transA, transB): C[m, n] = op(A) @ op(B); A is [m, k] ([k, m] if transA),
// B is [k, n] ([n, k] if transB), C is [m, n], all row-major Float32Arrays.
napi_value GemmF32(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, 8, argv)) return nullptr;
  float *a, *b, *c;
  size_t al, bl, cl;
  int64_t m, k, n;
  bool ta, tb;
  if (!get_typed(env, argv[0], napi_float32_array, &a, &al, "a") ||
      !get_typed(env, argv[1], napi_float32_array, &b, &bl, "b") ||
      !get_typed(env, argv[2], napi_float32_array, &c, &cl, "c") || !get_i64(env, argv[3], 0, kMaxDim, &m, "m") ||
      !get_i64(env, argv[4], 0, kMaxDim, &k, "k") || !get_i64(env, argv[5], 0, kMaxDim, &n, "n") ||
      !get_bool(env, argv[6], &ta) || !get_bool(env, argv[7], &tb))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(al) < prod(m, k) || static_cast<int64_t>(bl) < prod(k, n) || static_cast<int64_t>(cl) < prod(m, n),
               "gemmF32: array too small"))
    return nullptr;
  if (m == 0 || n == 0) return nullptr;
  gemm_parallel(g_isa, GemmView{a, ta ? 1 : k, ta ? m : 1, b, tb ? 1 : n, tb ? k : 1, c, n, m, n, k});
  return nullptr;
}

// gemmBatchF32(a, b, c, m, k, n, transA, transB, aidx: Int32Array, bidx: Int32Array): for i < aidx.length,
// C_i = op(A_{aidx[i]}) @ op(B_{bidx[i]}) with the layouts of gemmF32; A holds matrices of m * k floats, B of
// k * n, C is [aidx.length, m, n].
napi_value GemmBatchF32(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!get_args(env, info, 10, argv)) return nullptr;
  float *a, *b, *c;
  int32_t *ai, *bi;
  size_t al, bl, cl, ail, bil;
  int64_t m, k, n;
  bool ta, tb;
  if (!get_typed(env, argv[0], napi_float32_array, &a, &al, "a") ||
      !get_typed(env, argv[1], napi_float32_array, &b, &bl, "b") ||
      !get_typed(env, argv[2], napi_float32_array, &c, &cl, "c") || !get_i64(env, argv[3], 0, kMaxDim, &m, "m") ||
      !get_i64(env, argv[4], 0, kMaxDim, &k, "k") || !get_i64(env, argv[5], 0, kMaxDim, &n, "n") ||
      !get_bool(env, argv[6], &ta) || !get_bool(env, argv[7], &tb) ||
      !get_typed(env, argv[8], napi_int32_array, &ai, &ail, "aidx") ||
      !get_typed(env, argv[9], napi_int32_array, &bi, &bil, "bidx"))
    return nullptr;
  const int64_t batch = static_cast<int64_t>(ail);
  if (throw_if(env, bil != ail, "gemmBatchF32: aidx and bidx differ in length") ||
      throw_if(env, static_cast<int64_t>(cl) < prod(batch, m, n), "gemmBatchF32: c too small"))
    return nullptr;
  for (int64_t i = 0; i < batch; i++) {
    if (throw_if(env, ai[i] < 0 || prod(ai[i] + int64_t{1}, m, k) > static_cast<int64_t>(al), "gemmBatchF32: aidx out of range") ||
        throw_if(env, bi[i] < 0 || prod(bi[i] + int64_t{1}, k, n) > static_cast<int64_t>(bl), "gemmBatchF32: bidx out of range"))
      return nullptr;
  }
  if (batch == 0 || m == 0 || n == 0) return nullptr;
  const GemmView g{a, ta ? 1 : k, ta ? m : 1, b, tb ? 1 : n, tb ? k : 1, c, n, m, n, k};
  const int64_t work = m * n * k;
  const int threads = g_pool->size();
  if (batch >= 2 * threads || work * batch < (int64_t{1} << 18)) {
    // Many items (attention heads) or a small product: whole items per chunk, claimed dynamically.
    GemmBatchCtx ctx{g_isa, g, ai, bi, batch};
    parallel(work * batch < (int64_t{1} << 18) ? 1 : std::min<int64_t>(batch, 4 * threads), gemm_batch_task, &ctx);
    return nullptr;
  }
  // Few large items: split each one across the pool, as gemmF32 does.
  for (int64_t i = 0; i < batch; i++) {
    GemmView v = g;
    v.a += ai[i] * m * k;
    v.b += bi[i] * k * n;
    v.c += i * m * n;
    gemm_parallel(g_isa, v);
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// Tensor ops (tensor_ops.h): elementwise, broadcast, reduction and copy kernels behind tfjs's wasm kernels.

// Below this many elements an op runs on the calling thread: waking the pool costs more than it saves.
constexpr int64_t kMinParallelElems = int64_t{1} << 15;

// Number of chunks for `elems` elements split into at most `units` pieces.
int64_t elem_chunks(int64_t elems, int64_t units) {
  if (elems < kMinParallelElems || g_pool->size() == 1) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(units, 4 * g_pool->size()));
}

// An Int32Array of dims or strides (rank <= kMaxRank), copied out.
constexpr int kMaxRank = 8;
bool get_dims(napi_env env, napi_value v, int64_t* out, size_t* rank, const char* what) {
  int32_t* p;
  size_t n;
  if (!get_typed(env, v, napi_int32_array, &p, &n, what)) return false;
  if (throw_if(env, n > kMaxRank, "tensor op: rank above 8")) return false;
  for (size_t i = 0; i < n; i++) {
    if (throw_if(env, p[i] < 0, "tensor op: negative dim or stride")) return false;
    out[i] = p[i];
  }
  *rank = n;
  return true;
}

// Largest element index a strided view touches (-1 for an empty shape).
int64_t max_index(const int64_t* shape, const int64_t* strides, size_t rank) {
  int64_t m = 0;
  for (size_t d = 0; d < rank; d++) {
    if (shape[d] == 0) return -1;
    m = sat_add(m, sat_mul(shape[d] - 1, strides[d]));
  }
  return m;
}

// A broadcast view's strides over `rank` dims: rows are the dims before the last, decoded with an odometer.
struct Strided {
  int64_t shape[kMaxRank];
  int64_t sa[kMaxRank];
  int64_t sb[kMaxRank];
  size_t rank;
  int64_t rows;    // product of shape[0 .. rank-2]
  int64_t n;       // shape[rank-1]
  int64_t pieces;  // column pieces per row (work item = (row, piece))
};

// Calls fn(row offset into a, offset into b, row index, column begin, column end) for work items [w0, w1).
template <typename Fn>
void for_rows(const Strided& v, int64_t w0, int64_t w1, Fn fn) {
  for (int64_t w = w0; w < w1; w++) {
    const int64_t row = w / v.pieces, piece = w % v.pieces;
    int64_t oa = 0, ob = 0, rem = row;
    for (size_t d = v.rank - 1; d-- > 0;) {
      const int64_t i = rem % v.shape[d];
      rem /= v.shape[d];
      oa += i * v.sa[d];
      ob += i * v.sb[d];
    }
    int64_t c0, c1;
    split(v.n, piece, v.pieces, &c0, &c1);
    if (c0 < c1) fn(oa, ob, row, c0, c1);
  }
}

bool get_strided(napi_env env, napi_value shape, napi_value sa, napi_value sb, Strided* v) {
  size_t r1, r2, r3;
  if (!get_dims(env, shape, v->shape, &r1, "shape") || !get_dims(env, sa, v->sa, &r2, "aStrides") ||
      !get_dims(env, sb, v->sb, &r3, "bStrides"))
    return false;
  if (throw_if(env, r1 == 0 || r1 != r2 || r1 != r3, "tensor op: shape and strides must have one equal rank >= 1")) return false;
  v->rank = r1;
  v->rows = 1;
  for (size_t d = 0; d + 1 < r1; d++) v->rows *= v->shape[d];
  v->n = v->shape[r1 - 1];
  if (throw_if(env, v->sa[r1 - 1] > 1 || v->sb[r1 - 1] > 1, "tensor op: innermost strides must be 0 or 1")) return false;
  return true;
}

// Chooses column pieces so that even one long row is split across the pool.
int64_t plan_pieces(Strided* v) {
  const int64_t elems = v->rows * v->n;
  const int64_t want = elem_chunks(elems, elems / 4096 + 1);
  v->pieces = v->rows >= want ? 1 : std::max<int64_t>(1, std::min<int64_t>(want / std::max<int64_t>(v->rows, 1), v->n / 1024 + 1));
  return v->rows * v->pieces;
}

template <typename T, typename Out>
struct BinaryCtx {
  int op;
  const T* a;
  const T* b;
  Out* y;
  Strided v;
  int64_t items;
  void (*row)(int, const T*, int64_t, const T*, int64_t, Out*, int64_t);
};

template <typename T, typename Out>
void binary_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<BinaryCtx<T, Out>*>(p);
  int64_t w0, w1;
  split(c->items, chunk, nchunks, &w0, &w1);
  const int64_t sa = c->v.sa[c->v.rank - 1], sb = c->v.sb[c->v.rank - 1];
  for_rows(c->v, w0, w1, [&](int64_t oa, int64_t ob, int64_t row, int64_t c0, int64_t c1) {
    c->row(c->op, c->a + oa + c0 * sa, sa, c->b + ob + c0 * sb, sb, c->y + row * c->v.n + c0, c1 - c0);
  });
}

template <typename T, typename Out>
void run_binary(int op, const T* a, size_t al, const T* b, size_t bl, Out* y, size_t yl, const Strided& v0,
                void (*row)(int, const T*, int64_t, const T*, int64_t, Out*, int64_t), napi_env env, const char* what) {
  BinaryCtx<T, Out> ctx{op, a, b, y, v0, 0, row};
  const int64_t total = prod(ctx.v.rows, ctx.v.n);
  if (throw_if(env, static_cast<int64_t>(yl) < total, what) ||
      throw_if(env, max_index(ctx.v.shape, ctx.v.sa, ctx.v.rank) >= static_cast<int64_t>(al), what) ||
      throw_if(env, max_index(ctx.v.shape, ctx.v.sb, ctx.v.rank) >= static_cast<int64_t>(bl), what))
    return;
  if (total == 0) return;
  ctx.items = plan_pieces(&ctx.v);
  parallel(elem_chunks(total, ctx.items), binary_task<T, Out>, &ctx);
}

// binaryF32(op, a, b, y, shape: Int32Array, aStrides, bStrides): y[idx] = a[idx . aStrides] op b[idx . bStrides]
// over the row-major index space of shape (y contiguous); innermost strides are 0 or 1.
napi_value BinaryF32(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return nullptr;
  int64_t op;
  float *a, *b, *y;
  size_t al, bl, yl;
  Strided v{};
  if (!get_i64(env, argv[0], 0, kBinaryCount - 1, &op, "op") || !get_typed(env, argv[1], napi_float32_array, &a, &al, "a") ||
      !get_typed(env, argv[2], napi_float32_array, &b, &bl, "b") || !get_typed(env, argv[3], napi_float32_array, &y, &yl, "y") ||
      !get_strided(env, argv[4], argv[5], argv[6], &v))
    return nullptr;
  run_binary<float, float>(static_cast<int>(op), a, al, b, bl, y, yl, v, binary_f32, env, "binaryF32: array too small for the shape");
  return nullptr;
}

// compare(op, isInt32, a, b, y: Uint8Array, shape, aStrides, bStrides): y = a op b as 0 / 1 (tfjs bool).
napi_value Compare(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, 8, argv)) return nullptr;
  int64_t op;
  bool is_int;
  uint8_t* y;
  size_t al, bl, yl;
  Strided v{};
  if (!get_i64(env, argv[0], 0, kCompareCount - 1, &op, "op") || !get_bool(env, argv[1], &is_int) ||
      !get_typed(env, argv[4], napi_uint8_array, &y, &yl, "y") || !get_strided(env, argv[5], argv[6], argv[7], &v))
    return nullptr;
  const char* what = "compare: array too small for the shape";
  if (is_int) {
    int32_t *a, *b;
    if (!get_typed(env, argv[2], napi_int32_array, &a, &al, "a") || !get_typed(env, argv[3], napi_int32_array, &b, &bl, "b")) return nullptr;
    run_binary<int32_t, uint8_t>(static_cast<int>(op), a, al, b, bl, y, yl, v, compare_i32, env, what);
  } else {
    float *a, *b;
    if (!get_typed(env, argv[2], napi_float32_array, &a, &al, "a") || !get_typed(env, argv[3], napi_float32_array, &b, &bl, "b")) return nullptr;
    run_binary<float, uint8_t>(static_cast<int>(op), a, al, b, bl, y, yl, v, compare_f32, env, what);
  }
  return nullptr;
}

struct UnaryCtx {
  int op;
  const float* x;
  float* y;
  int64_t n;
  float lo, hi;
};

void unary_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<UnaryCtx*>(p);
  int64_t b, e;
  split(c->n / 16, chunk, nchunks, &b, &e);  // chunk borders on multiples of 16 elements (64 bytes)
  b *= 16;
  e = chunk == nchunks - 1 ? c->n : e * 16;
  if (b < e) unary_f32(c->op, c->x + b, c->y + b, e - b, c->lo, c->hi);
}

// unaryF32(op, x, y, lo, hi): y = op(x) elementwise; lo, hi bound kClip.
struct AdamwCtx {
  const float* p;
  const float* g;
  float* m;
  float* v;
  float* out;
  int64_t n;
  AdamwParams h;
};

void adamw_task(void* q, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<AdamwCtx*>(q);
  int64_t b, e;
  split(c->n, chunk, nchunks, &b, &e);
  if (b < e) adamw_f32(c->p + b, c->g + b, c->m + b, c->v + b, c->out + b, e - b, c->h);
}

// adamwF32(p, g, m, v, out, [beta1, beta2, eps, decay, lr, bc1, bc2, gradScale]): one AdamW update, m and v
// in place, the new parameter into out (which may be p).
napi_value AdamwF32(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv)) return nullptr;
  float *p, *g, *m, *v, *out;
  double* h;
  size_t pl, gl, ml, vl, ol, hl;
  if (!get_typed(env, argv[0], napi_float32_array, &p, &pl, "p") || !get_typed(env, argv[1], napi_float32_array, &g, &gl, "g") ||
      !get_typed(env, argv[2], napi_float32_array, &m, &ml, "m") || !get_typed(env, argv[3], napi_float32_array, &v, &vl, "v") ||
      !get_typed(env, argv[4], napi_float32_array, &out, &ol, "out") || !get_typed(env, argv[5], napi_float64_array, &h, &hl, "hyper"))
    return nullptr;
  if (throw_if(env, gl != pl || ml != pl || vl != pl || ol != pl, "adamwF32: p, g, m, v and out must have the same length")) return nullptr;
  if (throw_if(env, hl != 8, "adamwF32: hyper must hold 8 values")) return nullptr;
  AdamwCtx ctx{p, g, m, v, out, static_cast<int64_t>(pl), AdamwParams{h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]}};
  parallel(elem_chunks(ctx.n, ctx.n / 4096 + 1), adamw_task, &ctx);
  return nullptr;
}

napi_value UnaryF32(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return nullptr;
  int64_t op;
  float *x, *y;
  size_t xl, yl;
  double lo, hi;
  if (!get_i64(env, argv[0], 0, kUnaryCount - 1, &op, "op") || !get_typed(env, argv[1], napi_float32_array, &x, &xl, "x") ||
      !get_typed(env, argv[2], napi_float32_array, &y, &yl, "y") || !get_f64(env, argv[3], &lo) || !get_f64(env, argv[4], &hi))
    return nullptr;
  if (throw_if(env, yl < xl, "unaryF32: y is smaller than x")) return nullptr;
  UnaryCtx ctx{static_cast<int>(op), x, y, static_cast<int64_t>(xl), static_cast<float>(lo), static_cast<float>(hi)};
  parallel(elem_chunks(ctx.n, ctx.n / 4096 + 1), unary_task, &ctx);
  return nullptr;
}

struct CastCtx {
  const uint8_t* u8;
  const int32_t* i32;
  float* y;
  int64_t n;
};

void cast_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<CastCtx*>(p);
  int64_t b, e;
  split(c->n, chunk, nchunks, &b, &e);
  if (b >= e) return;
  if (c->u8 != nullptr) cast_u8_f32(c->u8 + b, c->y + b, e - b);
  else cast_i32_f32(c->i32 + b, c->y + b, e - b);
}

// castToF32(x: Uint8Array | Int32Array, y: Float32Array)
napi_value CastToF32(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return nullptr;
  CastCtx ctx{};
  size_t xl, yl;
  bool is_ta = false;
  napi_typedarray_type type;
  void* data;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[0], &type, &xl, &data, &ab, &off) != napi_ok ||
      (type != napi_uint8_array && type != napi_int32_array)) {
    napi_throw_type_error(env, "E_ARGUMENT", "castToF32: x must be a Uint8Array or an Int32Array");
    return nullptr;
  }
  if (!get_typed(env, argv[1], napi_float32_array, &ctx.y, &yl, "y")) return nullptr;
  if (throw_if(env, yl < xl, "castToF32: y is smaller than x")) return nullptr;
  if (type == napi_uint8_array) ctx.u8 = static_cast<const uint8_t*>(data);
  else ctx.i32 = static_cast<const int32_t*>(data);
  ctx.n = static_cast<int64_t>(xl);
  parallel(elem_chunks(ctx.n, ctx.n / 4096 + 1), cast_task, &ctx);
  return nullptr;
}

struct ReduceCtx {
  int op;
  const float* x;
  float* y;
  int64_t outer, r, inner;
  bool split_outer;
};

void reduce_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<ReduceCtx*>(p);
  int64_t b, e;
  if (c->split_outer) {
    split(c->outer, chunk, nchunks, &b, &e);
    if (b < e) reduce_f32(c->op, c->x, c->y, b, e, c->r, c->inner, 0, c->inner);
  } else {
    split((c->inner + 15) / 16, chunk, nchunks, &b, &e);
    b *= 16;
    e = std::min(e * 16, c->inner);
    if (b < e) reduce_f32(c->op, c->x, c->y, 0, c->outer, c->r, c->inner, b, e);
  }
}

// reduceF32(op, x: [outer, r, inner], y: [outer, inner], outer, r, inner)
napi_value ReduceF32(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv)) return nullptr;
  int64_t op;
  ReduceCtx ctx{};
  size_t xl, yl;
  float* x;
  if (!get_i64(env, argv[0], 0, kReduceCount - 1, &op, "op") || !get_typed(env, argv[1], napi_float32_array, &x, &xl, "x") ||
      !get_typed(env, argv[2], napi_float32_array, &ctx.y, &yl, "y") || !get_i64(env, argv[3], 0, kMaxDim, &ctx.outer, "outer") ||
      !get_i64(env, argv[4], 0, kMaxDim, &ctx.r, "r") || !get_i64(env, argv[5], 0, kMaxDim, &ctx.inner, "inner"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(xl) < prod(ctx.outer, ctx.r, ctx.inner) || static_cast<int64_t>(yl) < prod(ctx.outer, ctx.inner),
               "reduceF32: array too small"))
    return nullptr;
  ctx.op = static_cast<int>(op);
  ctx.x = x;
  if (ctx.outer * ctx.inner == 0) return nullptr;
  const int64_t elems = ctx.outer * std::max<int64_t>(ctx.r, 1) * ctx.inner;
  ctx.split_outer = ctx.inner == 1 || ctx.outer >= 2 * g_pool->size();
  const int64_t units = ctx.split_outer ? ctx.outer : (ctx.inner + 15) / 16;
  parallel(elem_chunks(elems, units), reduce_task, &ctx);
  return nullptr;
}

struct CopyCtx {
  const IsaKernels* isa;
  const uint32_t* src;
  uint32_t* dst;
  int64_t shape[kMaxRank];
  int64_t ss[kMaxRank];
  int64_t ds[kMaxRank];
  size_t rank;
  int64_t blocks;  // product of shape[0 .. rank-3]
  int64_t pieces;  // row pieces per block
};

void copy_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<CopyCtx*>(p);
  const size_t R = c->rank;
  const int64_t rows = c->shape[R - 2], cols = c->shape[R - 1];
  int64_t w0, w1;
  split(c->blocks * c->pieces, chunk, nchunks, &w0, &w1);
  for (int64_t w = w0; w < w1; w++) {
    const int64_t blk = w / c->pieces, piece = w % c->pieces;
    int64_t os = 0, od = 0, rem = blk;
    for (size_t d = R - 2; d-- > 0;) {
      const int64_t i = rem % c->shape[d];
      rem /= c->shape[d];
      os += i * c->ss[d];
      od += i * c->ds[d];
    }
    int64_t r0, r1;
    split((rows + 15) / 16, piece, c->pieces, &r0, &r1);
    r0 *= 16;
    r1 = std::min(r1 * 16, rows);
    if (r0 >= r1) continue;
    const uint32_t* s = c->src + os + r0 * c->ss[R - 2];
    uint32_t* d = c->dst + od + r0 * c->ds[R - 2];
    if (c->ss[R - 2] == 1 && c->ss[R - 1] != 0 && c->ds[R - 1] == 1 && c->isa->transpose != nullptr) {
      c->isa->transpose(s, c->ss[R - 1], d, c->ds[R - 2], r1 - r0, cols);
    } else {
      copy_block_u32(s, c->ss[R - 2], c->ss[R - 1], d, c->ds[R - 2], c->ds[R - 1], r1 - r0, cols);
    }
  }
}

// copyStrided32(src, srcOffset, srcStrides, dst, dstOffset, dstStrides, shape): for every index of shape
// (rank 2..8), dst[dstOffset + idx . dstStrides] = src[srcOffset + idx . srcStrides]; 4-byte elements (the
// Float32Arrays may view int32 data: bits are copied, never converted).
napi_value CopyStrided32(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return nullptr;
  float *src, *dst;
  size_t sl, dl, r1, r2, r3;
  int64_t so, dof;
  CopyCtx ctx{};
  if (!get_typed(env, argv[0], napi_float32_array, &src, &sl, "src") || !get_i64(env, argv[1], 0, kMaxDim, &so, "srcOffset") ||
      !get_dims(env, argv[2], ctx.ss, &r1, "srcStrides") || !get_typed(env, argv[3], napi_float32_array, &dst, &dl, "dst") ||
      !get_i64(env, argv[4], 0, kMaxDim, &dof, "dstOffset") || !get_dims(env, argv[5], ctx.ds, &r2, "dstStrides") ||
      !get_dims(env, argv[6], ctx.shape, &r3, "shape"))
    return nullptr;
  if (throw_if(env, r1 != r3 || r2 != r3 || r3 < 2, "copyStrided32: shape and strides must have one equal rank >= 2")) return nullptr;
  ctx.rank = r3;
  const int64_t ms = max_index(ctx.shape, ctx.ss, r3), md = max_index(ctx.shape, ctx.ds, r3);
  if (ms < 0) return nullptr;
  if (throw_if(env, sat_add(so, ms) >= static_cast<int64_t>(sl) || sat_add(dof, md) >= static_cast<int64_t>(dl), "copyStrided32: view out of range")) return nullptr;
  ctx.isa = g_isa;
  ctx.src = reinterpret_cast<const uint32_t*>(src) + so;
  ctx.dst = reinterpret_cast<uint32_t*>(dst) + dof;
  ctx.blocks = 1;
  for (size_t d = 0; d + 2 < r3; d++) ctx.blocks *= ctx.shape[d];
  const int64_t rows = ctx.shape[r3 - 2];
  const int64_t elems = ctx.blocks * rows * ctx.shape[r3 - 1];
  const int64_t want = elem_chunks(elems, elems / 4096 + 1);
  ctx.pieces = ctx.blocks >= want ? 1 : std::max<int64_t>(1, std::min<int64_t>(want / ctx.blocks, (rows + 15) / 16));
  parallel(elem_chunks(elems, ctx.blocks * ctx.pieces), copy_task, &ctx);
  return nullptr;
}

struct GatherCtx {
  const uint32_t* x;
  const int32_t* idx;
  uint32_t* y;
  int64_t n, row;
};

void gather_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<GatherCtx*>(p);
  int64_t b, e;
  split(c->n, chunk, nchunks, &b, &e);
  for (int64_t i = b; i < e; i++) memcpy(c->y + i * c->row, c->x + c->idx[i] * c->row, sizeof(uint32_t) * static_cast<size_t>(c->row));
}

// gatherRows32(x: [rows, row], row, idx: Int32Array [n], y: [n, row]) -> -1, or the position of the first
// index outside [0, rows) (nothing is copied then).
napi_value GatherRows32(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return nullptr;
  float *x, *y;
  int32_t* idx;
  size_t xl, il, yl;
  int64_t row;
  if (!get_typed(env, argv[0], napi_float32_array, &x, &xl, "x") || !get_i64(env, argv[1], 1, kMaxDim, &row, "row") ||
      !get_typed(env, argv[2], napi_int32_array, &idx, &il, "idx") || !get_typed(env, argv[3], napi_float32_array, &y, &yl, "y"))
    return nullptr;
  const int64_t rows = static_cast<int64_t>(xl) / row;
  if (throw_if(env, static_cast<int64_t>(yl) < prod(static_cast<int64_t>(il), row), "gatherRows32: y too small")) return nullptr;
  for (size_t i = 0; i < il; i++)
    if (idx[i] < 0 || idx[i] >= rows) return make_number(env, static_cast<double>(i));
  GatherCtx ctx{reinterpret_cast<const uint32_t*>(x), idx, reinterpret_cast<uint32_t*>(y), static_cast<int64_t>(il), row};
  parallel(elem_chunks(ctx.n * row, ctx.n), gather_task, &ctx);
  return make_number(env, -1);
}

struct RmsNormCtx {
  const float *x, *g, *dy;
  float *y, *dx, *dg;  // dg: [nchunks, dim] partial sums (backward only)
  int64_t rows, dim;
  float eps;
};

void rmsnorm_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<RmsNormCtx*>(p);
  int64_t b, e;
  split(c->rows, chunk, nchunks, &b, &e);
  if (c->dy == nullptr) {
    if (b < e) rmsnorm_f32(c->x, c->g, c->y, b, e, c->dim, c->eps);
    return;
  }
  float* dg = c->dg + chunk * c->dim;
  memset(dg, 0, sizeof(float) * static_cast<size_t>(c->dim));
  if (b < e) rmsnorm_grad_f32(c->dy, c->x, c->g, c->dx, dg, b, e, c->dim, c->eps);
}

bool get_rmsnorm_common(napi_env env, napi_value* argv, RmsNormCtx* c, size_t* xl, const char* what) {
  float* x;
  float* g;
  size_t gl;
  double eps;
  if (!get_typed(env, argv[0], napi_float32_array, &x, xl, "x") || !get_typed(env, argv[1], napi_float32_array, &g, &gl, "gain") ||
      !get_i64(env, argv[2], 1, kMaxDim, &c->dim, "dim") || !get_f64(env, argv[3], &eps))
    return false;
  if (throw_if(env, static_cast<int64_t>(gl) != c->dim || static_cast<int64_t>(*xl) % c->dim != 0, what)) return false;
  c->x = x;
  c->g = g;
  c->rows = static_cast<int64_t>(*xl) / c->dim;
  c->eps = static_cast<float>(eps);
  return true;
}

// rmsNormF32(x [rows, dim], gain [dim], dim, eps, y)
napi_value RmsNormF32(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return nullptr;
  RmsNormCtx ctx{};
  size_t xl, yl;
  if (!get_rmsnorm_common(env, argv, &ctx, &xl, "rmsNormF32: x is not [rows, gain.length]") ||
      !get_typed(env, argv[4], napi_float32_array, &ctx.y, &yl, "y"))
    return nullptr;
  if (throw_if(env, yl < xl, "rmsNormF32: y too small")) return nullptr;
  parallel(elem_chunks(static_cast<int64_t>(xl), ctx.rows), rmsnorm_task, &ctx);
  return nullptr;
}

// rmsNormGradF32(x, gain, dim, eps, dy, dx, dgain): dgain is summed over rows in a fixed order (per-chunk
// partial sums added chunk by chunk).
napi_value RmsNormGradF32(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return nullptr;
  RmsNormCtx ctx{};
  size_t xl, dyl, dxl, dgl;
  float *dy, *dg;
  if (!get_rmsnorm_common(env, argv, &ctx, &xl, "rmsNormGradF32: x is not [rows, gain.length]") ||
      !get_typed(env, argv[4], napi_float32_array, &dy, &dyl, "dy") || !get_typed(env, argv[5], napi_float32_array, &ctx.dx, &dxl, "dx") ||
      !get_typed(env, argv[6], napi_float32_array, &dg, &dgl, "dgain"))
    return nullptr;
  if (throw_if(env, dyl < xl || dxl < xl || static_cast<int64_t>(dgl) < ctx.dim, "rmsNormGradF32: array too small")) return nullptr;
  ctx.dy = dy;
  const int64_t nchunks = elem_chunks(static_cast<int64_t>(xl), std::min<int64_t>(ctx.rows, g_pool->size()));
  std::vector<float> partial(static_cast<size_t>(nchunks * ctx.dim));
  ctx.dg = partial.data();
  parallel(nchunks, rmsnorm_task, &ctx);
  for (int64_t i = 0; i < ctx.dim; i++) {
    float s = 0.0f;
    for (int64_t ch = 0; ch < nchunks; ch++) s += partial[static_cast<size_t>(ch * ctx.dim + i)];
    dg[i] = s;
  }
  return nullptr;
}

struct MatvecI8Ctx {
  const IsaKernels* isa;
  MatvecI8Job job;
};

void matvec_i8_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<MatvecI8Ctx*>(p);
  const MatvecI8Job& j = c->job;
  const int64_t quads = (j.rows + 3) / 4;
  int64_t b, e;
  split(quads, chunk, n, &b, &e);
  e = std::min(e * 4, j.rows);
  if (b * 4 >= e) return;
  if (c->isa->matvec_i8 != nullptr) c->isa->matvec_i8(j, b * 4, e);
  else matvec_i8q(j.w, j.wscale, j.xq, j.xs, j.y, j.rows, j.cols, j.xstride, j.batch, b * 4, e);
}

// matvecI8F32(w: Int8Array [rows, cols], wscale: Float32Array [rows], x: Float32Array [batch, cols],
//             y: Float32Array [batch, rows], rows, cols, batch): each row of x quantized to int8 as the BitLinear
// activations are (g_isa->quantize: per-row absmax, round half to even), then the exact int8 x int8 product
// scaled by wscale[r] / xs[b] (MatvecI8Job in kernels.h)
napi_value MatvecI8F32(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return nullptr;
  MatvecI8Ctx ctx{};
  ctx.isa = g_isa;
  MatvecI8Job& j = ctx.job;
  int8_t* w;
  float *ws, *x, *y;
  size_t wl, wsl, xl, yl;
  if (!get_typed(env, argv[0], napi_int8_array, &w, &wl, "w") || !get_typed(env, argv[1], napi_float32_array, &ws, &wsl, "wscale") ||
      !get_typed(env, argv[2], napi_float32_array, &x, &xl, "x") || !get_typed(env, argv[3], napi_float32_array, &y, &yl, "y") ||
      !get_i64(env, argv[4], 1, kMaxDim, &j.rows, "rows") || !get_i64(env, argv[5], 1, kMaxDim, &j.cols, "cols") ||
      !get_i64(env, argv[6], 1, 1 << 20, &j.batch, "batch"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(wl) < prod(j.rows, j.cols) || static_cast<int64_t>(wsl) < j.rows ||
                        static_cast<int64_t>(xl) < prod(j.batch, j.cols) || static_cast<int64_t>(yl) < prod(j.batch, j.rows),
               "matvecI8F32: array too small"))
    return nullptr;
  j.w = w;
  j.wscale = ws;
  j.y = y;
  j.xstride = (j.cols + 63) / 64 * 64;
  const size_t qbytes = static_cast<size_t>(j.batch * j.xstride);
  uint8_t* buf = static_cast<uint8_t*>(t_xbuf.get(qbytes + (sizeof(float) + sizeof(int32_t)) * static_cast<size_t>(j.batch)));
  if (buf == nullptr) {
    napi_throw_error(env, "E_MEMORY", "matvecI8F32: out of memory for the quantized activations");
    return nullptr;
  }
  int8_t* xq = reinterpret_cast<int8_t*>(buf);
  float* xs = reinterpret_cast<float*>(buf + qbytes);  // qbytes is a multiple of 64
  int32_t* xsum = reinterpret_cast<int32_t*>(xs + j.batch);
  for (int64_t b = 0; b < j.batch; b++) {
    int8_t* row = xq + b * j.xstride;
    xs[b] = g_isa->quantize(x + b * j.cols, j.cols, row);
    int32_t sum = 0;
    for (int64_t c = 0; c < j.cols; c++) sum += row[c];
    for (int64_t c = j.cols; c < j.xstride; c++) row[c] = 0;
    xsum[b] = sum;
  }
  j.xq = xq;
  j.xs = xs;
  j.xsum = xsum;
  parallel(chunk_count((j.rows + 3) / 4, j.rows * j.cols * j.batch), matvec_i8_task, &ctx);
  return nullptr;
}

struct QuantRowsCtx {
  const float* w;
  int8_t* q;
  float* scale;
  int64_t rows, cols;
  int64_t* bad;  // [nchunks]: each chunk's first non-finite row, or -1
};

void quant_rows_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<QuantRowsCtx*>(p);
  int64_t b, e;
  split(c->rows, chunk, n, &b, &e);
  c->bad[chunk] = b < e ? quantize_rows_i8(c->w, c->q, c->scale, c->cols, b, e) : -1;
}

// quantizeRowsI8(w: Float32Array [rows, cols], q: Int8Array [rows, cols], scale: Float32Array [rows], rows, cols)
//   -> -1, or the first row holding NaN or infinity
napi_value QuantizeRowsI8(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return nullptr;
  QuantRowsCtx ctx{};
  float *w, *scale;
  int8_t* q;
  size_t wl, ql, sl;
  if (!get_typed(env, argv[0], napi_float32_array, &w, &wl, "w") || !get_typed(env, argv[1], napi_int8_array, &q, &ql, "q") ||
      !get_typed(env, argv[2], napi_float32_array, &scale, &sl, "scale") || !get_i64(env, argv[3], 1, kMaxDim, &ctx.rows, "rows") ||
      !get_i64(env, argv[4], 1, kMaxDim, &ctx.cols, "cols"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(wl) < prod(ctx.rows, ctx.cols) || static_cast<int64_t>(ql) < prod(ctx.rows, ctx.cols) || static_cast<int64_t>(sl) < ctx.rows,
               "quantizeRowsI8: array too small"))
    return nullptr;
  ctx.w = w;
  ctx.q = q;
  ctx.scale = scale;
  const int64_t nchunks = elem_chunks(ctx.rows * ctx.cols, ctx.rows);
  std::vector<int64_t> bad(static_cast<size_t>(nchunks), -1);
  ctx.bad = bad.data();
  parallel(nchunks, quant_rows_task, &ctx);
  for (int64_t r : bad)
    if (r >= 0) return make_number(env, static_cast<double>(r));  // chunks are in row order
  return make_number(env, -1);
}

struct AttentionCtx {
  const float *q, *kc, *vc;
  float* out;
  float* scores;  // [nchunks, start + T]
  int64_t pairs, H, Hkv, d, cap, start, T;
  float scale;
};

void attention_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<AttentionCtx*>(p);
  int64_t b, e;
  split(c->pairs, chunk, n, &b, &e);
  if (b < e) attention_f32(c->q, c->kc, c->vc, c->out, c->H, c->Hkv, c->d, c->cap, c->start, c->scale, c->scores + chunk * (c->start + c->T), b, e);
}

// attentionF32(q: [T, H, d], kc: [Hkv, cap, d], vc: [Hkv, cap, d], out: [T, H, d], T, H, Hkv, d, cap, start, scale)
napi_value AttentionF32(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  if (!get_args(env, info, 11, argv)) return nullptr;
  AttentionCtx ctx{};
  float *q, *kc, *vc, *out;
  size_t ql, kl, vl, ol;
  double scale;
  if (!get_typed(env, argv[0], napi_float32_array, &q, &ql, "q") || !get_typed(env, argv[1], napi_float32_array, &kc, &kl, "kc") ||
      !get_typed(env, argv[2], napi_float32_array, &vc, &vl, "vc") || !get_typed(env, argv[3], napi_float32_array, &out, &ol, "out") ||
      !get_i64(env, argv[4], 1, kMaxDim, &ctx.T, "T") || !get_i64(env, argv[5], 1, 1 << 16, &ctx.H, "H") ||
      !get_i64(env, argv[6], 1, 1 << 16, &ctx.Hkv, "Hkv") || !get_i64(env, argv[7], 1, 1 << 16, &ctx.d, "d") ||
      !get_i64(env, argv[8], 1, kMaxDim, &ctx.cap, "cap") || !get_i64(env, argv[9], 0, kMaxDim, &ctx.start, "start") ||
      !get_f64(env, argv[10], &scale))
    return nullptr;
  if (throw_if(env, ctx.H % ctx.Hkv != 0, "attentionF32: H must be a multiple of Hkv") ||
      throw_if(env, ctx.start + ctx.T > ctx.cap, "attentionF32: start + T exceeds the cache") ||
      throw_if(env, static_cast<int64_t>(ql) < prod(ctx.T, ctx.H, ctx.d) || static_cast<int64_t>(ol) < prod(ctx.T, ctx.H, ctx.d) ||
                        static_cast<int64_t>(kl) < prod(ctx.Hkv, ctx.cap, ctx.d) || static_cast<int64_t>(vl) < prod(ctx.Hkv, ctx.cap, ctx.d),
               "attentionF32: array too small"))
    return nullptr;
  ctx.q = q;
  ctx.kc = kc;
  ctx.vc = vc;
  ctx.out = out;
  ctx.scale = static_cast<float>(scale);
  ctx.pairs = ctx.T * ctx.H;
  const int64_t work = prod(ctx.pairs, ctx.start + ctx.T, ctx.d, 2);
  const int64_t nchunks = work < kMinParallelWeights || g_pool->size() == 1 ? 1 : std::min<int64_t>(ctx.pairs, g_pool->size() * kChunksPerThread);
  std::vector<float> scores(static_cast<size_t>(nchunks * (ctx.start + ctx.T)));
  ctx.scores = scores.data();
  parallel(nchunks, attention_task, &ctx);
  return nullptr;
}

// streamRead(bytes: Uint8Array, streams = 1) -> checksum (reads every byte once, on the pool, each thread's
// share as `streams` concurrent sequential streams)
napi_value StreamRead(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 1) {
    napi_throw_type_error(env, "E_ARGUMENT", "too few arguments");
    return nullptr;
  }
  uint8_t* p;
  size_t n;
  if (!get_typed(env, argv[0], napi_uint8_array, &p, &n, "bytes")) return nullptr;
  int64_t streams = 1;
  napi_valuetype t;
  if (argc >= 2 && napi_typeof(env, argv[1], &t) == napi_ok && t != napi_undefined && !get_i64(env, argv[1], 1, 64, &streams, "streams")) return nullptr;
  StreamCtx ctx;
  ctx.fn = g_isa->stream;
  ctx.p = p;
  ctx.n = n;
  ctx.streams = static_cast<int>(streams);
  parallel(chunk_count(static_cast<int64_t>(n >> 12), static_cast<int64_t>(n) * 4), stream_task, &ctx);
  return make_number(env, static_cast<double>(ctx.sum.load() & ((uint64_t{1} << 52) - 1)));
}

// ---------------------------------------------------------------------------------------------------------
// Fused training ops: the student's BitLinear (int8 activations x ternary weights, fake-quantized, STE) and
// SwiGLU, forward and backward, each one call. The quantized operands live only in scratch for the call:
// autograd saves x and W (which are alive anyway), not their quantized copies.

Scratch g_fq_a, g_fq_b;  // main thread only (the JS thread calls these kernels one at a time)

struct FqCtx {
  const float* x;
  int8_t* q8;  // int8 codes of x (act_quant_task)
  float* out;
  float* s;
  int64_t rows, cols;
  int dequant;
  // ternary pass / abs sums
  const float* w;
  const float* d;  // per-row scales (perRow) or one value
  float* tout;
  double* sums;
  int64_t n, wcols;
  bool per_row, tern_dequant;
};

// Rows [b, e) of x quantized by the ISA's QuantizeFn (int8 codes and scales s), then as floats: q or q / s.
void act_quant_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<FqCtx*>(p);
  int64_t b, e;
  split(c->rows, chunk, nchunks, &b, &e);
  for (int64_t r = b; r < e; r++) {
    int8_t* q8 = c->q8 + r * c->cols;
    const float sc = g_isa->quantize(c->x + r * c->cols, c->cols, q8);
    c->s[r] = sc;
    if (c->out != nullptr) int8_to_f32(q8, c->dequant ? sc : 1.0f, c->out + r * c->cols, c->cols);
  }
}

constexpr int64_t kAbsBlock = 1 << 16;  // fixed blocks: the absmean total does not depend on the thread count

void abs_sum_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<FqCtx*>(p);
  if (c->per_row) {
    int64_t b, e;
    split(c->n / c->wcols, chunk, nchunks, &b, &e);
    for (int64_t r = b; r < e; r++) c->sums[r] = abs_sum_f64(c->w + r * c->wcols, c->wcols);
    return;
  }
  const int64_t blocks = (c->n + kAbsBlock - 1) / kAbsBlock;
  int64_t b, e;
  split(blocks, chunk, nchunks, &b, &e);
  for (int64_t i = b; i < e; i++) c->sums[i] = abs_sum_f64(c->w + i * kAbsBlock, std::min(kAbsBlock, c->n - i * kAbsBlock));
}

void fq_ternary_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<FqCtx*>(p);
  const int64_t rows = c->n / c->wcols;
  int64_t b, e;
  split(rows, chunk, nchunks, &b, &e);
  for (int64_t r = b; r < e; r++) {
    const float d = c->per_row ? c->d[r] : c->d[0];
    ternary_f32(c->w + r * c->wcols, d, c->tern_dequant ? d : 1.0f, c->tout + r * c->wcols, c->wcols);
  }
}

// Ternary scales of W [n, k] (HF layout, out x in): d = max(f32(sum|W| / count), 1e-5f), one per tensor or per
// row, as the reference quantizer (packages/quant reference.ts).
std::vector<float> ternary_scales(const float* w, int64_t n, int64_t k, bool per_row) {
  FqCtx c{};
  c.w = w;
  c.n = n * k;
  c.wcols = k;
  c.per_row = per_row;
  const int64_t parts = per_row ? n : (c.n + kAbsBlock - 1) / kAbsBlock;
  std::vector<double> sums(static_cast<size_t>(std::max<int64_t>(parts, 1)), 0.0);
  c.sums = sums.data();
  parallel(elem_chunks(c.n, std::max<int64_t>(parts, 1)), abs_sum_task, &c);
  std::vector<float> d(per_row ? static_cast<size_t>(n) : 1);
  if (per_row) {
    for (int64_t r = 0; r < n; r++) {
      const float m = static_cast<float>(sums[r] / static_cast<double>(k));
      d[r] = m > 1e-5f ? m : 1e-5f;
    }
  } else {
    double t = 0.0;
    for (int64_t i = 0; i < parts; i++) t += sums[i];
    const float m = static_cast<float>(t / static_cast<double>(std::max<int64_t>(c.n, 1)));
    d[0] = m > 1e-5f ? m : 1e-5f;
  }
  return d;
}

void ternarize(const float* w, int64_t n, int64_t k, const std::vector<float>& d, bool per_row, bool dequant, float* out) {
  FqCtx c{};
  c.w = w;
  c.n = n * k;
  c.wcols = k;
  c.d = d.data();
  c.per_row = per_row;
  c.tern_dequant = dequant;
  c.tout = out;
  parallel(elem_chunks(c.n, n), fq_ternary_task, &c);
}

// Per-token int8 quantization of x [m, k] (codes into q8, scales into s) and, when out is not null, the codes
// as floats (dequant false) or the dequantized activations q / s (dequant true).
void act_quant(const float* x, int64_t m, int64_t k, int8_t* q8, float* s, float* out, bool dequant) {
  FqCtx c{};
  c.x = x;
  c.q8 = q8;
  c.out = out;
  c.s = s;
  c.rows = m;
  c.cols = k;
  c.dequant = dequant ? 1 : 0;
  parallel(elem_chunks(m * k, m), act_quant_task, &c);
}

// y[i, j] *= f32(d / s[i]) (d[j] per row of W when per_row): the dequantization of the integer product.
struct RescaleCtx {
  float* y;
  const float* s;
  const float* d;
  int64_t m, n;
  bool per_row;
};

void rescale_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<RescaleCtx*>(p);
  int64_t b, e;
  split(c->m, chunk, nchunks, &b, &e);
  for (int64_t i = b; i < e; i++) {
    float* yr = c->y + i * c->n;
    if (c->per_row) {
      for (int64_t j = 0; j < c->n; j++) yr[j] *= c->d[j] / c->s[i];
    } else {
      const float r = c->d[0] / c->s[i];
      for (int64_t j = 0; j < c->n; j++) yr[j] *= r;
    }
  }
}

bool get_bitlinear_common(napi_env env, napi_value* argv, int first, const float** x, const float** w, int64_t* m, int64_t* k, int64_t* n,
                          bool* per_row, const char* what) {
  float *xp, *wp;
  size_t xl, wl;
  if (!get_typed(env, argv[first], napi_float32_array, &xp, &xl, "x") || !get_typed(env, argv[first + 1], napi_float32_array, &wp, &wl, "w") ||
      !get_i64(env, argv[first + 2], 1, kMaxDim, m, "m") || !get_i64(env, argv[first + 3], 1, kMaxDim, k, "k") ||
      !get_i64(env, argv[first + 4], 1, kMaxDim, n, "n") || !get_bool(env, argv[first + 5], per_row))
    return false;
  if (throw_if(env, static_cast<int64_t>(xl) < prod(*m, *k) || static_cast<int64_t>(wl) < prod(*n, *k), what)) return false;
  *x = xp;
  *w = wp;
  return true;
}

// Ternary codes of W packed into t4x256 (kernels.h) for tiles [b, e): the layout of the runtime's kernels, so
// the forward product runs on the int8 (VNNI / AMX) path.
struct PackCtx {
  const int8_t* codes;
  uint8_t* dst;
  int64_t rows, cols, nblk;
};

void pack_codes_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<PackCtx*>(p);
  int64_t b, e;
  split((c->rows + kTileRows - 1) / kTileRows, chunk, nchunks, &b, &e);
  for (int64_t t = b; t < e; t++) {
    for (int64_t k = 0; k < c->nblk; k++) {
      for (int r = 0; r < kTileRows; r++) {
        const int64_t row = t * kTileRows + r;
        uint8_t* d = c->dst + ((t * c->nblk + k) * kTileRows + r) * kBlockBytes;
        for (int jj = 0; jj < kBlockBytes; jj++) {
          uint8_t byte = 0;
          for (int sl = 0; sl < 4; sl++) {
            const int64_t col = k * kBlockCols + jj + 64 * sl;
            const int code = row < c->rows && col < c->cols ? c->codes[row * c->cols + col] + 1 : 1;  // padding: 0
            byte = static_cast<uint8_t>(byte | (code << (2 * sl)));
          }
          d[jj] = byte;
        }
      }
    }
  }
}

// The int8 path for the forward product pays off from this many input features on (measured on AVX-512 VNNI at
// 1,024 tokens: x1.0 at 256, x1.6 at 688, x2.4 at 1,024, x3.5 at 3,072 over the fp32 GEMM).
constexpr int64_t kInt8MinCols = 512;

bool int8_path(int64_t k, bool per_row) {
  return !per_row && k >= kInt8MinCols && (strcmp(g_isa->name, "avx512vnni") == 0 || strcmp(g_isa->name, "amx") == 0);
}

Scratch g_fq_q8, g_fq_w8;  // int8 codes of x and of W (or W packed), main thread only

// bitLinearF32(x [m, k], w [n, k], m, k, n, perRow, y [m, n]):
//   y = (q @ c^T) * f32(d / s),  q = clamp(rhe(x * s), -128, 127) per row, c = clamp(rhe(W / d), -1, 1):
// the integer form of int8Quant(x) @ ternaryQuant(W)^T. The integer product is exact on both paths: int32 on the
// int8 one (absmean, k >= kInt8MinCols, a VNNI ISA), float32 of small integers on the fp32 GEMM otherwise.
napi_value BitLinearF32(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return nullptr;
  const float *x, *w;
  int64_t m, k, n;
  bool per_row;
  float* y;
  size_t yl;
  if (!get_bitlinear_common(env, argv, 0, &x, &w, &m, &k, &n, &per_row, "bitLinearF32: x or w too small") ||
      !get_typed(env, argv[6], napi_float32_array, &y, &yl, "y"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(yl) < prod(m, n), "bitLinearF32: y too small")) return nullptr;
  const bool i8 = int8_path(k, per_row);
  int8_t* q8 = static_cast<int8_t*>(g_fq_q8.get(static_cast<size_t>(m * k)));
  float* s = static_cast<float*>(g_fq_a.get(sizeof(float) * static_cast<size_t>(m + (i8 ? 0 : m * k))));
  if (throw_if(env, q8 == nullptr || s == nullptr, "bitLinearF32: out of memory for scratch")) return nullptr;
  float* qf = i8 ? nullptr : s + m;
  act_quant(x, m, k, q8, s, qf, false);
  const std::vector<float> d = ternary_scales(w, n, k, per_row);
  if (i8) {
    const int64_t nblk = (k + kBlockCols - 1) / kBlockCols;
    const int64_t tiles = (n + kTileRows - 1) / kTileRows;
    const size_t packed = static_cast<size_t>(tiles * nblk * kTileBlockBytes);
    int8_t* codes = static_cast<int8_t*>(g_fq_w8.get(static_cast<size_t>(n * k) + packed));
    if (throw_if(env, codes == nullptr, "bitLinearF32: out of memory for scratch")) return nullptr;
    uint8_t* wp = reinterpret_cast<uint8_t*>(codes + n * k);
    ternary_codes_i8(w, d[0], codes, n * k);
    PackCtx pc{codes, wp, n, k, nblk};
    parallel(chunk_count(tiles, n * k), pack_codes_task, &pc);
    std::vector<double> factor(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; i++) factor[i] = static_cast<double>(d[0] / s[i]);  // f32(d / s), as the fp32 path
    TernaryCtx ctx{};
    ctx.isa = g_isa;
    ctx.tiles = tiles;
    ctx.job.nblk = nblk;
    ctx.job.w = wp;
    ctx.job.rows = n;
    ctx.job.yf = y;
    ctx.job.factor = factor.data();
    if (throw_if(env, !ternary_product(&ctx, q8, k, m), "bitLinearF32: out of memory for scratch")) return nullptr;
    return nullptr;
  }
  float* c = static_cast<float*>(g_fq_b.get(sizeof(float) * static_cast<size_t>(n * k)));
  if (throw_if(env, c == nullptr, "bitLinearF32: out of memory for scratch")) return nullptr;
  ternarize(w, n, k, d, per_row, false, c);
  gemm_parallel(g_isa, GemmView{qf, k, 1, c, 1, k, y, n, m, n, k});
  RescaleCtx rc{y, s, d.data(), m, n, per_row};
  parallel(elem_chunks(m * n, m), rescale_task, &rc);
  return nullptr;
}

// bitLinearGradF32(x, w, m, k, n, perRow, dy [m, n], dx [m, k], dw [n, k]): the straight-through backward of
// bitLinearF32: dx = dy @ (c * d), dW = dy^T @ (q / s), no gradient through the scales.
napi_value BitLinearGradF32(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv)) return nullptr;
  const float *x, *w;
  int64_t m, k, n;
  bool per_row;
  float *dy, *dx, *dw;
  size_t dyl, dxl, dwl;
  if (!get_bitlinear_common(env, argv, 0, &x, &w, &m, &k, &n, &per_row, "bitLinearGradF32: x or w too small") ||
      !get_typed(env, argv[6], napi_float32_array, &dy, &dyl, "dy") || !get_typed(env, argv[7], napi_float32_array, &dx, &dxl, "dx") ||
      !get_typed(env, argv[8], napi_float32_array, &dw, &dwl, "dw"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(dyl) < prod(m, n) || static_cast<int64_t>(dxl) < prod(m, k) || static_cast<int64_t>(dwl) < prod(n, k),
               "bitLinearGradF32: dy, dx or dw too small"))
    return nullptr;
  int8_t* q8 = static_cast<int8_t*>(g_fq_q8.get(static_cast<size_t>(m * k)));
  float* xq = static_cast<float*>(g_fq_a.get(sizeof(float) * static_cast<size_t>(m * k + m)));
  float* wq = static_cast<float*>(g_fq_b.get(sizeof(float) * static_cast<size_t>(n * k)));
  if (throw_if(env, q8 == nullptr || xq == nullptr || wq == nullptr, "bitLinearGradF32: out of memory for scratch")) return nullptr;
  act_quant(x, m, k, q8, xq + m * k, xq, true);
  ternarize(w, n, k, ternary_scales(w, n, k, per_row), per_row, true, wq);
  gemm_parallel(g_isa, GemmView{dy, n, 1, wq, k, 1, dx, k, m, k, n});  // [m, n] @ [n, k]
  gemm_parallel(g_isa, GemmView{dy, 1, n, xq, k, 1, dw, k, n, k, m});  // [n, m] (dy^T) @ [m, k]
  return nullptr;
}

struct SwigluCtx {
  const float *dy, *g, *u;
  float *y, *dg, *du;
  int64_t n;
};

void swiglu_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<SwigluCtx*>(p);
  int64_t b, e;
  split(c->n, chunk, nchunks, &b, &e);
  if (b >= e) return;
  if (c->dy == nullptr) swiglu_f32(c->g + b, c->u + b, c->y + b, e - b);
  else swiglu_grad_f32(c->dy + b, c->g + b, c->u + b, c->dg + b, c->du + b, e - b);
}

// swigluF32(g, u, y) and swigluGradF32(g, u, dy, dg, du): all the same length.
napi_value SwigluF32(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (throw_if(env, argc != 3 && argc != 5, "swiglu: expected 3 or 5 arguments")) return nullptr;
  SwigluCtx c{};
  float *g, *u, *a, *b2 = nullptr, *b3 = nullptr;
  size_t gl, ul, al, bl = 0, cl = 0;
  if (!get_typed(env, argv[0], napi_float32_array, &g, &gl, "g") || !get_typed(env, argv[1], napi_float32_array, &u, &ul, "u") ||
      !get_typed(env, argv[2], napi_float32_array, &a, &al, argc == 3 ? "y" : "dy"))
    return nullptr;
  if (argc == 5 && (!get_typed(env, argv[3], napi_float32_array, &b2, &bl, "dg") || !get_typed(env, argv[4], napi_float32_array, &b3, &cl, "du")))
    return nullptr;
  if (throw_if(env, ul != gl || al != gl || (argc == 5 && (bl != gl || cl != gl)), "swiglu: arrays differ in length")) return nullptr;
  c.g = g;
  c.u = u;
  c.n = static_cast<int64_t>(gl);
  if (argc == 3) {
    c.y = a;
  } else {
    c.dy = a;
    c.dg = b2;
    c.du = b3;
  }
  parallel(elem_chunks(c.n, c.n / 4096 + 1), swiglu_task, &c);
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// Fused causal attention for training: q [B, T, H, d], k and v [B, T, Hkv, d] (the projections' layout, no
// transposes), RoPE tables cos, sin [T, d], y [B, T, H, d]. Work unit: one (batch, KV head) group and its
// H / Hkv query heads, so the backward accumulates dK and dV without races. Per head: RoPE, S = q k^T, causal
// softmax, y = P v on the blocked GEMM (single-threaded inside a pool task); the backward recomputes P.

struct AttnCtx {
  const float *q, *k, *v, *cos, *sin, *dy;
  float *y, *dq, *dk, *dv;
  int64_t B, T, H, Hkv, d;
  float scale;
  std::atomic<bool> failed{false};
};

thread_local Scratch t_attn;

// C[m, n] = A @ B for strided views, on the calling thread.
inline void gemm_local(const float* a, int64_t sai, int64_t sap, const float* b, int64_t sbp, int64_t sbj, float* c, int64_t ldc, int64_t m, int64_t n,
                       int64_t k) {
  gemm_serial(*g_isa, GemmView{a, sai, sap, b, sbp, sbj, c, ldc, m, n, k});
}

void attn_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<AttnCtx*>(p);
  const int64_t T = c->T, d = c->d, H = c->H, Hkv = c->Hkv, r = H / Hkv;
  const int64_t sq = H * d, skv = Hkv * d;  // row strides of q / y and of k / v
  const bool grad = c->dy != nullptr;
  // qr, kr [T, d]; P, dP [T, T]; tmp [T, d]; dkr, dvg [T, d] accumulators (backward)
  float* buf = static_cast<float*>(t_attn.get(static_cast<size_t>(prod(4, sat_add(prod(5, T, d), prod(2, T, T))))));
  if (buf == nullptr) {
    c->failed.store(true);
    return;
  }
  float* qr = buf;
  float* kr = qr + T * d;
  float* tmp = kr + T * d;
  float* dkr = tmp + T * d;
  float* dvg = dkr + T * d;
  float* P = dvg + T * d;
  float* dP = P + T * T;
  int64_t g0, g1;
  split(c->B * Hkv, chunk, nchunks, &g0, &g1);
  for (int64_t g = g0; g < g1; g++) {
    const int64_t b = g / Hkv, hk = g % Hkv;
    const float* kb = c->k + b * T * skv + hk * d;
    const float* vb = c->v + b * T * skv + hk * d;
    rope_rows_f32(kb, skv, c->cos, c->sin, kr, d, T, d, 0);
    if (grad) {
      memset(dkr, 0, sizeof(float) * static_cast<size_t>(T * d));
      memset(dvg, 0, sizeof(float) * static_cast<size_t>(T * d));
    }
    for (int64_t h = hk * r; h < (hk + 1) * r; h++) {
      const float* qb = c->q + b * T * sq + h * d;
      rope_rows_f32(qb, sq, c->cos, c->sin, qr, d, T, d, 0);
      gemm_local(qr, d, 1, kr, 1, d, P, T, T, T, d);  // S = qr kr^T
      causal_softmax_f32(P, T, c->scale);
      if (!grad) {
        gemm_local(P, T, 1, vb, skv, 1, c->y + b * T * sq + h * d, sq, T, d, T);  // y = P v
        continue;
      }
      const float* dyb = c->dy + b * T * sq + h * d;
      gemm_local(P, 1, T, dyb, sq, 1, tmp, d, T, d, T);  // P^T dO
      for (int64_t i = 0; i < T * d; i++) dvg[i] += tmp[i];
      gemm_local(dyb, sq, 1, vb, 1, skv, dP, T, T, T, d);  // dP = dO v^T
      causal_softmax_grad_f32(P, dP, T, c->scale);         // dS (with the score scale)
      gemm_local(dP, T, 1, kr, d, 1, tmp, d, T, d, T);     // dqr = dS kr
      rope_rows_f32(tmp, d, c->cos, c->sin, c->dq + b * T * sq + h * d, sq, T, d, 1);
      gemm_local(dP, 1, T, qr, d, 1, tmp, d, T, d, T);  // dkr += dS^T qr
      for (int64_t i = 0; i < T * d; i++) dkr[i] += tmp[i];
    }
    if (grad) {
      rope_rows_f32(dkr, d, c->cos, c->sin, c->dk + b * T * skv + hk * d, skv, T, d, 1);
      for (int64_t t = 0; t < T; t++) memcpy(c->dv + b * T * skv + t * skv + hk * d, dvg + t * d, sizeof(float) * static_cast<size_t>(d));
    }
  }
}

bool get_attn_common(napi_env env, napi_value* argv, AttnCtx* c, const char* what) {
  float *q, *k, *v, *cs, *sn;
  size_t ql, kl, vl, cl, sl;
  double scale;
  int64_t dims[5];
  if (!get_typed(env, argv[0], napi_float32_array, &q, &ql, "q") || !get_typed(env, argv[1], napi_float32_array, &k, &kl, "k") ||
      !get_typed(env, argv[2], napi_float32_array, &v, &vl, "v") || !get_typed(env, argv[3], napi_float32_array, &cs, &cl, "cos") ||
      !get_typed(env, argv[4], napi_float32_array, &sn, &sl, "sin"))
    return false;
  const char* names[5] = {"B", "T", "H", "Hkv", "d"};
  for (int i = 0; i < 5; i++) {
    if (!get_i64(env, argv[5 + i], 1, kMaxDim, &dims[i], names[i])) return false;
  }
  if (!get_f64(env, argv[10], &scale)) return false;
  const int64_t B = dims[0], T = dims[1], H = dims[2], Hkv = dims[3], d = dims[4];
  if (throw_if(env, H % Hkv != 0 || d % 2 != 0, what) ||
      throw_if(env, static_cast<int64_t>(ql) != prod(B, T, H, d) || static_cast<int64_t>(kl) != prod(B, T, Hkv, d) || static_cast<int64_t>(vl) != prod(B, T, Hkv, d) ||
                        static_cast<int64_t>(cl) < prod(T, d) || static_cast<int64_t>(sl) < prod(T, d),
               what))
    return false;
  c->q = q;
  c->k = k;
  c->v = v;
  c->cos = cs;
  c->sin = sn;
  c->B = B;
  c->T = T;
  c->H = H;
  c->Hkv = Hkv;
  c->d = d;
  c->scale = static_cast<float>(scale);
  return true;
}

// Runs the groups on the pool; false (with a JavaScript error thrown) when a thread's scratch could not be had.
bool run_attention(napi_env env, AttnCtx* c) {
  const int64_t groups = c->B * c->Hkv;
  parallel(std::min<int64_t>(groups, g_pool->size() * 4), attn_task, c);
  if (c->failed.load()) {
    napi_throw_error(env, "E_MEMORY", "attention: out of memory for the per-thread scratch");
    return false;
  }
  return true;
}

// attentionTrainF32(q, k, v, cos, sin, B, T, H, Hkv, d, scale, y): y = softmax(causal(scale * rope(q) rope(k)^T)) v
napi_value AttentionTrainF32(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  if (!get_args(env, info, 12, argv)) return nullptr;
  AttnCtx c{};
  size_t yl;
  if (!get_attn_common(env, argv, &c, "attentionTrainF32: shapes do not match (H % Hkv == 0, even d, q [B,T,H,d], k, v [B,T,Hkv,d], cos, sin [T,d])") ||
      !get_typed(env, argv[11], napi_float32_array, &c.y, &yl, "y"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(yl) < prod(c.B, c.T, c.H, c.d), "attentionTrainF32: y too small")) return nullptr;
  run_attention(env, &c);
  return nullptr;
}

// attentionTrainGradF32(q, k, v, cos, sin, B, T, H, Hkv, d, scale, dy, dq, dk, dv)
napi_value AttentionTrainGradF32(napi_env env, napi_callback_info info) {
  napi_value argv[15];
  if (!get_args(env, info, 15, argv)) return nullptr;
  AttnCtx c{};
  float* dy;
  size_t dyl, dql, dkl, dvl;
  if (!get_attn_common(env, argv, &c, "attentionTrainGradF32: shapes do not match (H % Hkv == 0, even d, q [B,T,H,d], k, v [B,T,Hkv,d], cos, sin [T,d])") ||
      !get_typed(env, argv[11], napi_float32_array, &dy, &dyl, "dy") || !get_typed(env, argv[12], napi_float32_array, &c.dq, &dql, "dq") ||
      !get_typed(env, argv[13], napi_float32_array, &c.dk, &dkl, "dk") || !get_typed(env, argv[14], napi_float32_array, &c.dv, &dvl, "dv"))
    return nullptr;
  const int64_t nq = prod(c.B, c.T, c.H, c.d), nkv = prod(c.B, c.T, c.Hkv, c.d);
  if (throw_if(env, static_cast<int64_t>(dyl) < nq || static_cast<int64_t>(dql) < nq || static_cast<int64_t>(dkl) < nkv || static_cast<int64_t>(dvl) < nkv,
               "attentionTrainGradF32: dy, dq, dk or dv too small"))
    return nullptr;
  c.dy = dy;
  run_attention(env, &c);
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// Attention-relation KD (MiniLMv2, packages/losses attentionRelationKd) in one call: for q, k and v of teacher and
// student ([B, H, T, d] each, heads regrouped into R relation heads of D = H d / R features), per (batch,
// relation head) the relation rows (cosine: L2-normalised A A^T; scaled: A A^T / sqrt(D)), row softmax clamped
// at 1e-8, KL(teacher || student) averaged over the B R T rows and divided by R, and the gradient with respect
// to the student's q, k, v. One (batch, relation head) per task; the loss sums per task in a fixed order.

struct RelPart {
  const float* x;  // [B, H, T, d]
  int64_t H, d;
};

struct RelCtx {
  RelPart t, s;
  float* dx;  // student gradient [B, Hs, T, ds], or null
  int64_t B, T, R;
  bool cosine;
  float inv;
  double* kl;  // [B * R]
  std::atomic<bool> failed{false};
};

thread_local Scratch t_rel;

// Relation head r of batch b of part x gathered into a [T, D] (row t = features r D .. r D + D - 1 of token t).
void rel_gather(const RelPart& x, int64_t b, int64_t r, int64_t T, int64_t D, float* a) {
  for (int64_t t = 0; t < T; t++) {
    for (int64_t j = 0; j < D; j++) {
      const int64_t f = r * D + j, h = f / x.d, i = f % x.d;
      a[t * D + j] = x.x[((b * x.H + h) * T + t) * x.d + i];
    }
  }
}

// Scores [T, T] of a [T, D]: cosine normalises a's rows in place first (norms into n, the eps test into big).
void rel_scores(float* a, int64_t T, int64_t D, bool cosine, float* n, float* big, float* s) {
  if (cosine) {
    for (int64_t t = 0; t < T; t++) {
      float ss = 0.0f;
      for (int64_t j = 0; j < D; j++) ss += a[t * D + j] * a[t * D + j];
      const float e2 = 1e-12f * 1e-12f;
      n[t] = sqrtf(ss > e2 ? ss : e2);
      big[t] = ss >= e2 ? 1.0f : 0.0f;
      for (int64_t j = 0; j < D; j++) a[t * D + j] = a[t * D + j] / n[t];
    }
  }
  gemm_local(a, D, 1, a, 1, D, s, T, T, T, D);
  if (!cosine) {
    const float sd = sqrtf(static_cast<float>(D));
    for (int64_t i = 0; i < T * T; i++) s[i] = s[i] / sd;
  }
}

void rel_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<RelCtx*>(p);
  const int64_t T = c->T, R = c->R;
  const int64_t Dt = c->t.H * c->t.d / R, Ds = c->s.H * c->s.d / R;
  float* buf = static_cast<float*>(t_rel.get(static_cast<size_t>(prod(4, sat_add(sat_add(prod(5, T, T), prod(T, sat_add(Dt, prod(2, Ds)))), prod(4, T))))));
  if (buf == nullptr) {
    c->failed.store(true);
    return;
  }
  float* at = buf;
  float* as = at + T * Dt;
  float* dan = as + T * Ds;
  float* nt = dan + T * Ds;
  float* bt = nt + T;
  float* ns = bt + T;
  float* bs = ns + T;
  float* st = bs + T;
  float* ss = st + T * T;
  float* lt = ss + T * T;
  float* ls = lt + T * T;
  float* g = ls + T * T;
  int64_t u0, u1;
  split(c->B * R, chunk, nchunks, &u0, &u1);
  for (int64_t u = u0; u < u1; u++) {
    const int64_t b = u / R, r = u % R;
    rel_gather(c->t, b, r, T, Dt, at);
    rel_scores(at, T, Dt, c->cosine, nt, bt, st);
    relation_softmax_f32(st, st, lt, T);  // teacher: probabilities (in place) and clamped log-probabilities
    rel_gather(c->s, b, r, T, Ds, as);
    rel_scores(as, T, Ds, c->cosine, ns, bs, ss);
    relation_softmax_f32(ss, ss, ls, T);  // ss: the student's probabilities
    double kl = 0.0;
    relation_kl_grad_f32(st, ss, ls, lt, g, T, c->inv, &kl);
    c->kl[u] = kl;
    if (c->dx == nullptr) continue;
    // dS symmetric part: the scores are an an^T, so d an = (dS + dS^T) an.
    for (int64_t i = 0; i < T; i++) {
      for (int64_t j = i; j < T; j++) {
        const float v = g[i * T + j] + g[j * T + i];
        g[i * T + j] = v;
        g[j * T + i] = v;
      }
    }
    gemm_local(g, T, 1, as, Ds, 1, dan, Ds, T, Ds, T);
    for (int64_t t = 0; t < T; t++) {
      float* d = dan + t * Ds;
      const float* an = as + t * Ds;
      if (c->cosine) {
        float dot = 0.0f;
        for (int64_t j = 0; j < Ds; j++) dot += an[j] * d[j];
        const float k = dot * bs[t];
        for (int64_t j = 0; j < Ds; j++) d[j] = (d[j] - an[j] * k) / ns[t];
      } else {
        const float sd = sqrtf(static_cast<float>(Ds));
        for (int64_t j = 0; j < Ds; j++) d[j] = d[j] / sd;
      }
      for (int64_t j = 0; j < Ds; j++) {
        const int64_t f = r * Ds + j, h = f / c->s.d, i = f % c->s.d;
        c->dx[((b * c->s.H + h) * T + t) * c->s.d + i] = d[j];
      }
    }
  }
}

// relationKdF32(tx, tH, td, sx, sH, sd, B, T, R, cosine, dx | null): one part (q, k or v) of the loss, returned;
// the student's gradient of that part into dx when given.
napi_value RelationKdF32(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  if (!get_args(env, info, 11, argv)) return nullptr;
  float *tx, *sx;
  size_t tl, sl;
  int64_t tH, td, sH, sd, B, T, R;
  bool cosine;
  if (!get_typed(env, argv[0], napi_float32_array, &tx, &tl, "teacher") || !get_i64(env, argv[1], 1, kMaxDim, &tH, "tH") ||
      !get_i64(env, argv[2], 1, kMaxDim, &td, "td") || !get_typed(env, argv[3], napi_float32_array, &sx, &sl, "student") ||
      !get_i64(env, argv[4], 1, kMaxDim, &sH, "sH") || !get_i64(env, argv[5], 1, kMaxDim, &sd, "sd") || !get_i64(env, argv[6], 1, kMaxDim, &B, "B") ||
      !get_i64(env, argv[7], 1, kMaxDim, &T, "T") || !get_i64(env, argv[8], 1, kMaxDim, &R, "R") || !get_bool(env, argv[9], &cosine))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(tl) != prod(B, tH, T, td) || static_cast<int64_t>(sl) != prod(B, sH, T, sd) || (tH * td) % R != 0 || (sH * sd) % R != 0,
               "relationKdF32: shapes do not match (teacher [B, tH, T, td], student [B, sH, T, sd], H d divisible by R)"))
    return nullptr;
  RelCtx c{};
  c.t = RelPart{tx, tH, td};
  c.s = RelPart{sx, sH, sd};
  c.B = B;
  c.T = T;
  c.R = R;
  c.cosine = cosine;
  c.inv = static_cast<float>(1.0 / (static_cast<double>(B) * R * T * R));
  napi_valuetype vt;
  if (napi_typeof(env, argv[10], &vt) != napi_ok) return nullptr;
  if (vt != napi_null && vt != napi_undefined) {
    size_t dl;
    if (!get_typed(env, argv[10], napi_float32_array, &c.dx, &dl, "dx")) return nullptr;
    if (throw_if(env, dl != sl, "relationKdF32: dx must have the student's size")) return nullptr;
  }
  std::vector<double> kl(static_cast<size_t>(B * R), 0.0);
  c.kl = kl.data();
  parallel(std::min<int64_t>(B * R, g_pool->size() * 4), rel_task, &c);
  if (c.failed.load()) {
    napi_throw_error(env, "E_MEMORY", "relationKdF32: out of memory for the per-thread scratch");
    return nullptr;
  }
  double total = 0.0;
  for (double v : kl) total += v;
  return make_number(env, total);
}

napi_value Init(napi_env env, napi_value exports) {
  static std::once_flag once;
  std::call_once(once, [] {
    g_isa = available_isas().back();
    g_pool = new ThreadPool(cpu_count());
  });
  const napi_property_descriptor props[] = {
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setIsa", nullptr, SetIsa, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"misalignment", nullptr, Misalignment, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"repackTernary", nullptr, RepackTernary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"ternaryMatMul", nullptr, TernaryMatMul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quantizeActivations", nullptr, QuantizeActivations, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matvecF32", nullptr, MatvecF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matvecI8F32", nullptr, MatvecI8F32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionF32", nullptr, AttentionF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quantizeRowsI8", nullptr, QuantizeRowsI8, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gemmF32", nullptr, GemmF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gemmBatchF32", nullptr, GemmBatchF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"binaryF32", nullptr, BinaryF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"compare", nullptr, Compare, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unaryF32", nullptr, UnaryF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adamwF32", nullptr, AdamwF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"castToF32", nullptr, CastToF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reduceF32", nullptr, ReduceF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"copyStrided32", nullptr, CopyStrided32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gatherRows32", nullptr, GatherRows32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"rmsNormF32", nullptr, RmsNormF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"rmsNormGradF32", nullptr, RmsNormGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"bitLinearF32", nullptr, BitLinearF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"bitLinearGradF32", nullptr, BitLinearGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionTrainF32", nullptr, AttentionTrainF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionTrainGradF32", nullptr, AttentionTrainGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"relationKdF32", nullptr, RelationKdF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"swigluF32", nullptr, SwigluF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"streamRead", nullptr, StreamRead, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace
}  // namespace bd

NAPI_MODULE_INIT() { return bd::Init(env, exports); }
