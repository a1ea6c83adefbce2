// Ternary and int8 products of the inference runtime: the repack of HF BitNet packing into t4x256 (kernels.h),
// the ternary product driver (ternary_napi.h), activation quantization, the int8 x int8 row product of the int8
// embedding / lm_head and its weight quantizer, and their Node-API functions repackTernary, ternaryMatMul,
// quantizeActivations, matvecI8F32 and quantizeRowsI8.
#include <node_api.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "isa.h"
#include "kernels.h"
#include "napi_util.h"
#include "tensor_ops.h"
#include "ternary_napi.h"

namespace bd {
namespace {

thread_local Scratch t_xbuf, t_xvbuf;

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

void ternary_task(void* p, int64_t chunk, int64_t n) {
  auto* c = static_cast<TernaryCtx*>(p);
  int64_t b, e;
  split(c->tiles, chunk, n, &b, &e);
  if (b < e) c->isa->ternary(c->job, b, e);
}

}  // namespace

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

namespace {

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

}  // namespace

void register_ternary(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"repackTernary", nullptr, RepackTernary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"ternaryMatMul", nullptr, TernaryMatMul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quantizeActivations", nullptr, QuantizeActivations, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matvecI8F32", nullptr, MatvecI8F32, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quantizeRowsI8", nullptr, QuantizeRowsI8, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace bd
