// Tensor ops (tensor_ops.h) on the pool: the elementwise, broadcast, compare, reduction, cast, strided-copy and
// gather kernels behind tfjs's wasm kernels, RMSNorm and its gradient, the AdamW update, the KV-cache attention
// of the inference runtime, and their Node-API functions binaryF32, compare, unaryF32, castToF32, reduceF32,
// copyStrided32, gatherRows32, rmsNormF32, rmsNormGradF32, adamwF32, attentionF32 and attentionKvF16.
#include <node_api.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "isa.h"
#include "kernels.h"
#include "napi_util.h"
#include "norm_napi.h"
#include "pool_ops.h"
#include "tensor_ops.h"

namespace bd {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Tensor ops (tensor_ops.h): elementwise, broadcast, reduction and copy kernels behind tfjs's wasm kernels.

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

// Fixed blocks, so the partials and their in-order sum do not depend on the thread count.
constexpr int64_t kSqBlock = int64_t{1} << 16;

struct SqSumCtx {
  const float* x;
  int64_t n;
  double* parts;  // one per block
};

void sq_sum_task(void* q, int64_t chunk, int64_t nchunks) {
  auto* c = static_cast<SqSumCtx*>(q);
  const int64_t blocks = (c->n + kSqBlock - 1) / kSqBlock;
  int64_t b, e;
  split(blocks, chunk, nchunks, &b, &e);
  for (int64_t i = b; i < e; i++) c->parts[i] = sq_sum_f64(c->x + i * kSqBlock, std::min(kSqBlock, c->n - i * kSqBlock));
}

thread_local std::vector<double> t_sq_parts;

// sumSquaresF32(x): the sum of x[i]^2 in double (partials over fixed 64K blocks, added in order), as a number.
napi_value SumSquaresF32(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return nullptr;
  float* x;
  size_t xl;
  if (!get_typed(env, argv[0], napi_float32_array, &x, &xl, "x")) return nullptr;
  const int64_t n = static_cast<int64_t>(xl);
  const int64_t blocks = (n + kSqBlock - 1) / kSqBlock;
  double total = 0.0;
  if (blocks <= 1) {
    total = sq_sum_f64(x, n);
  } else {
    t_sq_parts.assign(static_cast<size_t>(blocks), 0.0);
    SqSumCtx ctx{x, n, t_sq_parts.data()};
    parallel(std::min<int64_t>(blocks, elem_chunks(n, blocks)), sq_sum_task, &ctx);
    for (double p : t_sq_parts) total += p;
  }
  napi_value out;
  napi_create_double(env, total, &out);
  return out;
}

// unaryF32(op, x, y, lo, hi): y = op(x) elementwise; lo, hi bound kClip.
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

}  // namespace

void rmsnorm_rows(const float* x, const float* g, float* y, int64_t rows, int64_t dim, float eps) {
  RmsNormCtx ctx{};
  ctx.x = x;
  ctx.g = g;
  ctx.y = y;
  ctx.rows = rows;
  ctx.dim = dim;
  ctx.eps = eps;
  parallel(elem_chunks(rows * dim, rows), rmsnorm_task, &ctx);
}

void rmsnorm_grad_rows(const float* dy, const float* x, const float* g, float* dx, float* dg, int64_t rows, int64_t dim, float eps) {
  RmsNormCtx ctx{};
  ctx.x = x;
  ctx.g = g;
  ctx.dy = dy;
  ctx.dx = dx;
  ctx.rows = rows;
  ctx.dim = dim;
  ctx.eps = eps;
  const int64_t nchunks = elem_chunks(rows * dim, std::min<int64_t>(rows, g_pool->size()));
  std::vector<float> partial(static_cast<size_t>(nchunks * dim));
  ctx.dg = partial.data();
  parallel(nchunks, rmsnorm_task, &ctx);
  for (int64_t i = 0; i < dim; i++) {
    float s = 0.0f;
    for (int64_t ch = 0; ch < nchunks; ch++) s += partial[static_cast<size_t>(ch * dim + i)];
    dg[i] = s;
  }
}

