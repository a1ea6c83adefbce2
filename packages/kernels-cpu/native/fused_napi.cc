// Fused training ops, one call each, forward and backward: the student's BitLinear (int8 activations x ternary
// weights, fake-quantized, STE; its product on the int8 GEMM where the ISA has one, else the fp32 GEMM), SwiGLU, causal
// attention with RoPE, and the attention-relation KD loss; their Node-API functions bitLinearF32,
// bitLinearGradF32, swigluF32, attentionTrainF32, attentionTrainGradF32 and relationKdF32.
#include <math.h>
#include <node_api.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "gemm_napi.h"
#include "isa.h"
#include "kernels.h"
#include "napi_util.h"
#include "norm_napi.h"
#include "pool_ops.h"
#include "tensor_ops.h"

namespace bd {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Fused training ops: the student's BitLinear (int8 activations x ternary weights, fake-quantized, STE) and
// SwiGLU, forward and backward, each one call. The quantized operands live only in scratch for the call:
// autograd saves x and W (which are alive anyway), not their quantized copies.

Scratch g_fq_a, g_fq_b;  // main thread only (the JS thread calls these kernels one at a time)

struct FqCtx {
  const float* x;
  int8_t* q8;          // int8 codes of x (act_quant_task); null: each row's codes only in per-thread scratch
  const float* gain;   // act_quant_task: x RMS-normalised by gain (eps) first, when not null
  float eps;
  float* out;
  float* s;
  int64_t rows, cols;
  int dequant;
  std::atomic<bool> failed{false};
  // ternary pass / abs sums
  const float* w;
  const float* d;  // per-row scales (perRow) or one value
  float* tout;
  double* sums;
  int64_t n, wcols;
  bool per_row, tern_dequant;
};

thread_local Scratch t_quant_row;

// One row of x quantized by the ISA's QuantizeFn into q (its scale returned), RMS-normalised by gain (eps) into xn
// first when gain is not null: rmsnorm_rows' then act_quant's arithmetic, so the codes are bit-identical to those
// two passes.
float quant_row(const float* xr, const float* gain, float eps, int64_t k, float* xn, int8_t* q) {
  if (gain != nullptr) {
    rmsnorm_f32(xr, gain, xn, 0, 1, k, eps);
    xr = xn;
  }
  return g_isa->quantize(xr, k, q);
}

// Rows [b, e) of x (RMS-normalised first when gain is set, the row in scratch: rmsnorm_rows' arithmetic) quantized
// by the ISA's QuantizeFn (int8 codes and scales s), then as floats: q or q / s.
void act_quant_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<FqCtx*>(p);
  int64_t b, e;
  split(c->rows, chunk, nchunks, &b, &e);
  float* xn = nullptr;
  int8_t* qrow = nullptr;
  if (c->gain != nullptr || c->q8 == nullptr) {
    xn = static_cast<float*>(t_quant_row.get(sizeof(float) * static_cast<size_t>(c->cols) + static_cast<size_t>(c->cols)));
    if (xn == nullptr) {
      c->failed.store(true);
      return;
    }
    qrow = reinterpret_cast<int8_t*>(xn + c->cols);
  }
  for (int64_t r = b; r < e; r++) {
    int8_t* q8 = c->q8 != nullptr ? c->q8 + r * c->cols : qrow;
    const float sc = quant_row(c->x + r * c->cols, c->gain, c->eps, c->cols, xn, q8);
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
// With gain set, x is RMS-normalised (eps) row by row first; with q8 null the codes are not kept (only out and s).
// False when the per-thread row scratch cannot be had.
bool act_quant(const float* x, int64_t m, int64_t k, int8_t* q8, float* s, float* out, bool dequant, const float* gain = nullptr, float eps = 0.0f) {
  FqCtx c{};
  c.x = x;
  c.q8 = q8;
  c.gain = gain;
  c.eps = eps;
  c.out = out;
  c.s = s;
  c.rows = m;
  c.cols = k;
  c.dequant = dequant ? 1 : 0;
  parallel(elem_chunks(m * k, m), act_quant_task, &c);
  return !c.failed.load();
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

// The int8 training GEMM (kernels.h GemmI8Job): packing of the activation codes (with their row sums) and of the
// ternary codes, then the ISA's blocks on the pool.
struct GemmI8Ctx {
  GemmI8Job job;
  const float* w;    // [n, k] latent weights
  int64_t k;
  int8_t* a;
  uint8_t* b;
  int32_t* asum;
  // The activations: the rows of x [m, k], RMS-normalised by gain (eps) when gain is set, quantized row by row
  // while packing, as act_quant does (scales into s); the normalised row and its codes stay in per-thread scratch.
  // No [m, k] normalised rows or code array.
  const float *x, *gain;
  float eps;
  float* s;
  std::atomic<bool> failed{false};
};

thread_local Scratch t_pack_row;

void pack_a_i8_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<GemmI8Ctx*>(p);
  const GemmI8Job& j = c->job;
  int64_t b, e;
  split((j.m + kI8Mr - 1) / kI8Mr, chunk, nchunks, &b, &e);
  auto* xn = static_cast<float*>(t_pack_row.get(sizeof(float) * static_cast<size_t>(c->k) + static_cast<size_t>(c->k)));
  if (xn == nullptr) {
    c->failed.store(true);
    return;
  }
  auto* src = reinterpret_cast<int8_t*>(xn + c->k);  // the row's codes
  for (int64_t rb = b; rb < e; rb++) {
    int8_t* dst = c->a + rb * j.groups * kI8Mr * 4;
    for (int r = 0; r < kI8Mr; r++) {
      const int64_t row = rb * kI8Mr + r;
      if (row >= j.m) {
        for (int64_t g = 0; g < j.groups; g++) memset(dst + (g * kI8Mr + r) * 4, 0, 4);
        continue;
      }
      c->s[row] = quant_row(c->x + row * c->k, c->gain, c->eps, c->k, xn, src);
      int32_t sum = 0;
      for (int64_t col = 0; col < c->k; col++) sum += src[col];
      c->asum[row] = sum;
      int64_t g = 0;
      for (; 4 * g + 4 <= c->k; g++) memcpy(dst + (g * kI8Mr + r) * 4, src + 4 * g, 4);
      if (g < j.groups) {
        int8_t last[4] = {0, 0, 0, 0};
        for (int64_t col = 4 * g; col < c->k; col++) last[col - 4 * g] = src[col];
        memcpy(dst + (g * kI8Mr + r) * 4, last, 4);
      }
    }
  }
}

void pack_b_i8_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<GemmI8Ctx*>(p);
  const GemmI8Job& j = c->job;
  // One row's codes + 1, padded with 1 (a zero code: columns past k meet zero activations anyway).
  std::vector<uint8_t> row(static_cast<size_t>(j.groups * 4), 1);
  int8_t* codes = reinterpret_cast<int8_t*>(row.data());
  int64_t b, e;
  split((j.n + kI8Nr - 1) / kI8Nr, chunk, nchunks, &b, &e);
  for (int64_t cb = b; cb < e; cb++) {
    uint8_t* dst = c->b + cb * j.groups * kI8Nr * 4;
    for (int r = 0; r < kI8Nr; r++) {
      const int64_t n = cb * kI8Nr + r;
      if (n < j.n) {
        ternary_codes_i8(c->w + n * c->k, j.per_row ? j.d[n] : j.d[0], codes, c->k);
        for (int64_t i = 0; i < c->k; i++) row[i] = static_cast<uint8_t>(codes[i] + 1);
      } else {
        std::fill(row.begin(), row.end(), static_cast<uint8_t>(1));
      }
      for (int64_t g = 0; g < j.groups; g++) memcpy(dst + (g * kI8Nr + r) * 4, row.data() + 4 * g, 4);
    }
  }
}

void gemm_i8_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<GemmI8Ctx*>(p);
  int64_t b, e;
  split((c->job.m + kI8Mr - 1) / kI8Mr, chunk, nchunks, &b, &e);
  g_isa->gemm_i8(c->job, b, e);
}

