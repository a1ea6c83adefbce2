// One decoder layer of the packed-ternary runtime in one call (packages/runtime/src/runtime.ts run(), which keeps
// its op-by-op path as the fallback and the twin): input RMSNorm, int8 activation quantization, the ternary q/k/v
// products (stacked or per projection, with SubLN and bias where the export has them), q/k-norm, RoPE, K/V into
// the cache (float32 or binary16), causal attention over it, o_proj, residual, post-attention RMSNorm, gate/up,
// SwiGLU, down_proj, residual. Node-API functions decodeLayerInit (a handle holding the layer's weights, made at
// load time) and decodeLayer; argmaxF32, the next token of greedy decoding.
//
// Why: a generated token of a 28-layer model made ~280 N-API calls and as many pool dispatches, with the small
// elementwise steps in JavaScript between them. Here the products and the attention still run on the pool
// through the same drivers as the op-by-op calls (ternary_product, attention_pool, swiglu_pool), and the small
// steps run on the calling thread.
//
// Numerics: the outputs equal the op-by-op path's bit for bit. RMSNorm and RoPE repeat the TypeScript of
// src/ops.ts in double with the same operation order (sum of squares in double, x * inv * gain, a * cos - b * sin)
// and one rounding to float32 at the same points; residual and bias adds are float32 adds, as Float32Array
// stores of a double sum of two floats are. fp-contract is off so that no multiply-add is fused where JavaScript
// rounds twice. The RoPE tables come from the caller (ropeTables, whose Math.pow / Math.cos this file does not
// try to reproduce).
#include <math.h>
#include <node_api.h>
#include <string.h>

#include <algorithm>

#include "isa.h"
#include "kernels.h"
#include "napi_util.h"
#include "pool_ops.h"
#include "tensor_ops.h"
#include "ternary_napi.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace bd {
namespace {

enum Proj : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kProjCount };

// A ternary projection y [T, rows] = x [T, cols] W^T: t4x256 weights, its scale, optional bias [rows] and SubLN
// gain [cols] (RMSNorm of its input with the SubLN epsilon first).
struct Linear {
  const uint8_t* w;
  int64_t rows, cols;
  double scale;
  const float* bias;
  const float* subln;
};

// Projections stacked by rows (q/k/v, gate/up): one product over the stack, each segment with its own scale.
struct Stack {
  const uint8_t* w;  // null: not stacked
  int64_t rows, cols;
  int nseg;
  double scale[3];
  int64_t end[3];
};

struct Layer {
  int64_t C, H, Hkv, d, I;
  double eps, subln_eps;
  float attn_scale;
  const float *in_norm, *post_norm, *q_norm, *k_norm;
  Linear p[kProjCount];
  Stack qkv, gate_up;
};

thread_local Scratch t_decode;

// LlamaRMSNorm of `rows` rows of [rows, dim] as src/ops.ts rmsNorm computes it: y may be x. Each row's sum of
// squares is one double chain in index order (as in JavaScript); up to 8 rows advance side by side so that the
// chains overlap (q/k-norm: 16 + 8 rows of 128).
void rmsnorm_rows_f64(const float* x, const float* g, float* y, int64_t rows, int64_t dim, double eps) {
  constexpr int64_t kRows = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int64_t nr = std::min(kRows, rows - r0);
    double ss[kRows] = {};
    const float* xr = x + r0 * dim;
    if (nr == kRows) {
      for (int64_t i = 0; i < dim; i++)
        for (int64_t r = 0; r < kRows; r++) {
          const double v = xr[r * dim + i];
          ss[r] += v * v;
        }
    } else {
      for (int64_t r = 0; r < nr; r++)
        for (int64_t i = 0; i < dim; i++) {
          const double v = xr[r * dim + i];
          ss[r] += v * v;
        }
    }
    for (int64_t r = 0; r < nr; r++) {
      const double inv = 1.0 / sqrt(ss[r] / static_cast<double>(dim) + eps);
      const float* xi = xr + r * dim;
      float* yr = y + (r0 + r) * dim;
      for (int64_t i = 0; i < dim; i++) yr[i] = static_cast<float>(static_cast<double>(xi[i]) * inv * static_cast<double>(g[i]));
    }
  }
}