namespace {

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
  rmsnorm_rows(ctx.x, ctx.g, ctx.y, ctx.rows, ctx.dim, ctx.eps);
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
  rmsnorm_grad_rows(dy, ctx.x, ctx.g, ctx.dx, dg, ctx.rows, ctx.dim, ctx.eps);
  return nullptr;
}

// The shape arguments of attentionF32 / attentionKvF16 from argv[i0 ..]: T, H, Hkv, d, cap, start, scale; checked.
bool attention_shape(napi_env env, napi_value* argv, const char* what, AttentionShape* a) {
  double scale;
  if (!get_i64(env, argv[0], 1, kMaxDim, &a->T, "T") || !get_i64(env, argv[1], 1, 1 << 16, &a->H, "H") ||
      !get_i64(env, argv[2], 1, 1 << 16, &a->Hkv, "Hkv") || !get_i64(env, argv[3], 1, 1 << 16, &a->d, "d") ||
      !get_i64(env, argv[4], 1, kMaxDim, &a->cap, "cap") || !get_i64(env, argv[5], 0, kMaxDim, &a->start, "start") || !get_f64(env, argv[6], &scale))
    return false;
  a->scale = static_cast<float>(scale);
  const std::string w(what);
  return !throw_if(env, a->H % a->Hkv != 0, (w + ": H must be a multiple of Hkv").c_str()) &&
         !throw_if(env, a->start + a->T > a->cap, (w + ": start + T exceeds the cache").c_str());
}

// The thread split of an attention call: one chunk below kMinParallelWeights of work, else (token, KV head)
// units over the pool.
int64_t attention_chunks(const AttentionShape& a) {
  const int64_t units = a.T * a.Hkv;
  const int64_t work = prod(a.T * a.H, a.start + a.T, a.d, 2);
  return work < kMinParallelWeights || g_pool->size() == 1 ? 1 : std::min<int64_t>(units, g_pool->size() * kChunksPerThread);
}

// The attention of a call over either cache type: attention_f32 / attention_f16kv per chunk of (token, KV head) units.
inline void attention_rows_of(const float* q, const float* kc, const float* vc, float* out, const AttentionShape& a, float* scores,
                              int64_t p0, int64_t p1) {
  attention_f32(q, kc, vc, out, a.H, a.Hkv, a.d, a.cap, a.start, a.scale, scores, p0, p1);
}
inline void attention_rows_of(const float* q, const uint16_t* kc, const uint16_t* vc, float* out, const AttentionShape& a, float* scores,
                              int64_t p0, int64_t p1) {
  attention_f16kv(q, kc, vc, out, a.H, a.Hkv, a.d, a.cap, a.start, a.scale, scores, p0, p1);
}

template <typename KV>
struct AttentionCtx {
  const float* q;
  const KV *kc, *vc;
  float* out;
  float* scores;  // [nchunks, 2 * (start + T)]
  AttentionShape a;
};

template <typename KV>
void attention_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<AttentionCtx<KV>*>(p);
  int64_t b, e;
  split(c->a.T * c->a.Hkv, chunk, n, &b, &e);
  if (b < e) attention_rows_of(c->q, c->kc, c->vc, c->out, c->a, c->scores + chunk * 2 * (c->a.start + c->a.T), b, e);
}

// Runs the attention on the pool: one chunk below kMinParallelWeights of work, else (token, KV head) units.
template <typename KV>
void run_attention(const AttentionShape& a, const float* q, const KV* kc, const KV* vc, float* out) {
  const int64_t nchunks = attention_chunks(a);
  std::vector<float> scores(static_cast<size_t>(nchunks * 2 * (a.start + a.T)));
  AttentionCtx<KV> ctx{q, kc, vc, out, scores.data(), a};
  parallel(nchunks, attention_task<KV>, &ctx);
}