// Bytes of one B slice (kI8Nr features x all of k) the GEMM keeps in L2 while it walks every row block.
constexpr int64_t kI8L2Bytes = 192 << 10;

Scratch g_fq_q8, g_fq_w8;  // int8 codes of x and the packed operands of the int8 GEMM, main thread only

// y [m, n] = the integer product of the int8 codes of x [m, k] (RMS-normalised by gain (eps) first when gain is
// not null; codes formed while packing, their scales written into s [m], see GemmI8Ctx) and ternary(w [n, k], d)
// on the int8 GEMM (false when scratch cannot be had).
bool gemm_i8_forward(const float* x, const float* gain, float eps, float* s, const float* w, const std::vector<float>& d, int64_t m, int64_t k,
                     int64_t n, bool per_row, float* y) {
  GemmI8Ctx c{};
  c.x = x;
  c.gain = gain;
  c.eps = eps;
  c.s = s;
  c.job.groups = (k + 3) / 4;
  c.job.m = m;
  c.job.n = n;
  c.job.s = s;
  c.job.d = d.data();
  c.job.per_row = per_row ? 1 : 0;
  c.job.y = y;
  c.job.l2_blocks = std::max<int64_t>(1, kI8L2Bytes / (c.job.groups * kI8Nr * 4));
  const int64_t rblocks = (m + kI8Mr - 1) / kI8Mr, cblocks = (n + kI8Nr - 1) / kI8Nr;
  const size_t abytes = static_cast<size_t>(rblocks * kI8Mr * c.job.groups * 4);
  const size_t bbytes = static_cast<size_t>(cblocks * kI8Nr * c.job.groups * 4);
  auto* buf = static_cast<uint8_t*>(g_fq_w8.get(abytes + bbytes + sizeof(int32_t) * static_cast<size_t>(m)));
  if (buf == nullptr) return false;
  c.a = reinterpret_cast<int8_t*>(buf + bbytes);
  c.b = buf;  // first: 64-byte aligned for the panel loads (abytes and bbytes are multiples of 64)
  c.asum = reinterpret_cast<int32_t*>(buf + bbytes + abytes);
  c.w = w;
  c.k = k;
  c.job.a = c.a;
  c.job.b = c.b;
  c.job.asum = c.asum;
  parallel(elem_chunks(m * k, rblocks), pack_a_i8_task, &c);
  if (c.failed.load()) return false;
  parallel(elem_chunks(n * k, cblocks), pack_b_i8_task, &c);
  parallel(elem_chunks(m * n, rblocks), gemm_i8_task, &c);
  return true;
}

Scratch g_fq_xn, g_fq_dxn;  // the normalised input and its gradient (normBitLinear*), main thread only

// The forward product of bitLinearF32 on x [m, k], or on rmsNorm(x, gain, eps) when gain is not null (false, with
// a JavaScript error naming `what` thrown, when scratch cannot be had): the int8 GEMM where the ISA has one
// (AVX-512 VNNI, AMX), each row normalised, quantized and packed in one pass; else the codes as floats on the
// fp32 GEMM.
bool bitlinear_forward(napi_env env, const float* x, const float* gain, float eps, const float* w, int64_t m, int64_t k, int64_t n, bool per_row, float* y,
                       const char* what) {
  if (g_isa->gemm_i8 != nullptr) {
    float* s = static_cast<float*>(g_fq_a.get(sizeof(float) * static_cast<size_t>(m)));
    if (throw_if(env, s == nullptr, what)) return false;
    const std::vector<float> d = ternary_scales(w, n, k, per_row);
    return !throw_if(env, !gemm_i8_forward(x, gain, eps, s, w, d, m, k, n, per_row, y), what);
  }
  if (gain != nullptr) {
    float* xn = static_cast<float*>(g_fq_xn.get(sizeof(float) * static_cast<size_t>(m * k)));
    if (throw_if(env, xn == nullptr, what)) return false;
    rmsnorm_rows(x, gain, xn, m, k, eps);
    x = xn;
  }
  int8_t* q8 = static_cast<int8_t*>(g_fq_q8.get(static_cast<size_t>(m * k)));
  float* s = static_cast<float*>(g_fq_a.get(sizeof(float) * static_cast<size_t>(m + m * k)));
  if (throw_if(env, q8 == nullptr || s == nullptr, what)) return false;
  float* qf = s + m;
  act_quant(x, m, k, q8, s, qf, false);
  const std::vector<float> d = ternary_scales(w, n, k, per_row);
  float* c = static_cast<float*>(g_fq_b.get(sizeof(float) * static_cast<size_t>(n * k)));
  if (throw_if(env, c == nullptr, what)) return false;
  ternarize(w, n, k, d, per_row, false, c);
  gemm_parallel(g_isa, GemmView{qf, k, 1, c, 1, k, y, n, m, n, k});
  RescaleCtx rc{y, s, d.data(), m, n, per_row};
  parallel(elem_chunks(m * n, m), rescale_task, &rc);
  return true;
}

// bitLinearF32(x [m, k], w [n, k], m, k, n, perRow, y [m, n]):
//   y = (q @ c^T) * f32(d / s),  q = clamp(rhe(x * s), -128, 127) per row, c = clamp(rhe(W / d), -1, 1):
// the integer form of int8Quant(x) @ ternaryQuant(W)^T. The integer product is exact on both paths: int32 on the
// int8 GEMM (AVX-512 VNNI / AMX ISAs), float32 of small integers on the fp32 GEMM otherwise.
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
  bitlinear_forward(env, x, nullptr, 0.0f, w, m, k, n, per_row, y, "bitLinearF32: out of memory for scratch");
  return nullptr;
}

// --- The bf16 precision of the BitLinear backward (setBitLinearGradPrecision('bf16')) ---
// dx = d (dy @ c) and dW = (dy / s)^T @ q on the bf16 GEMM (kernels.h GemmBf16Job): the ternary codes c and the
// int8 codes q are exact in bfloat16, so only the gradient operand is rounded (to nearest even), with the
// per-row ternary scales (perRow) or the per-token 1 / s folded into it first; products exact, sums in fp32. The
// official code trains in bf16 (PAPER.md section 7); the default stays fp32.
bool g_grad_bf16 = false;