// RoPE (rotate_half) in place on x [T, heads, d] with tables cos, sin [T, d], as src/ops.ts applyRope.
void rope_rows(float* x, int64_t T, int64_t heads, int64_t d, const float* cos, const float* sin) {
  const int64_t half = d / 2;
  for (int64_t t = 0; t < T; t++) {
    const float* c = cos + t * d;
    const float* s = sin + t * d;
    for (int64_t h = 0; h < heads; h++) {
      float* o = x + (t * heads + h) * d;
      for (int64_t i = 0; i < half; i++) {
        const double a = o[i], b = o[i + half];
        o[i] = static_cast<float>(a * static_cast<double>(c[i]) - b * static_cast<double>(s[i]));
        o[i + half] = static_cast<float>(b * static_cast<double>(c[i + half]) + a * static_cast<double>(s[i + half]));
      }
    }
  }
}

// Scratch of one call, carved from one per-thread buffer (64-byte aligned pieces).
struct Buffers {
  float *h, *sub, *y, *q, *k, *v, *att, *o, *gate, *up, *act, *xs;
  int8_t* xq;
  double* factor;
};

bool buffers(const Layer& L, int64_t T, Buffers* b) {
  const int64_t qd = L.H * L.d, kvd = L.Hkv * L.d;
  const int64_t wide = std::max<int64_t>(std::max<int64_t>(qd, L.C), L.I);  // widest projection input
  const int64_t stack = std::max<int64_t>(qd + 2 * kvd, 2 * L.I);
  const int64_t sizes[] = {T * L.C, T * wide, T * stack, T * qd, T * kvd, T * kvd, T * qd, T * L.C, T * L.I, T * L.I, T * L.I, T};
  size_t total = 0;
  auto round = [](size_t n) { return (n + 63) & ~size_t{63}; };
  for (int64_t n : sizes) total += round(sizeof(float) * static_cast<size_t>(n));
  total += round(static_cast<size_t>(T * wide)) + round(sizeof(double) * static_cast<size_t>(3 * T));
  uint8_t* p = static_cast<uint8_t*>(t_decode.get(total));
  if (p == nullptr) return false;
  float** fs[] = {&b->h, &b->sub, &b->y, &b->q, &b->k, &b->v, &b->att, &b->o, &b->gate, &b->up, &b->act, &b->xs};
  for (int i = 0; i < 12; i++) {
    *fs[i] = reinterpret_cast<float*>(p);
    p += round(sizeof(float) * static_cast<size_t>(sizes[i]));
  }
  b->xq = reinterpret_cast<int8_t*>(p);
  p += round(static_cast<size_t>(T * wide));
  b->factor = reinterpret_cast<double*>(p);
  return true;
}

// Ternary product of quantized rows xq [T, cols] (scales xs) into y [T, rows] with segments' scales, as
// ternaryMatMul does with float32Factor: y = f32(acc * f32(scale / xs)).
bool product(const uint8_t* w, int64_t rows, int64_t cols, int nseg, const double* scale, const int64_t* end, const int8_t* xq, const float* xs,
             int64_t T, double* factor, float* y) {
  for (int s = 0; s < nseg; s++)
    for (int64_t b = 0; b < T; b++) factor[s * T + b] = static_cast<double>(static_cast<float>(scale[s] / static_cast<double>(xs[b])));
  TernaryCtx ctx{};
  ctx.isa = g_isa;
  ctx.job.nblk = (cols + kBlockCols - 1) / kBlockCols;
  ctx.tiles = (rows + kTileRows - 1) / kTileRows;
  ctx.job.w = w;
  ctx.job.rows = rows;
  ctx.job.yf = y;
  ctx.job.factor = factor;
  ctx.job.seg_end = end;
  return ternary_product(&ctx, xq, cols, T);
}

void quantize_rows(const float* x, int64_t T, int64_t dim, int8_t* q, float* s) {
  for (int64_t t = 0; t < T; t++) s[t] = g_isa->quantize(x + t * dim, dim, q + t * dim);
}