// attentionF32(q: [T, H, d], kc: [Hkv, cap, d], vc: [Hkv, cap, d], out: [T, H, d], T, H, Hkv, d, cap, start, scale)
napi_value AttentionF32(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  if (!get_args(env, info, 11, argv)) return nullptr;
  float *q, *kc, *vc, *out;
  size_t ql, kl, vl, ol;
  AttentionShape a{};
  if (!get_typed(env, argv[0], napi_float32_array, &q, &ql, "q") || !get_typed(env, argv[1], napi_float32_array, &kc, &kl, "kc") ||
      !get_typed(env, argv[2], napi_float32_array, &vc, &vl, "vc") || !get_typed(env, argv[3], napi_float32_array, &out, &ol, "out") ||
      !attention_shape(env, argv + 4, "attentionF32", &a))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(ql) < prod(a.T, a.H, a.d) || static_cast<int64_t>(ol) < prod(a.T, a.H, a.d) ||
                        static_cast<int64_t>(kl) < prod(a.Hkv, a.cap, a.d) || static_cast<int64_t>(vl) < prod(a.Hkv, a.cap, a.d),
               "attentionF32: array too small"))
    return nullptr;
  run_attention(a, q, kc, vc, out);
  return nullptr;
}

// attentionKvF16(q: [T, H, d], k: [T, Hkv, d], v: [T, Hkv, d], kc: u16 [Hkv, cap, d], vc: u16 [Hkv, cap, d], out: [T, H, d],
//                T, H, Hkv, d, cap, start, scale): k and v rounded to binary16 into the cache at start .., then the
// causal attention of the T new positions over cache rows 0 .. start+t (attention_f16kv).
napi_value AttentionKvF16(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  if (!get_args(env, info, 13, argv)) return nullptr;
  float *q, *k, *v, *out;
  uint16_t *kc, *vc;
  size_t ql, kl, vl, kcl, vcl, ol;
  AttentionShape a{};
  if (!get_typed(env, argv[0], napi_float32_array, &q, &ql, "q") || !get_typed(env, argv[1], napi_float32_array, &k, &kl, "k") ||
      !get_typed(env, argv[2], napi_float32_array, &v, &vl, "v") || !get_typed(env, argv[3], napi_uint16_array, &kc, &kcl, "kc") ||
      !get_typed(env, argv[4], napi_uint16_array, &vc, &vcl, "vc") || !get_typed(env, argv[5], napi_float32_array, &out, &ol, "out") ||
      !attention_shape(env, argv + 6, "attentionKvF16", &a))
    return nullptr;
  if (throw_if(env, static_cast<int64_t>(ql) < prod(a.T, a.H, a.d) || static_cast<int64_t>(ol) < prod(a.T, a.H, a.d) ||
                        static_cast<int64_t>(kl) < prod(a.T, a.Hkv, a.d) || static_cast<int64_t>(vl) < prod(a.T, a.Hkv, a.d) ||
                        static_cast<int64_t>(kcl) < prod(a.Hkv, a.cap, a.d) || static_cast<int64_t>(vcl) < prod(a.Hkv, a.cap, a.d),
               "attentionKvF16: array too small"))
    return nullptr;
  kv_store_f16(k, kc, a.T, a.Hkv, a.d, a.cap, a.start);
  kv_store_f16(v, vc, a.T, a.Hkv, a.d, a.cap, a.start);
  run_attention<uint16_t>(a, q, kc, vc, out);
  return nullptr;
}

}  // namespace

void attention_pool(const AttentionShape& a, const float* q, const float* kc, const float* vc, float* out) { run_attention(a, q, kc, vc, out); }
void attention_pool(const AttentionShape& a, const float* q, const uint16_t* kc, const uint16_t* vc, float* out) {
  run_attention<uint16_t>(a, q, kc, vc, out);
}

void register_tensor_ops(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"binaryF32", nullptr, BinaryF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"compare", nullptr, Compare, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unaryF32", nullptr, UnaryF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"castToF32", nullptr, CastToF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reduceF32", nullptr, ReduceF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"copyStrided32", nullptr, CopyStrided32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gatherRows32", nullptr, GatherRows32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"rmsNormF32", nullptr, RmsNormF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"rmsNormGradF32", nullptr, RmsNormGradF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adamwF32", nullptr, AdamwF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sumSquaresF32", nullptr, SumSquaresF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionF32", nullptr, AttentionF32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionKvF16", nullptr, AttentionKvF16, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace bd