struct Bf16Ctx {
  const Bf16Kernels* k;
  Bf16PackA pa;
  Bf16PackB pb;
  GemmBf16Job job;
  // ternary codes of W (codes_task)
  const float* w;
  const float* d;
  bool per_row;
  int8_t* c8;
  int64_t n, kk;
};

void pack_a_bf16_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<Bf16Ctx*>(p);
  int64_t b, e;
  split((c->pa.rows + kBfMr - 1) / kBfMr, chunk, nchunks, &b, &e);
  c->k->pack_a(c->pa, b, e);
}

void pack_b_bf16_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<Bf16Ctx*>(p);
  int64_t b, e;
  split((c->pb.cols + kBfNr - 1) / kBfNr, chunk, nchunks, &b, &e);
  c->k->pack_b(c->pb, b, e);
}

void gemm_bf16_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<Bf16Ctx*>(p);
  int64_t b, e;
  split((c->job.m + kBfMr - 1) / kBfMr, chunk, nchunks, &b, &e);
  c->k->gemm(c->job, b, e);
}

void codes_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<Bf16Ctx*>(p);
  int64_t b, e;
  split(c->n, chunk, nchunks, &b, &e);
  for (int64_t r = b; r < e; r++) ternary_codes_i8(c->w + r * c->kk, c->per_row ? c->d[r] : c->d[0], c->c8 + r * c->kk, c->kk);
}

Scratch g_bf_a, g_bf_b, g_bf_codes;  // main thread only

// Products whose inner size exceeds kBfLongInner run in blocks of kBfInnerBlock (the vocabulary head's dh = g W,
// inner = V): packed whole, A and B were each a pass over memory per micro-tile (every tile walks all of the
// inner size), and the packed head alone was V C / 2 words of scratch. The products of the layers (inner = tokens
// or a hidden size) stay in one block, so their sums are unchanged.
constexpr int64_t kBfLongInner = 8192;
constexpr int64_t kBfInnerBlock = 2048;

// out [rows, cols] = scale * A @ B (out += with acc) with A from (src, rs, ps, sv, mode) and B the int8 codes
// [inner, cols], or, with fsrc set, B[p, j] = fsrc[p * fps + j * fcs] rounded to bf16.
bool gemm_bf16_codes(const Bf16Kernels* bk, const float* src, int64_t rs, int64_t ps, const float* sv, int mode, const int8_t* codes, int64_t rows,
                     int64_t cols, int64_t inner, float scale, float* out, const float* fsrc = nullptr, int64_t fps = 0, int64_t fcs = 0,
                     bool acc = false) {
  Bf16Ctx c{};
  c.k = bk;
  const int64_t block = inner > kBfLongInner ? kBfInnerBlock : inner;
  const int64_t bpairs = (block + 1) / 2;
  const int64_t rblocks = (rows + kBfMr - 1) / kBfMr, cblocks = (cols + kBfNr - 1) / kBfNr;
  auto* a = static_cast<uint32_t*>(g_bf_a.get(sizeof(uint32_t) * static_cast<size_t>(rblocks * kBfMr * bpairs)));
  auto* b = static_cast<uint32_t*>(g_bf_b.get(sizeof(uint32_t) * static_cast<size_t>(cblocks * kBfNr * bpairs)));
  if (a == nullptr || b == nullptr) return false;
  for (int64_t p0 = 0; p0 < inner; p0 += block) {
    const int64_t kb = std::min(block, inner - p0);
    const int64_t pairs = (kb + 1) / 2;
    c.pa = Bf16PackA{src + p0 * ps, rs, ps, sv == nullptr ? nullptr : sv + p0, mode, rows, kb, pairs, a};
    c.pb = Bf16PackB{codes == nullptr ? nullptr : codes + p0 * cols, kb, cols, pairs, b, fsrc == nullptr ? nullptr : fsrc + p0 * fps, fps, fcs};
    parallel(elem_chunks(rows * kb, rblocks), pack_a_bf16_task, &c);
    parallel(elem_chunks(cols * kb, cblocks), pack_b_bf16_task, &c);
    c.job = GemmBf16Job{a, b, out, cols, rows, cols, pairs, std::max<int64_t>(1, (192 << 10) / (pairs * kBfNr * 4)), scale, acc || p0 > 0};
    parallel(elem_chunks(rows * cols, rblocks), gemm_bf16_task, &c);
  }
  return true;
}

// The bf16 backward (false when scratch cannot be had).
bool bitlinear_backward_bf16(const Bf16Kernels* fn, const float* x, const float* w, int64_t m, int64_t k, int64_t n, bool per_row, const float* dy, float* dx,
                             float* dw) {
  auto* q8 = static_cast<int8_t*>(g_fq_q8.get(static_cast<size_t>(m * k)));
  auto* s = static_cast<float*>(g_fq_a.get(sizeof(float) * static_cast<size_t>(m)));
  auto* c8 = static_cast<int8_t*>(g_bf_codes.get(static_cast<size_t>(n * k)));
  if (q8 == nullptr || s == nullptr || c8 == nullptr) return false;
  act_quant(x, m, k, q8, s, nullptr, false);
  const std::vector<float> d = ternary_scales(w, n, k, per_row);
  Bf16Ctx cc{};
  cc.w = w;
  cc.d = d.data();
  cc.per_row = per_row;
  cc.c8 = c8;
  cc.n = n;
  cc.kk = k;
  parallel(elem_chunks(n * k, n), codes_task, &cc);
  // dx [m, k] = sum_p dy[i, p] (d[p]) c[p, j]: A = dy (rows i, inner p), B = c [n, k]
  if (!gemm_bf16_codes(fn, dy, n, 1, d.data(), per_row ? 1 : 0, c8, m, k, n, per_row ? 1.0f : d[0], dx)) return false;
  // dW [n, k] = sum_i (dy[i, j] / s[i]) q[i, kk]: A = dy^T (rows j, inner i), B = q [m, k]
  return gemm_bf16_codes(fn, dy, 1, n, s, 2, q8, n, k, m, 1.0f, dw);
}

// gradMatmulF32(a, b, c, m, k, n, transA, transB, accumulate) - gemmF32's arguments: c = op(a) @ op(b) (c += with
// accumulate: a gradient summed over chunks in place), a product of a backward
// pass (the dense linears' dx = dy W and dW = dy^T x, the vocabulary head's): on the bf16 GEMM when the backward
// precision is bf16 (setBitLinearGradPrecision; both operands rounded to nearest even, products exact, fp32
// sums), else the fp32 GEMM as gemmF32.
napi_value GradMatmulF32(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  GemmView g;
  size_t al, bl, cl;
  if (!get_args(env, info, 9, argv) || !get_gemm_args(env, argv, &g, &al, &bl, &cl) || !get_bool(env, argv[8], &g.acc)) return nullptr;
  if (throw_if(env, g.m < 1 || g.k < 1 || g.n < 1 || static_cast<int64_t>(al) < prod(g.m, g.k) || static_cast<int64_t>(bl) < prod(g.k, g.n) ||
                        static_cast<int64_t>(cl) < prod(g.m, g.n),
               "gradMatmulF32: a, b or c too small for m, k, n (each >= 1)"))
    return nullptr;
  const Bf16Kernels* bf = g_grad_bf16 ? bf16_gemm() : nullptr;
  if (bf == nullptr) {
    gemm_parallel(g_isa, g);
    return nullptr;
  }
  throw_if(env, !gemm_bf16_codes(bf, g.a, g.sai, g.sap, nullptr, 0, nullptr, g.m, g.n, g.k, 1.0f, g.c, g.b, g.sbp, g.sbj, g.acc),
           "gradMatmulF32: out of memory for scratch");
  return nullptr;
}

