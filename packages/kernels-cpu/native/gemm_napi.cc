// fp32 products and memory streaming: the blocked GEMM (Goto/BLIS packing on the ISA's micro-kernel, split
// along m, n or k across the pool; gemm_napi.h), batches of GEMMs, the fp32 matrix-vector product, the memory
// bandwidth probe, and their Node-API functions gemmF32, gemmBatchF32, matvecF32, streamRead, misalignment and
// adviseHugePages
// (what allocAligned uses).
#include <node_api.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <string.h>

#include <algorithm>
#include <atomic>

#include "gemm_napi.h"
#include "isa.h"
#include "kernels.h"
#include "napi_util.h"

namespace bd {
namespace {

thread_local Scratch t_abuf, t_bbuf, t_kbuf;

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

}  // namespace

void gemm_serial(const IsaKernels& K, const GemmView& g) {
  const int mr = K.mr, nr = K.nr;
  if (g.k == 0) {
    if (!g.acc)
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
      const int accumulate = pc > 0 || g.acc;
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

namespace {

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
    v.acc = false;  // the partials start from zero; chunk 0 accumulates into C when asked
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

}  // namespace

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

bool get_gemm_args(napi_env env, napi_value* argv, GemmView* g, size_t* al, size_t* bl, size_t* cl) {
  float *a, *b, *c;
  int64_t m, k, n;
  bool ta, tb;
  if (!get_typed(env, argv[0], napi_float32_array, &a, al, "a") || !get_typed(env, argv[1], napi_float32_array, &b, bl, "b") ||
      !get_typed(env, argv[2], napi_float32_array, &c, cl, "c") || !get_i64(env, argv[3], 0, kMaxDim, &m, "m") ||
      !get_i64(env, argv[4], 0, kMaxDim, &k, "k") || !get_i64(env, argv[5], 0, kMaxDim, &n, "n") || !get_bool(env, argv[6], &ta) ||
      !get_bool(env, argv[7], &tb))
    return false;
  *g = GemmView{a, ta ? 1 : k, ta ? m : 1, b, tb ? 1 : n, tb ? k : 1, c, n, m, n, k};
  return true;
}

namespace {

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

// misalignment(bytes: Uint8Array) -> address of bytes[0] modulo 64. ArrayBuffer memory does not move, so
// JS can over-allocate and view a cache-line aligned window (memory that V8 owns and frees promptly).
napi_value Misalignment(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t* p;
  size_t n;
  if (!get_args(env, info, 1, argv) || !get_typed(env, argv[0], napi_uint8_array, &p, &n, "bytes")) return nullptr;
  return make_number(env, static_cast<double>(reinterpret_cast<uintptr_t>(p) % 64));
}

// adviseHugePages(bytes: Uint8Array) -> the offset of the first 2 MiB boundary in bytes; the whole 2 MiB pages
// from there are advised MADV_HUGEPAGE (Linux; transparent huge pages in "madvise" mode), so that memory not
// touched yet faults in as 2 MiB pages: streamed weights then cross a page (and a stop of the hardware
// prefetchers, a TLB miss) every 2 MiB instead of every 4 KiB.
napi_value AdviseHugePages(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t* p;
  size_t n;
  if (!get_args(env, info, 1, argv) || !get_typed(env, argv[0], napi_uint8_array, &p, &n, "bytes")) return nullptr;
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (a + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (a + n) & ~(kHuge - 1);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return make_number(env, static_cast<double>(start - a));
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
  GemmView g;
  size_t al, bl, cl;
  if (!get_args(env, info, 8, argv) || !get_gemm_args(env, argv, &g, &al, &bl, &cl)) return nullptr;
  if (throw_if(env, static_cast<int64_t>(al) < prod(g.m, g.k) || static_cast<int64_t>(bl) < prod(g.k, g.n) || static_cast<int64_t>(cl) < prod(g.m, g.n),
               "gemmF32: array too small"))
    return nullptr;
  if (g.m == 0 || g.n == 0) return nullptr;
  gemm_parallel(g_isa, g);
  return nullptr;
}

// gemmBatchF32(a, b, c, m, k, n, transA, transB, aidx: Int32Array, bidx: Int32Array): for i < aidx.length,
// C_i = op(A_{aidx[i]}) @ op(B_{bidx[i]}) with the layouts of gemmF32; A holds matrices of m * k floats, B of
// k * n, C is [aidx.length, m, n].
napi_value GemmBatchF32(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  GemmView g;
  int32_t *ai, *bi;
  size_t al, bl, cl, ail, bil;
  if (!get_args(env, info, 10, argv) || !get_gemm_args(env, argv, &g, &al, &bl, &cl) || !get_typed(env, argv[8], napi_int32_array, &ai, &ail, "aidx") ||
      !get_typed(env, argv[9], napi_int32_array, &bi, &bil, "bidx"))
    return nullptr;
  const int64_t m = g.m, k = g.k, n = g.n;
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

}  // namespace

void register_gemm(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"gemmF32", nullptr, GemmF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gemmBatchF32", nullptr, GemmBatchF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matvecF32", nullptr, MatvecF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"streamRead", nullptr, StreamRead, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"misalignment", nullptr, Misalignment, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adviseHugePages", nullptr, AdviseHugePages, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace bd