// y [T, rows] = the projection of x [T, cols]: SubLN, quantization, product, bias (runtime.ts linear()).
bool linear(const Layer& L, const Linear& p, const float* x, int64_t T, Buffers& b, float* y) {
  const float* in = x;
  if (p.subln != nullptr) {
    rmsnorm_rows_f64(x, p.subln, b.sub, T, p.cols, L.subln_eps);
    in = b.sub;
  }
  quantize_rows(in, T, p.cols, b.xq, b.xs);
  const int64_t end = p.rows;
  if (!product(p.w, p.rows, p.cols, 1, &p.scale, &end, b.xq, b.xs, T, b.factor, y)) return false;
  if (p.bias != nullptr)
    for (int64_t t = 0; t < T; t++)
      for (int64_t o = 0; o < p.rows; o++) y[t * p.rows + o] += p.bias[o];
  return true;
}

// The parts of a stacked product of x [T, C] into outs[i] [T, rows_i].
bool stacked(const Stack& s, const float* x, int64_t T, Buffers& b, float* const* outs) {
  quantize_rows(x, T, s.cols, b.xq, b.xs);
  if (!product(s.w, s.rows, s.cols, s.nseg, s.scale, s.end, b.xq, b.xs, T, b.factor, b.y)) return false;
  int64_t start = 0;
  for (int i = 0; i < s.nseg; i++) {
    const int64_t n = s.end[i] - start;
    for (int64_t t = 0; t < T; t++) memcpy(outs[i] + t * n, b.y + t * s.rows + start, sizeof(float) * static_cast<size_t>(n));
    start = s.end[i];
  }
  return true;
}

template <typename KV>
void store_kv(const float* src, KV* dst, int64_t T, int64_t Hkv, int64_t d, int64_t cap, int64_t start);
template <>
void store_kv<float>(const float* src, float* dst, int64_t T, int64_t Hkv, int64_t d, int64_t cap, int64_t start) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t g = 0; g < Hkv; g++) memcpy(dst + (g * cap + start + t) * d, src + (t * Hkv + g) * d, sizeof(float) * static_cast<size_t>(d));
}
template <>
void store_kv<uint16_t>(const float* src, uint16_t* dst, int64_t T, int64_t Hkv, int64_t d, int64_t cap, int64_t start) {
  kv_store_f16(src, dst, T, Hkv, d, cap, start);
}