// setBitLinearGradPrecision(bf16: boolean) -> boolean: the precision of the fused BitLinear backward's products
// (fp32 by default); false when bf16 was asked but this CPU / ISA has no AVX512_BF16 (fp32 stays).
napi_value SetBitLinearGradPrecision(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return nullptr;
  bool bf16;
  if (!get_bool(env, argv[0], &bf16)) return nullptr;
  g_grad_bf16 = bf16 && bf16_gemm() != nullptr;
  napi_value out;
  napi_get_boolean(env, g_grad_bf16 == bf16, &out);
  return out;
}

// --- The fp32 backward of a small projection in one pool region ---
// At the tiny model's sizes (k = 64, a few thousand weights, 1,024 tokens) the multi-pass backward below is bound
// by its fork-joins (about ten regions: norm, codes, scales, ternary weights, two GEMMs with their packing, the
// norm gradient) and its passes over memory, not by its products. Here the ternary weights are formed once on the
// calling thread, then each chunk takes a range of rows end to end - the RMSNorm when fused, the int8 codes and
// their dequantized rows, its dx rows on the serial GEMM, the RMSNorm gradient - and its rows' share of dW (and
// dgain) into a partial of its own; the partials are summed in chunk order. The chunks are the ones
// rmsnorm_grad_rows takes, so every output is bit-identical to bitLinearGradF32 / rmsNormGradF32 composed.
constexpr int64_t kSmallGradWeights = int64_t{1} << 16;

struct SmallGradCtx {
  const float *x, *gain, *wq, *dy;  // gain null: no fused norm
  float eps;
  float *dx, *dw_part, *dg_part;  // partials [chunks, n k] and [chunks, k]
  int64_t m, k, n;
  std::atomic<bool> failed{false};
};

thread_local Scratch t_small_grad;

void small_grad_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<SmallGradCtx*>(p);
  const int64_t k = c->k, n = c->n;
  int64_t b, e;
  split(c->m, chunk, nchunks, &b, &e);
  const int64_t rows = e - b;
  float* dwp = c->dw_part + chunk * n * k;
  float* dgp = c->gain == nullptr ? nullptr : c->dg_part + chunk * k;
  if (dgp != nullptr) memset(dgp, 0, sizeof(float) * static_cast<size_t>(k));
  if (rows <= 0) {
    memset(dwp, 0, sizeof(float) * static_cast<size_t>(n * k));
    return;
  }
  // xn, xq, dxn [rows, k] floats, then the codes [rows, k]
  float* buf = static_cast<float*>(t_small_grad.get(sizeof(float) * static_cast<size_t>(3 * rows * k) + static_cast<size_t>(rows * k)));
  if (buf == nullptr) {
    c->failed.store(true);
    return;
  }
  float* xn = buf;
  float* xq = xn + rows * k;
  float* dxn = xq + rows * k;
  auto* q8 = reinterpret_cast<int8_t*>(dxn + rows * k);
  const float* xr = c->x + b * k;
  const float* xin = xr;
  if (c->gain != nullptr) {
    rmsnorm_f32(xr, c->gain, xn, 0, rows, k, c->eps);
    xin = xn;
  }
  for (int64_t r = 0; r < rows; r++) int8_to_f32(q8 + r * k, g_isa->quantize(xin + r * k, k, q8 + r * k), xq + r * k, k);
  const float* dyr = c->dy + b * n;
  float* dxo = c->gain != nullptr ? dxn : c->dx + b * k;
  gemm_serial(*g_isa, GemmView{dyr, n, 1, c->wq, k, 1, dxo, k, rows, k, n});   // [rows, n] @ [n, k]
  gemm_serial(*g_isa, GemmView{dyr, 1, n, xq, k, 1, dwp, k, n, k, rows});      // [n, rows] (dy^T) @ [rows, k]
  if (c->gain != nullptr) rmsnorm_grad_f32(dxn, xr, c->gain, c->dx + b * k, dgp, 0, rows, k, c->eps);
}

Scratch g_small_parts;  // main thread only

// The one-region backward (false when scratch cannot be had); gain null for a plain BitLinear (dg unused).
bool bitlinear_backward_small(const float* x, const float* gain, float eps, const float* w, int64_t m, int64_t k, int64_t n, bool per_row, const float* dy,
                              float* dx, float* dg, float* dw) {
  float* wq = static_cast<float*>(g_fq_b.get(sizeof(float) * static_cast<size_t>(n * k)));
  const int64_t chunks = elem_chunks(m * k, std::min<int64_t>(m, g_pool->size()));  // rmsnorm_grad_rows' chunks
  float* parts = static_cast<float*>(g_small_parts.get(sizeof(float) * static_cast<size_t>(chunks * (n * k + k))));
  if (wq == nullptr || parts == nullptr) return false;
  ternarize(w, n, k, ternary_scales(w, n, k, per_row), per_row, true, wq);
  SmallGradCtx c{};
  c.x = x;
  c.gain = gain;
  c.wq = wq;
  c.dy = dy;
  c.eps = eps;
  c.dx = dx;
  c.dw_part = parts;
  c.dg_part = parts + chunks * n * k;
  c.m = m;
  c.k = k;
  c.n = n;
  parallel(chunks, small_grad_task, &c);
  if (c.failed.load()) return false;
  // Summed from 0 in chunk order, as gemm_parallel's split-K and rmsnorm_grad_rows do.
  for (int64_t i = 0; i < n * k; i++) {
    float v = 0.0f;
    for (int64_t ch = 0; ch < chunks; ch++) v += parts[ch * n * k + i];
    dw[i] = v;
  }
  if (gain != nullptr) {
    for (int64_t i = 0; i < k; i++) {
      float v = 0.0f;
      for (int64_t ch = 0; ch < chunks; ch++) v += c.dg_part[ch * k + i];
      dg[i] = v;
    }
  }
  return true;
}

bool small_grad(int64_t n, int64_t k) { return !g_grad_bf16 && n * k <= kSmallGradWeights; }

// The fp32 backward's products: dx = dy @ (c d), dW = dy^T @ (q / s) with the int8 codes of x (RMS-normalised
// by gain first when gain is set: normalised, quantized and dequantized in one pass per row; the codes not kept).
bool bitlinear_backward_fp32(const float* x, const float* gain, float eps, const float* w, int64_t m, int64_t k, int64_t n, bool per_row, const float* dy,
                             float* dx, float* dw) {
  float* xq = static_cast<float*>(g_fq_a.get(sizeof(float) * static_cast<size_t>(m * k + m)));
  float* wq = static_cast<float*>(g_fq_b.get(sizeof(float) * static_cast<size_t>(n * k)));
  if (xq == nullptr || wq == nullptr || !act_quant(x, m, k, nullptr, xq + m * k, xq, true, gain, eps)) return false;
  ternarize(w, n, k, ternary_scales(w, n, k, per_row), per_row, true, wq);
  gemm_parallel(g_isa, GemmView{dy, n, 1, wq, k, 1, dx, k, m, k, n});  // [m, n] @ [n, k]
  gemm_parallel(g_isa, GemmView{dy, 1, n, xq, k, 1, dw, k, n, k, m});  // [n, m] (dy^T) @ [m, k]
  return true;
}

// The straight-through backward of bitLinearF32 on x, or of normBitLinearF32 when gain is not null (then dx is the
// gradient through the RMSNorm and dg the gain's): false, with a JavaScript error naming `what` thrown, when scratch
// cannot be had. Small projections in one pool region; bf16 on the normalised rows; fp32 normalising in its
// quantization pass.
bool bitlinear_backward(napi_env env, const float* x, const float* gain, float eps, const float* w, int64_t m, int64_t k, int64_t n, bool per_row,
                        const float* dy, float* dx, float* dg, float* dw, const char* what) {
  if (small_grad(n, k)) return !throw_if(env, !bitlinear_backward_small(x, gain, eps, w, m, k, n, per_row, dy, dx, dg, dw), what);
  float* dxn = dx;  // the gradient of the normalised rows, when there is a norm
  if (gain != nullptr) {
    dxn = static_cast<float*>(g_fq_dxn.get(sizeof(float) * static_cast<size_t>(m * k)));
    if (throw_if(env, dxn == nullptr, what)) return false;
  }
  const Bf16Kernels* bf = g_grad_bf16 ? bf16_gemm() : nullptr;
  bool ok;
  if (bf != nullptr) {
    const float* xin = x;
    if (gain != nullptr) {
      float* xn = static_cast<float*>(g_fq_xn.get(sizeof(float) * static_cast<size_t>(m * k)));
      if (throw_if(env, xn == nullptr, what)) return false;
      rmsnorm_rows(x, gain, xn, m, k, eps);
      xin = xn;
    }
    ok = bitlinear_backward_bf16(bf, xin, w, m, k, n, per_row, dy, dxn, dw);
  } else {
    ok = bitlinear_backward_fp32(x, gain, eps, w, m, k, n, per_row, dy, dxn, dw);
  }
  if (throw_if(env, !ok, what)) return false;
  if (gain != nullptr) rmsnorm_grad_rows(dxn, x, gain, dx, dg, m, k, eps);
  return true;
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
  bitlinear_backward(env, x, nullptr, 0.0f, w, m, k, n, per_row, dy, dx, nullptr, dw, "bitLinearGradF32: out of memory for scratch");
  return nullptr;
}

// normBitLinearF32(x [m, k], gain [k], eps, w [n, k], m, k, n, perRow, y [m, n]): bitLinearF32 of
// rmsNorm(x, gain, eps) - the SubLN norm in front of a student projection - without the normalised rows leaving
// the call.
napi_value NormBitLinearF32(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv)) return nullptr;
  const float *x, *w;
  float *gain, *y;
  size_t gl, yl;
  double eps;
  int64_t m, k, n;
  bool per_row;
  if (!get_typed(env, argv[1], napi_float32_array, &gain, &gl, "gain") || !get_f64(env, argv[2], &eps)) return nullptr;
  napi_value rest[6] = {argv[0], argv[3], argv[4], argv[5], argv[6], argv[7]};
  if (!get_bitlinear_common(env, rest, 0, &x, &w, &m, &k, &n, &per_row, "normBitLinearF32: x or w too small") ||
      !get_typed(env, argv[8], napi_float32_array, &y, &yl, "y"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(gl) != k || static_cast<int64_t>(yl) < prod(m, n), "normBitLinearF32: gain is not [k] or y too small")) return nullptr;
  bitlinear_forward(env, x, gain, static_cast<float>(eps), w, m, k, n, per_row, y, "normBitLinearF32: out of memory for scratch");
  return nullptr;
}

// normBitLinearGradF32(x, gain, eps, w, m, k, n, perRow, dy [m, n], dx [m, k], dgain [k], dw [n, k]): the
// backward of normBitLinearF32 (the normalised rows recomputed): bitLinearGradF32 at them, then the RMSNorm
// gradient.
napi_value NormBitLinearGradF32(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  if (!get_args(env, info, 12, argv)) return nullptr;
  const float *x, *w;
  float *gain, *dy, *dx, *dg, *dw;
  size_t gl, dyl, dxl, dgl, dwl;
  double eps;
  int64_t m, k, n;
  bool per_row;
  if (!get_typed(env, argv[1], napi_float32_array, &gain, &gl, "gain") || !get_f64(env, argv[2], &eps)) return nullptr;
  napi_value rest[6] = {argv[0], argv[3], argv[4], argv[5], argv[6], argv[7]};
  if (!get_bitlinear_common(env, rest, 0, &x, &w, &m, &k, &n, &per_row, "normBitLinearGradF32: x or w too small") ||
      !get_typed(env, argv[8], napi_float32_array, &dy, &dyl, "dy") || !get_typed(env, argv[9], napi_float32_array, &dx, &dxl, "dx") ||
      !get_typed(env, argv[10], napi_float32_array, &dg, &dgl, "dgain") || !get_typed(env, argv[11], napi_float32_array, &dw, &dwl, "dw"))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(gl) != k || static_cast<int64_t>(dgl) < k || static_cast<int64_t>(dyl) < prod(m, n) ||
                        static_cast<int64_t>(dxl) < prod(m, k) || static_cast<int64_t>(dwl) < prod(n, k),
               "normBitLinearGradF32: gain is not [k], or dy, dx, dgain or dw too small"))
    return nullptr;
  bitlinear_backward(env, x, gain, static_cast<float>(eps), w, m, k, n, per_row, dy, dx, dg, dw, "normBitLinearGradF32: out of memory for scratch");
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

int64_t swiglu_chunks(int64_t n) { return elem_chunks(n, n / 4096 + 1); }

// --- The relation KD's view of q, k, v: [B, T, H, d] -> [B, H, T, d], RoPE'd (q, k) or not (v) ---
struct RopeHeadsCtx {
  const float *x, *cos, *sin;
  float* y;
  int64_t B, T, H, d;
  bool rope, backward;
};

void rope_heads_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<RopeHeadsCtx*>(p);
  const int64_t T = c->T, H = c->H, d = c->d;
  int64_t u0, u1;
  split(c->B * H, chunk, nchunks, &u0, &u1);
  for (int64_t u = u0; u < u1; u++) {
    const int64_t b = u / H, h = u % H;
    // token-major side: row t at (b T + t) H d + h d, stride H d; head-major side: (b H + h) T d + t d, stride d
    const int64_t tm = (b * T * H + h) * d, hm = (b * H + h) * T * d;
    const float* src = c->x + (c->backward ? hm : tm);
    float* dst = c->y + (c->backward ? tm : hm);
    const int64_t ss = c->backward ? d : H * d, ds = c->backward ? H * d : d;
    if (c->rope) {
      rope_rows_f32(src, ss, c->cos, c->sin, dst, ds, T, d, c->backward ? 1 : 0);
      continue;
    }
    for (int64_t t = 0; t < T; t++) memcpy(dst + t * ds, src + t * ss, sizeof(float) * static_cast<size_t>(d));
  }
}