// The layer on x [T, C] in place (runtime.ts run(), one iteration of its layer loop).
template <typename KV>
bool layer_forward(const Layer& L, float* x, int64_t T, KV* kc, KV* vc, int64_t cap, int64_t start, const float* cos, const float* sin) {
  Buffers b;
  if (!buffers(L, T, &b)) return false;
  const int64_t C = L.C, n = T * C;
  rmsnorm_rows_f64(x, L.in_norm, b.h, T, C, L.eps);
  if (L.qkv.w != nullptr) {
    float* outs[] = {b.q, b.k, b.v};
    if (!stacked(L.qkv, b.h, T, b, outs)) return false;
  } else if (!linear(L, L.p[kQ], b.h, T, b, b.q) || !linear(L, L.p[kK], b.h, T, b, b.k) || !linear(L, L.p[kV], b.h, T, b, b.v)) {
    return false;
  }
  if (L.q_norm != nullptr) {
    rmsnorm_rows_f64(b.q, L.q_norm, b.q, T * L.H, L.d, L.eps);
    rmsnorm_rows_f64(b.k, L.k_norm, b.k, T * L.Hkv, L.d, L.eps);
  }
  rope_rows(b.q, T, L.H, L.d, cos, sin);
  rope_rows(b.k, T, L.Hkv, L.d, cos, sin);
  store_kv<KV>(b.k, kc, T, L.Hkv, L.d, cap, start);
  store_kv<KV>(b.v, vc, T, L.Hkv, L.d, cap, start);
  const AttentionShape a{T, L.H, L.Hkv, L.d, cap, start, L.attn_scale};
  attention_pool(a, b.q, kc, vc, b.att);
  if (!linear(L, L.p[kO], b.att, T, b, b.o)) return false;
  for (int64_t i = 0; i < n; i++) x[i] += b.o[i];
  rmsnorm_rows_f64(x, L.post_norm, b.h, T, C, L.eps);
  if (L.gate_up.w != nullptr) {
    float* outs[] = {b.gate, b.up};
    if (!stacked(L.gate_up, b.h, T, b, outs)) return false;
  } else if (!linear(L, L.p[kGate], b.h, T, b, b.gate) || !linear(L, L.p[kUp], b.h, T, b, b.up)) {
    return false;
  }
  swiglu_pool(b.gate, b.up, b.act, T * L.I);
  if (!linear(L, L.p[kDown], b.act, T, b, b.o)) return false;
  for (int64_t i = 0; i < n; i++) x[i] += b.o[i];
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Node-API

// Element i of a JS array: a typed array of the given type (its data and length), or null / undefined (*data =
// nullptr) when `optional`.
template <typename T>
bool element(napi_env env, napi_value arr, uint32_t i, napi_typedarray_type type, bool optional, T** data, size_t* len, const char* what) {
  napi_value v;
  napi_valuetype vt;
  if (napi_get_element(env, arr, i, &v) != napi_ok || napi_typeof(env, v, &vt) != napi_ok) return false;
  if (optional && (vt == napi_null || vt == napi_undefined)) {
    *data = nullptr;
    *len = 0;
    return true;
  }
  return get_typed(env, v, type, data, len, what);
}

int64_t layout_bytes(int64_t rows, int64_t cols) { return prod((rows + kTileRows - 1) / kTileRows, (cols + kBlockCols - 1) / kBlockCols, kTileBlockBytes); }

void finalize_layer(napi_env, void* data, void*) { delete static_cast<Layer*>(data); }

// decodeLayerInit(dims: Float64Array [C, H, Hkv, d, I, eps, sublnEps, attnScale], norms: [inputNorm, postNorm,
//   qNorm | null, kNorm | null], proj: 7 x [w: Uint8Array (t4x256), bias | null, subln | null] in the order q, k, v,
//   o, gate, up, down, scales: Float64Array [7], stacks: [qkv, gateUp], each null or [w: Uint8Array, ends:
//   Int32Array, scales: Float64Array]) -> an external handle. The caller keeps the arrays alive as long as the
//   handle (the handle holds their data pointers).
napi_value DecodeLayerInit(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return nullptr;
  double* dims;
  double* scales;
  size_t dl, sl;
  if (!get_typed(env, argv[0], napi_float64_array, &dims, &dl, "dims") || !get_typed(env, argv[3], napi_float64_array, &scales, &sl, "scales")) return nullptr;
  if (throw_if(env, dl != 8 || sl != kProjCount, "decodeLayerInit: dims must have 8 values, scales 7")) return nullptr;
  Layer L{};
  for (int i = 0; i < 5; i++)
    if (throw_if(env, !(dims[i] >= 1 && dims[i] <= (1 << 20) && dims[i] == floor(dims[i])), "decodeLayerInit: dims must be integers in 1 .. 2^20")) return nullptr;
  L.C = static_cast<int64_t>(dims[0]);
  L.H = static_cast<int64_t>(dims[1]);
  L.Hkv = static_cast<int64_t>(dims[2]);
  L.d = static_cast<int64_t>(dims[3]);
  L.I = static_cast<int64_t>(dims[4]);
  L.eps = dims[5];
  L.subln_eps = dims[6];
  L.attn_scale = static_cast<float>(dims[7]);
  if (throw_if(env, L.H % L.Hkv != 0 || L.d % 2 != 0, "decodeLayerInit: heads must be a multiple of kvHeads, headDim even") ||
      throw_if(env, !(L.eps > 0) || !(L.subln_eps > 0), "decodeLayerInit: epsilons must be > 0"))
    return nullptr;
  const int64_t qd = L.H * L.d, kvd = L.Hkv * L.d;
  const int64_t shape[kProjCount][2] = {{qd, L.C}, {kvd, L.C}, {kvd, L.C}, {L.C, qd}, {L.I, L.C}, {L.I, L.C}, {L.C, L.I}};
  size_t len;
  float* g[4];
  const int64_t norm_len[4] = {L.C, L.C, L.d, L.d};
  for (uint32_t i = 0; i < 4; i++) {
    if (!element(env, argv[1], i, napi_float32_array, i >= 2, &g[i], &len, "norm")) return nullptr;
    if (throw_if(env, g[i] != nullptr && static_cast<int64_t>(len) != norm_len[i], "decodeLayerInit: a norm gain has the wrong length")) return nullptr;
  }
  if (throw_if(env, (g[2] == nullptr) != (g[3] == nullptr), "decodeLayerInit: q_norm and k_norm come together")) return nullptr;
  L.in_norm = g[0];
  L.post_norm = g[1];
  L.q_norm = g[2];
  L.k_norm = g[3];
  for (uint32_t i = 0; i < kProjCount; i++) {
    napi_value pa;
    if (napi_get_element(env, argv[2], i, &pa) != napi_ok) return nullptr;
    Linear& p = L.p[i];
    p.rows = shape[i][0];
    p.cols = shape[i][1];
    p.scale = scales[i];
    uint8_t* w;
    float *bias, *sub;
    size_t wl, bl, gl;
    if (!element(env, pa, 0, napi_uint8_array, false, &w, &wl, "w") || !element(env, pa, 1, napi_float32_array, true, &bias, &bl, "bias") ||
        !element(env, pa, 2, napi_float32_array, true, &sub, &gl, "subln"))
      return nullptr;
    if (throw_if(env, static_cast<int64_t>(wl) < layout_bytes(p.rows, p.cols), "decodeLayerInit: projection weights too small") ||
        throw_if(env, bias != nullptr && static_cast<int64_t>(bl) != p.rows, "decodeLayerInit: a bias is not [rows]") ||
        throw_if(env, sub != nullptr && static_cast<int64_t>(gl) != p.cols, "decodeLayerInit: a SubLN gain is not [cols]") ||
        throw_if(env, !isfinite(p.scale), "decodeLayerInit: a weight scale is not finite"))
      return nullptr;
    p.w = w;
    p.bias = bias;
    p.subln = sub;
  }
  Stack* st[2] = {&L.qkv, &L.gate_up};
  const int parts[2][3] = {{kQ, kK, kV}, {kGate, kUp, -1}};
  for (uint32_t s = 0; s < 2; s++) {
    napi_value sa;
    napi_valuetype vt;
    if (napi_get_element(env, argv[4], s, &sa) != napi_ok || napi_typeof(env, sa, &vt) != napi_ok) return nullptr;
    if (vt == napi_null || vt == napi_undefined) continue;
    uint8_t* w;
    int32_t* ends;
    double* ss;
    size_t wl, el, scl;
    if (!element(env, sa, 0, napi_uint8_array, false, &w, &wl, "stack w") || !element(env, sa, 1, napi_int32_array, false, &ends, &el, "stack ends") ||
        !element(env, sa, 2, napi_float64_array, false, &ss, &scl, "stack scales"))
      return nullptr;
    Stack& k = *st[s];
    k.nseg = s == 0 ? 3 : 2;
    k.cols = L.C;
    bool ok = static_cast<int>(el) == k.nseg && static_cast<int>(scl) == k.nseg;
    int64_t end = 0;
    for (int i = 0; ok && i < k.nseg; i++) {
      const Linear& p = L.p[parts[s][i]];
      end += p.rows;
      // The parts are the stack's row segments: no bias, no SubLN of their own, whole tiles, same scale.
      ok = ends[i] == end && ss[i] == p.scale && p.bias == nullptr && p.subln == nullptr && p.rows % kTileRows == 0;
      k.end[i] = end;
      k.scale[i] = ss[i];
    }
    k.rows = end;
    if (throw_if(env, !ok, "decodeLayerInit: a stack does not match its parts") ||
        throw_if(env, static_cast<int64_t>(wl) < layout_bytes(k.rows, k.cols), "decodeLayerInit: stack weights too small"))
      return nullptr;
    k.w = w;
  }
  Layer* heap = new Layer(L);
  napi_value out;
  if (napi_create_external(env, heap, finalize_layer, nullptr, &out) != napi_ok) {
    delete heap;
    return nullptr;
  }
  return out;
}

// decodeLayer(handle, x: Float32Array [T, C] (in place), T, kc, vc: the layer's cache [Hkv, cap, d] (Float32Array,
//             or Uint16Array for binary16), cap, start, cos, sin: Float32Array [T, d] (positions start ..))
napi_value DecodeLayer(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv)) return nullptr;
  void* hp;
  if (napi_get_value_external(env, argv[0], &hp) != napi_ok || hp == nullptr) {
    napi_throw_type_error(env, "E_ARGUMENT", "decodeLayer: not a handle from decodeLayerInit");
    return nullptr;
  }
  const Layer& L = *static_cast<const Layer*>(hp);
  float *x, *cos, *sin;
  size_t xl, cl, sl, kl, vl;
  int64_t T, cap, start;
  napi_typedarray_type kt, vt;
  void *kc, *vc;
  napi_value ab;
  size_t off;
  bool is_k = false, is_v = false;
  if (!get_typed(env, argv[1], napi_float32_array, &x, &xl, "x") || !get_i64(env, argv[2], 1, 1 << 20, &T, "T") ||
      !get_i64(env, argv[5], 1, kMaxDim, &cap, "cap") || !get_i64(env, argv[6], 0, kMaxDim, &start, "start") ||
      !get_typed(env, argv[7], napi_float32_array, &cos, &cl, "cos") || !get_typed(env, argv[8], napi_float32_array, &sin, &sl, "sin"))
    return nullptr;
  if (napi_is_typedarray(env, argv[3], &is_k) != napi_ok || napi_is_typedarray(env, argv[4], &is_v) != napi_ok || !is_k || !is_v ||
      napi_get_typedarray_info(env, argv[3], &kt, &kl, &kc, &ab, &off) != napi_ok || napi_get_typedarray_info(env, argv[4], &vt, &vl, &vc, &ab, &off) != napi_ok ||
      kt != vt || (kt != napi_float32_array && kt != napi_uint16_array)) {
    napi_throw_type_error(env, "E_ARGUMENT", "decodeLayer: kc and vc must both be Float32Array or both Uint16Array");
    return nullptr;
  }
  const int64_t cache = prod(L.Hkv, cap, L.d);
  if (throw_if(env, static_cast<int64_t>(xl) != prod(T, L.C), "decodeLayer: x is not [T, hidden]") ||
      throw_if(env, static_cast<int64_t>(kl) < cache || static_cast<int64_t>(vl) < cache, "decodeLayer: cache too small") ||
      throw_if(env, sat_add(start, T) > cap, "decodeLayer: start + T exceeds the cache") ||
      throw_if(env, static_cast<int64_t>(cl) < prod(T, L.d) || static_cast<int64_t>(sl) < prod(T, L.d), "decodeLayer: RoPE tables too small"))
    return nullptr;
  const bool ok = kt == napi_float32_array
                      ? layer_forward<float>(L, x, T, static_cast<float*>(kc), static_cast<float*>(vc), cap, start, cos, sin)
                      : layer_forward<uint16_t>(L, x, T, static_cast<uint16_t*>(kc), static_cast<uint16_t*>(vc), cap, start, cos, sin);
  if (!ok) napi_throw_error(env, "E_MEMORY", "decodeLayer: out of memory for the activations");
  return nullptr;
}

// argmaxF32(x: Float32Array) -> the first index of its largest value (greedy decoding's next token).
napi_value ArgmaxF32(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return nullptr;
  float* x;
  size_t n;
  if (!get_typed(env, argv[0], napi_float32_array, &x, &n, "x")) return nullptr;
  return make_number(env, static_cast<double>(argmax_f32(x, static_cast<int64_t>(n))));
}

}  // namespace

void register_decode(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"decodeLayerInit", nullptr, DecodeLayerInit, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"decodeLayer", nullptr, DecodeLayer, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"argmaxF32", nullptr, ArgmaxF32, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace bd