// ropeHeadsF32(x, cos, sin, B, T, H, d, rope, backward, y): forward, x [B, T, H, d] -> y [B, H, T, d] with RoPE
// (rotate_half, tables [T, d]) when rope; backward, x = dy [B, H, T, d] -> y = dx [B, T, H, d] through the
// rotation's transpose. The captured q, k, v of the relation KD in one call each way (was a transpose and six
// RoPE ops per tensor, and their gradients).
napi_value RopeHeadsF32(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!get_args(env, info, 10, argv)) return nullptr;
  RopeHeadsCtx c{};
  float *x, *cs, *sn, *y;
  size_t xl, cl, sl, yl;
  if (!get_typed(env, argv[0], napi_float32_array, &x, &xl, "x") || !get_typed(env, argv[1], napi_float32_array, &cs, &cl, "cos") ||
      !get_typed(env, argv[2], napi_float32_array, &sn, &sl, "sin") || !get_i64(env, argv[3], 1, kMaxDim, &c.B, "B") ||
      !get_i64(env, argv[4], 1, kMaxDim, &c.T, "T") || !get_i64(env, argv[5], 1, kMaxDim, &c.H, "H") || !get_i64(env, argv[6], 1, kMaxDim, &c.d, "d") ||
      !get_bool(env, argv[7], &c.rope) || !get_bool(env, argv[8], &c.backward) || !get_typed(env, argv[9], napi_float32_array, &y, &yl, "y"))
    return nullptr;
  const int64_t n = prod(c.B, c.T, c.H, c.d);
  if (throw_if(env, static_cast<int64_t>(xl) != n || static_cast<int64_t>(yl) != n || (c.rope && (c.d % 2 != 0 || static_cast<int64_t>(cl) < prod(c.T, c.d) || static_cast<int64_t>(sl) < prod(c.T, c.d))),
               "ropeHeadsF32: x and y must hold B T H d values, cos and sin T d (d even)"))
    return nullptr;
  c.x = x;
  c.cos = cs;
  c.sin = sn;
  c.y = y;
  parallel(elem_chunks(n, c.B * c.H), rope_heads_task, &c);
  return nullptr;
}

// --- Latent-weight statistics (packages/quant latentWeightStats, at every log step of a student stage) ---
struct TernStatsCtx {
  const float* w;
  const float* d;  // one scale per group of glen elements
  int64_t n, glen;
  double* part;  // [chunks][4]
};

void tern_stats_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<TernStatsCtx*>(p);
  int64_t b, e;
  split(c->n, chunk, nchunks, &b, &e);
  double* out = c->part + 4 * chunk;
  for (int k = 0; k < 4; k++) out[k] = 0.0;
  for (int64_t i = b; i < e;) {
    const int64_t g = i / c->glen, end = std::min(e, (g + 1) * c->glen);
    double o[4];
    ternary_stats_f64(c->w + i, c->d[g], end - i, o);
    for (int k = 0; k < 4; k++) out[k] += o[k];
    i = end;
  }
}

// ternaryStatsF32(w, d: Float32Array (one scale per group), groupLen) -> [sum (w - c d)^2, sum w^2, near-boundary
// count, zero count]: tensor_ops ternary_stats_f64 over the pool, chunk partials added in chunk order.
napi_value TernaryStatsF32(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return nullptr;
  float *w, *d;
  size_t wl, dl;
  int64_t glen;
  if (!get_typed(env, argv[0], napi_float32_array, &w, &wl, "w") || !get_typed(env, argv[1], napi_float32_array, &d, &dl, "d") ||
      !get_i64(env, argv[2], 1, kMaxDim, &glen, "groupLen"))
    return nullptr;
  const int64_t n = static_cast<int64_t>(wl);
  if (throw_if(env, static_cast<int64_t>(dl) != (n + glen - 1) / glen, "ternaryStatsF32: d must hold one scale per group of groupLen weights")) return nullptr;
  const int64_t chunks = n == 0 ? 1 : elem_chunks(n, 4 * g_pool->size());
  std::vector<double> part(static_cast<size_t>(4 * chunks), 0.0);
  TernStatsCtx c{w, d, n, glen, part.data()};
  if (n > 0) parallel(chunks, tern_stats_task, &c);
  double total[4] = {0, 0, 0, 0};
  for (int64_t ch = 0; ch < chunks; ch++)
    for (int k = 0; k < 4; k++) total[k] += part[static_cast<size_t>(4 * ch + k)];
  napi_value arr;
  napi_create_array_with_length(env, 4, &arr);
  for (uint32_t k = 0; k < 4; k++) napi_set_element(env, arr, k, make_number(env, total[k]));
  return arr;
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
  parallel(swiglu_chunks(c.n), swiglu_task, &c);
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

// [T, d] rows of stride ld into [d, Tp] (columns T .. Tp - 1 zero).
void transpose_pad(const float* x, int64_t ld, int64_t T, int64_t Tp, int64_t d, float* xt) {
  for (int64_t i = 0; i < d; i++) {
    for (int64_t t = 0; t < T; t++) xt[i * Tp + t] = x[t * ld + i];
    for (int64_t t = T; t < Tp; t++) xt[i * Tp + t] = 0.0f;
  }
}

// Head sizes up to this take the lane-group form (attn16_task); larger ones a blocked GEMM per head (attn_task).
constexpr int64_t kAttn16MaxD = 16;

// The small-head form (tensor_ops attn16_*): no [T, T] block, no packing; the r query heads of a KV group run
// their query passes first, then one key pass per 16 keys accumulates dK and dV over all of them.
void attn16_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<AttnCtx*>(p);
  const int64_t T = c->T, d = c->d, H = c->H, Hkv = c->Hkv, r = H / Hkv;
  const int64_t Tp = (T + 15) & ~int64_t{15};
  const int64_t sq = H * d, skv = Hkv * d;
  const bool grad = c->dy != nullptr;
  // kr, vb, dqr [T, d]; krT, vT, dkT, dvT [d, Tp]; per query head qr [T, d], qT, dyT [d, Tp], stats [3 T]; S, DP [T, 16]
  const int64_t per_head = sat_add(prod(T, d), sat_add(prod(2, d, Tp), prod(3, T)));
  float* buf = static_cast<float*>(t_attn.get(static_cast<size_t>(prod(4, sat_add(sat_add(prod(3, T, d), prod(4, d, Tp)), sat_add(prod(r, per_head), prod(32, T)))))));
  if (buf == nullptr) {
    c->failed.store(true);
    return;
  }
  float* kr = buf;
  float* vb = kr + T * d;
  float* dqr = vb + T * d;
  float* krT = dqr + T * d;
  float* vT = krT + d * Tp;
  float* dkT = vT + d * Tp;
  float* dvT = dkT + d * Tp;
  float* heads = dvT + d * Tp;
  float* S = heads + r * per_head;
  float* DP = S + 16 * T;
  int64_t g0, g1;
  split(c->B * Hkv, chunk, nchunks, &g0, &g1);
  for (int64_t g = g0; g < g1; g++) {
    const int64_t b = g / Hkv, hk = g % Hkv;
    rope_rows_f32(c->k + b * T * skv + hk * d, skv, c->cos, c->sin, kr, d, T, d, 0);
    const float* vsrc = c->v + b * T * skv + hk * d;
    for (int64_t t = 0; t < T; t++) memcpy(vb + t * d, vsrc + t * skv, sizeof(float) * static_cast<size_t>(d));
    for (int64_t i = 0; i < r; i++) {
      const int64_t h = hk * r + i;
      float* qr = heads + i * per_head;
      float* qT = qr + T * d;
      float* dyT = qT + d * Tp;
      float* stats = dyT + d * Tp;
      rope_rows_f32(c->q + b * T * sq + h * d, sq, c->cos, c->sin, qr, d, T, d, 0);
      transpose_pad(qr, d, T, Tp, d, qT);
      if (!grad) {
        attn16_fwd_f32(qT, Tp, kr, vb, T, d, c->scale, c->y + b * T * sq + h * d, sq, S);
        continue;
      }
      transpose_pad(c->dy + b * T * sq + h * d, sq, T, Tp, d, dyT);
      attn16_bwd_q_f32(qT, dyT, Tp, kr, vb, T, d, c->scale, dqr, stats, S, DP);
      rope_rows_f32(dqr, d, c->cos, c->sin, c->dq + b * T * sq + h * d, sq, T, d, 1);
    }
    if (!grad) continue;
    transpose_pad(kr, d, T, Tp, d, krT);
    transpose_pad(vb, d, T, Tp, d, vT);
    memset(dkT, 0, sizeof(float) * static_cast<size_t>(2 * d * Tp));  // dkT and dvT
    for (int64_t i = 0; i < r; i++) {
      const float* qr = heads + i * per_head;
      const float* stats = qr + T * d + 2 * d * Tp;
      attn16_bwd_kv_f32(qr, c->dy + b * T * sq + (hk * r + i) * d, sq, krT, vT, Tp, T, d, c->scale, stats, dkT, dvT);
    }
    for (int64_t t = 0; t < T; t++)
      for (int64_t i = 0; i < d; i++) dqr[t * d + i] = dkT[i * Tp + t];  // dkr [T, d] (dqr's buffer is free again)
    rope_rows_f32(dqr, d, c->cos, c->sin, c->dk + b * T * skv + hk * d, skv, T, d, 1);
    float* dvb = c->dv + b * T * skv + hk * d;
    for (int64_t t = 0; t < T; t++)
      for (int64_t i = 0; i < d; i++) dvb[t * skv + i] = dvT[i * Tp + t];
  }
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
  parallel(std::min<int64_t>(groups, g_pool->size() * 4), c->d <= kAttn16MaxD ? attn16_task : attn_task, c);
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
  for (int64_t j = 0; j < D; j++) {  // feature-major: the head / offset division once per feature, not per token
    const int64_t f = r * D + j, h = f / x.d, i = f % x.d;
    const float* src = x.x + (b * x.H + h) * T * x.d + i;
    for (int64_t t = 0; t < T; t++) a[t * D + j] = src[t * x.d];
  }
}

// Cosine relations: a's rows L2-normalised in place (norms into n, the eps test into big, for the backward).
void rel_normalize(float* a, int64_t T, int64_t D, float* n, float* big) {
  for (int64_t t = 0; t < T; t++) {
    float ss = 0.0f;
    for (int64_t j = 0; j < D; j++) ss += a[t * D + j] * a[t * D + j];
    const float e2 = 1e-12f * 1e-12f;
    n[t] = sqrtf(ss > e2 ? ss : e2);
    big[t] = ss >= e2 ? 1.0f : 0.0f;
    for (int64_t j = 0; j < D; j++) a[t * D + j] = a[t * D + j] / n[t];
  }
}

// Scores [T, T] of a [T, D]: cosine normalises a's rows in place first (norms into n, the eps test into big).
void rel_scores(float* a, int64_t T, int64_t D, bool cosine, float* n, float* big, float* s) {
  if (cosine) rel_normalize(a, T, D, n, big);
  gemm_local(a, D, 1, a, 1, D, s, T, T, T, D);
  if (!cosine) {
    const float sd = sqrtf(static_cast<float>(D));
    for (int64_t i = 0; i < T * T; i++) s[i] = s[i] / sd;
  }
}

// d an (dan [T, Ds]) through the cosine normalisation (or the 1 / sqrt(D) scale) into the student's gradient rows.
void rel_scatter_grad(RelCtx* c, int64_t b, int64_t r, int64_t T, int64_t Ds, const float* as, const float* ns, const float* bs, float* dan) {
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
  }
  for (int64_t j = 0; j < Ds; j++) {  // feature-major, as rel_gather
    const int64_t f = r * Ds + j, h = f / c->s.d, i = f % c->s.d;
    float* dst = c->dx + (b * c->s.H + h) * T * c->s.d + i;
    for (int64_t t = 0; t < T; t++) dst[t * c->s.d] = dan[t * Ds + j];
  }
}

// Relation heads up to this wide take the lane-group form (tensor_ops rel16_*), wider ones the GEMM per head.
constexpr int64_t kRel16MaxD = 16;

void rel_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<RelCtx*>(p);
  const int64_t T = c->T, R = c->R;
  const int64_t Dt = c->t.H * c->t.d / R, Ds = c->s.H * c->s.d / R;
  const bool lanes = Dt <= kRel16MaxD && Ds <= kRel16MaxD;
  const int64_t Tp = (T + 15) & ~int64_t{15};
  // at, as, dan, the norms and the GEMM form's five [T, T] blocks; the lane form adds atT, asT [D, Tp], G [T, Tp]
  // and the rows' scratch [4 T 16].
  const int64_t lane_extra = sat_add(sat_add(prod(Dt, Tp), prod(Ds, Tp)), sat_add(prod(T, Tp), prod(64, T)));
  float* buf = static_cast<float*>(t_rel.get(static_cast<size_t>(
      prod(4, sat_add(sat_add(sat_add(prod(5, T, T), prod(T, sat_add(Dt, prod(2, Ds)))), prod(4, T)), lanes ? lane_extra : 0)))));
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
  float* atT = g + T * T;
  float* asT = atT + Dt * Tp;
  float* G = asT + Ds * Tp;
  float* rowbuf = G + T * Tp;
  for (int64_t u = u0; u < u1; u++) {
    const int64_t b = u / R, r = u % R;
    rel_gather(c->t, b, r, T, Dt, at);
    if (lanes) {
      rel_gather(c->s, b, r, T, Ds, as);
      if (c->cosine) {
        rel_normalize(at, T, Dt, nt, bt);
        rel_normalize(as, T, Ds, ns, bs);
      }
      transpose_pad(at, Dt, T, Tp, Dt, atT);
      transpose_pad(as, Ds, T, Tp, Ds, asT);
      double kl = 0.0;
      rel16_rows_f32(at, atT, Dt, as, asT, Ds, T, Tp, c->cosine, c->inv, rowbuf, G, c->dx == nullptr ? nullptr : dan, &kl);
      c->kl[u] = kl;
      if (c->dx == nullptr) continue;
      rel16_cols_f32(as, G, Ds, T, Tp, dan);
      rel_scatter_grad(c, b, r, T, Ds, as, ns, bs, dan);
      continue;
    }
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
    rel_scatter_grad(c, b, r, T, Ds, as, ns, bs, dan);
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

// ---------------------------------------------------------------------------------------------------------
// The fused head loss of packages/losses (fusedHeadLoss): answer CE and logit KD of a block of r rows of logits
// over the vocabulary, with the gradient with respect to the student's logits, in one pass per row. Rows go to
// the pool; per-row sums are added in row order (deterministic for any thread count).

struct HeadCtx {
  const float *zs, *zt;
  const int32_t* labels;
  const float *ce_mask, *kd_mask;
  float ce_grad, kd_grad, tau;
  float* g;
  int64_t r, V;
  double *ce, *kl;
  std::atomic<bool> failed{false};
};

thread_local Scratch t_head;

void head_task(void* p, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<HeadCtx*>(p);
  const int64_t V = c->V;
  float* e = static_cast<float*>(t_head.get(static_cast<size_t>(prod(12, V))));
  if (e == nullptr) {
    c->failed.store(true);
    return;
  }
  int64_t r0, r1;
  split(c->r, chunk, nchunks, &r0, &r1);
  for (int64_t i = r0; i < r1; i++) {
    head_loss_row_f32(c->zs + i * V, c->zt == nullptr ? nullptr : c->zt + i * V, V, c->labels == nullptr ? -1 : c->labels[i],
                      c->ce_mask == nullptr ? 0.0f : c->ce_mask[i], c->ce_grad, c->kd_mask == nullptr ? 0.0f : c->kd_mask[i], c->kd_grad, c->tau,
                      c->g == nullptr ? nullptr : c->g + i * V, e, e + V, e + 2 * V, c->ce + i, c->kl + i);
  }
}

// An optional typed argument: null / undefined leaves *data null.
template <typename T>
bool get_optional(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* len, const char* what) {
  napi_valuetype vt;
  if (napi_typeof(env, v, &vt) != napi_ok) return false;
  *data = nullptr;
  *len = 0;
  if (vt == napi_null || vt == napi_undefined) return true;
  return get_typed(env, v, want, data, len, what);
}

// headLossF32(zs [r, V], zt [r, V] | null, r, V, labels int32 [r] | null, ceMask [r] | null, kdMask [r] | null,
//             ceGrad, kdGrad, tau, g [r, V] | null, sums float64 [2]): sums = [sum of the CE rows (mask-weighted),
//             sum of the KL rows (mask-weighted)]; g = the gradient of ceGrad * CE + kdGrad * KD rows (see
//             tensor_ops.h head_loss_row_f32).
napi_value HeadLossF32(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  if (!get_args(env, info, 12, argv)) return nullptr;
  HeadCtx c{};
  float* zs;
  float *zt, *ce_mask, *kd_mask, *g;
  int32_t* labels;
  double* sums;
  size_t zl, ztl, ll, cl, kl, gl, sl;
  double ce_grad, kd_grad, tau;
  if (!get_typed(env, argv[0], napi_float32_array, &zs, &zl, "zs") || !get_optional(env, argv[1], napi_float32_array, &zt, &ztl, "zt") ||
      !get_i64(env, argv[2], 1, kMaxDim, &c.r, "r") || !get_i64(env, argv[3], 1, kMaxDim, &c.V, "V") ||
      !get_optional(env, argv[4], napi_int32_array, &labels, &ll, "labels") || !get_optional(env, argv[5], napi_float32_array, &ce_mask, &cl, "ceMask") ||
      !get_optional(env, argv[6], napi_float32_array, &kd_mask, &kl, "kdMask") || !get_f64(env, argv[7], &ce_grad) || !get_f64(env, argv[8], &kd_grad) ||
      !get_f64(env, argv[9], &tau) || !get_optional(env, argv[10], napi_float32_array, &g, &gl, "g") ||
      !get_typed(env, argv[11], napi_float64_array, &sums, &sl, "sums"))
    return nullptr;
  const int64_t n = prod(c.r, c.V);
  if (throw_if(env, static_cast<int64_t>(zl) != n || (zt != nullptr && static_cast<int64_t>(ztl) != n) || (g != nullptr && static_cast<int64_t>(gl) != n) ||
                        (labels != nullptr && static_cast<int64_t>(ll) != c.r) || (ce_mask != nullptr && static_cast<int64_t>(cl) != c.r) ||
                        (kd_mask != nullptr && static_cast<int64_t>(kl) != c.r) || sl < 2 || !(tau > 0.0),
               "headLossF32: shapes do not match (zs, zt, g [r, V]; labels, ceMask, kdMask [r]; sums [2]; tau > 0)"))
    return nullptr;
  if (labels != nullptr) {
    for (int64_t i = 0; i < c.r; i++) {
      if (throw_if(env, ce_mask != nullptr && ce_mask[i] != 0.0f && (labels[i] < 0 || labels[i] >= c.V), "headLossF32: a label of a counted row is outside [0, V)"))
        return nullptr;
    }
  }
  c.zs = zs;
  c.zt = zt;
  c.labels = labels;
  c.ce_mask = ce_mask;
  c.kd_mask = kd_mask;
  c.ce_grad = static_cast<float>(ce_grad);
  c.kd_grad = static_cast<float>(kd_grad);
  c.tau = static_cast<float>(tau);
  c.g = g;
  std::vector<double> ce(static_cast<size_t>(c.r), 0.0), klv(static_cast<size_t>(c.r), 0.0);
  c.ce = ce.data();
  c.kl = klv.data();
  parallel(std::min<int64_t>(c.r, g_pool->size() * 4), head_task, &c);
  if (c.failed.load()) {
    napi_throw_error(env, "E_MEMORY", "headLossF32: out of memory for the per-thread scratch");
    return nullptr;
  }
  double a = 0.0, b = 0.0;
  for (int64_t i = 0; i < c.r; i++) {
    a += ce[static_cast<size_t>(i)];
    b += klv[static_cast<size_t>(i)];
  }
  sums[0] = a;
  sums[1] = b;
  return nullptr;
}

}  // namespace

void swiglu_pool(const float* g, const float* u, float* y, int64_t n) {
  SwigluCtx c{};
  c.g = g;
  c.u = u;
  c.y = y;
  c.n = n;
  parallel(swiglu_chunks(n), swiglu_task, &c);
}

void register_fused(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"bitLinearF32", nullptr, BitLinearF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"bitLinearGradF32", nullptr, BitLinearGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"normBitLinearF32", nullptr, NormBitLinearF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"normBitLinearGradF32", nullptr, NormBitLinearGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gradMatmulF32", nullptr, GradMatmulF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"ropeHeadsF32", nullptr, RopeHeadsF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"ternaryStatsF32", nullptr, TernaryStatsF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setBitLinearGradPrecision", nullptr, SetBitLinearGradPrecision, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"swigluF32", nullptr, SwigluF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionTrainF32", nullptr, AttentionTrainF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionTrainGradF32", nullptr, AttentionTrainGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"relationKdF32", nullptr, RelationKdF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"headLossF32", nullptr, HeadLossF32, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace bd
