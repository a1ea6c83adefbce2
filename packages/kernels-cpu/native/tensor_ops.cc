// Loops of tensor_ops.h. Each entry point is compiled three times by `target_clones` (x86-64-v4 = AVX-512,
// x86-64-v3 = AVX2 + FMA, baseline) and the loader resolves the best one once. Loop bodies are macros or
// always_inline helpers so that they are compiled inside each clone (an out-of-line helper would be compiled
// for the baseline only). No -ffast-math: every float operation rounds as written.
#include "tensor_ops.h"

#include <math.h>
#include <string.h>

#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define BD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BD_CLONES
#endif
#define BD_INLINE static inline __attribute__((always_inline))

namespace bd {
namespace {

// 16 floats as one vector (GCC vector extensions: one zmm in the x86-64-v4 clone, two ymm in v3, SSE in the
// baseline), and its halves.
// (always inlined, so the -Wpsabi note on passing them by value does not apply.)
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));
typedef float V4 __attribute__((vector_size(16)));

// out = the 16 lanes of acc (a float[16] or V16) folded in the tree order every 16-lane loop here uses:
// lane u with lane u + 8, then + 4, + 2, + 1, by `combine` (an expression of s, the lower lane, and v, the
// upper). In vector registers: the plain loop over a float[16] had the compiler spill the vector and reload it a
// lane at a time, a failed store-to-load forward per lane (a [1024, 64] RMSNorm gradient ran at ~6 cycles an
// element, the fused BitLinear backward at k = 64 spent a fifth of its time there).
#define BD_FOLD16(acc, out, combine)                                                                          \
  {                                                                                                           \
    V16 a16_;                                                                                                 \
    std::memcpy(&a16_, (acc), sizeof(a16_));                                                                  \
    V8 h8_;                                                                                                   \
    {                                                                                                         \
      const V8 s = __builtin_shufflevector(a16_, a16_, 0, 1, 2, 3, 4, 5, 6, 7);                                \
      const V8 v = __builtin_shufflevector(a16_, a16_, 8, 9, 10, 11, 12, 13, 14, 15);                          \
      h8_ = (combine);                                                                                        \
    }                                                                                                         \
    V4 h4_;                                                                                                   \
    {                                                                                                         \
      const V4 s = __builtin_shufflevector(h8_, h8_, 0, 1, 2, 3);                                              \
      const V4 v = __builtin_shufflevector(h8_, h8_, 4, 5, 6, 7);                                              \
      h4_ = (combine);                                                                                        \
    }                                                                                                         \
    float h2a_, h2b_;                                                                                         \
    {                                                                                                         \
      const float s = h4_[0], v = h4_[2];                                                                     \
      h2a_ = (combine);                                                                                       \
    }                                                                                                         \
    {                                                                                                         \
      const float s = h4_[1], v = h4_[3];                                                                     \
      h2b_ = (combine);                                                                                       \
    }                                                                                                         \
    {                                                                                                         \
      const float s = h2a_, v = h2b_;                                                                         \
      out = (combine);                                                                                        \
    }                                                                                                         \
  }

BD_INLINE float bits_to_float(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, 4);
  return f;
}

// exp(x) for float32, about 1 ulp (Cephes expf): n = round(x / ln 2), r = x - n ln 2 in two parts, a degree-6
// polynomial for exp(r), then 2^n as two exponent-field factors so that results down to the subnormals round
// once. Branch-free so the loop vectorises; round-to-nearest via the 1.5 * 2^23 trick (no rint call).
BD_INLINE float exp_f32(float x) {
  const float x1 = x > -104.0f ? x : -104.0f;  // NaN -> -104 here (the result is replaced below)
  const float xc = x1 < 89.0f ? x1 : 89.0f;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float n = (xc * 1.44269504088896341f + magic) - magic;
  float r = n * -0.693359375f + xc;
  r = n * 2.12194440e-4f + r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni / 2;
  const int32_t n2 = ni - n1;
  const float s1 = bits_to_float(static_cast<int32_t>(static_cast<uint32_t>(n1 + 127) << 23));
  const float s2 = bits_to_float(static_cast<int32_t>(static_cast<uint32_t>(n2 + 127) << 23));
  const float y = p * s1 * s2;
  return x != x ? x : y;  // NaN stays NaN
}

// Round half to even for every float: below 2^23 adding and removing 2^23 rounds in the FPU's default mode
// (to nearest, ties to even); at or above 2^23 every float is an integer already.
BD_INLINE float round_even_f32(float x) {
  const float a = fabsf(x);
  const float r = (a + 8388608.0f) - 8388608.0f;
  return a < 8388608.0f ? copysignf(r, x) : x;
}

}  // namespace

BD_CLONES void unary_f32(int op, const float* __restrict x, float* __restrict y, int64_t n, float lo, float hi) {
#define BD_UNARY(expr)                   \
  for (int64_t i = 0; i < n; i++) {      \
    const float v = x[i];                \
    y[i] = (expr);                       \
  }                                      \
  break;
  switch (op) {
    case kExp: BD_UNARY(exp_f32(v))
    case kLog: BD_UNARY(logf(v))
    case kNeg: BD_UNARY(-v)
    case kAbs: BD_UNARY(fabsf(v))
    case kSqrt: BD_UNARY(sqrtf(v))
    case kRsqrt: BD_UNARY(1.0f / sqrtf(v))
    case kSquare: BD_UNARY(v * v)
    // e = exp(-|v|) never overflows: 1 / (1 + e) for v >= 0, e / (1 + e) below (keeps tiny results).
    case kSigmoid: BD_UNARY(v >= 0.0f ? 1.0f / (1.0f + exp_f32(-v)) : exp_f32(v) / (1.0f + exp_f32(v)))
    case kRound: BD_UNARY(round_even_f32(v))
    case kClip: BD_UNARY(v < lo ? lo : (v > hi ? hi : v))
    case kReciprocal: BD_UNARY(1.0f / v)
    default: break;
  }
#undef BD_UNARY
}

// One row of a broadcast binary op: the four stride cases get their own loops so that each vectorises.
#define BD_ROW(T, OUT, expr)                                                     \
  if (sa == 1 && sb == 1) {                                                      \
    for (int64_t i = 0; i < n; i++) {                                            \
      const T va = a[i], vb = b[i];                                              \
      y[i] = static_cast<OUT>(expr);                                             \
    }                                                                            \
  } else if (sa == 1) {                                                          \
    const T vb = b[0];                                                           \
    for (int64_t i = 0; i < n; i++) {                                            \
      const T va = a[i];                                                         \
      y[i] = static_cast<OUT>(expr);                                             \
    }                                                                            \
  } else if (sb == 1) {                                                          \
    const T va = a[0];                                                           \
    for (int64_t i = 0; i < n; i++) {                                            \
      const T vb = b[i];                                                         \
      y[i] = static_cast<OUT>(expr);                                             \
    }                                                                            \
  } else {                                                                       \
    const T va = a[0], vb = b[0];                                                \
    const OUT v = static_cast<OUT>(expr);                                        \
    for (int64_t i = 0; i < n; i++) y[i] = v;                                    \
  }                                                                              \
  break;

BD_CLONES void binary_f32(int op, const float* __restrict a, int64_t sa, const float* __restrict b, int64_t sb, float* __restrict y, int64_t n) {
  switch (op) {
    case kAdd: BD_ROW(float, float, va + vb)
    case kSub: BD_ROW(float, float, va - vb)
    case kMul: BD_ROW(float, float, va * vb)
    case kDiv: BD_ROW(float, float, va / vb)
    case kMax: BD_ROW(float, float, va > vb ? va : vb)
    case kMin: BD_ROW(float, float, va < vb ? va : vb)
    default: break;
  }
}

BD_CLONES void compare_f32(int op, const float* __restrict a, int64_t sa, const float* __restrict b, int64_t sb, uint8_t* __restrict y, int64_t n) {
  switch (op) {
    case kEq: BD_ROW(float, uint8_t, va == vb)
    case kNe: BD_ROW(float, uint8_t, va != vb)
    case kLt: BD_ROW(float, uint8_t, va < vb)
    case kLe: BD_ROW(float, uint8_t, va <= vb)
    case kGt: BD_ROW(float, uint8_t, va > vb)
    case kGe: BD_ROW(float, uint8_t, va >= vb)
    default: break;
  }
}

BD_CLONES void compare_i32(int op, const int32_t* __restrict a, int64_t sa, const int32_t* __restrict b, int64_t sb, uint8_t* __restrict y, int64_t n) {
  switch (op) {
    case kEq: BD_ROW(int32_t, uint8_t, va == vb)
    case kNe: BD_ROW(int32_t, uint8_t, va != vb)
    case kLt: BD_ROW(int32_t, uint8_t, va < vb)
    case kLe: BD_ROW(int32_t, uint8_t, va <= vb)
    case kGt: BD_ROW(int32_t, uint8_t, va > vb)
    case kGe: BD_ROW(int32_t, uint8_t, va >= vb)
    default: break;
  }
}
#undef BD_ROW

namespace {

// Reduction of one contiguous row with 16 independent partial results (vectorisable without reassociating
// a single chain: the lanes are separate variables), combined pairwise at the end.
#define BD_REDUCE_ROW(init, combine)                                   \
  {                                                                    \
    float acc[16];                                                     \
    for (int u = 0; u < 16; u++) acc[u] = (init);                      \
    int64_t j = 0;                                                     \
    for (; j + 16 <= r; j += 16) {                                     \
      for (int u = 0; u < 16; u++) {                                   \
        const float s = acc[u], v = row[j + u];                        \
        acc[u] = (combine);                                            \
      }                                                                \
    }                                                                  \
    float s0;                                                          \
    BD_FOLD16(acc, s0, combine)                                        \
    for (; j < r; j++) {                                               \
      const float s = s0, v = row[j];                                  \
      s0 = (combine);                                                  \
    }                                                                  \
    out = s0;                                                          \
  }

// Column-wise reduction: y[i] (in place) combines x rows j = 1..r-1 into the copy of row 0.
#define BD_REDUCE_COLS(combine)                                        \
  for (int64_t j = 1; j < r; j++) {                                    \
    const float* xr = x0 + j * inner;                                  \
    for (int64_t i = 0; i < w; i++) {                                  \
      const float s = yo[i], v = xr[i];                                \
      yo[i] = (combine);                                               \
    }                                                                  \
  }

}  // namespace

BD_CLONES void reduce_f32(int op, const float* __restrict x, float* __restrict y, int64_t o0, int64_t o1, int64_t r, int64_t inner, int64_t i0, int64_t i1) {
  const int rop = op == kMean ? static_cast<int>(kSum) : op;
  if (r == 0) {
    const float v = op == kRMax ? -INFINITY : (op == kRMin ? INFINITY : (op == kMean ? NAN : 0.0f));
    for (int64_t o = o0; o < o1; o++)
      for (int64_t i = i0; i < i1; i++) y[o * inner + i] = v;
    return;
  }
  if (inner == 1) {
    for (int64_t o = o0; o < o1; o++) {
      const float* row = x + o * r;
      float out = 0.0f;
      switch (rop) {
        case kSum: BD_REDUCE_ROW(0.0f, s + v) break;
        case kRMax: BD_REDUCE_ROW(-INFINITY, v > s ? v : s) break;
        case kRMin: BD_REDUCE_ROW(INFINITY, v < s ? v : s) break;
        default: break;
      }
      y[o] = op == kMean ? out / static_cast<float>(r) : out;
    }
    return;
  }
  // Column tiles of at most 1024 values keep the partial results in L1 while the rows stream past.
  for (int64_t o = o0; o < o1; o++) {
    for (int64_t t = i0; t < i1; t += 1024) {
      const int64_t w = (i1 - t) < 1024 ? (i1 - t) : 1024;
      const float* x0 = x + o * r * inner + t;
      float* yo = y + o * inner + t;
      memcpy(yo, x0, sizeof(float) * static_cast<size_t>(w));
      switch (rop) {
        case kSum: BD_REDUCE_COLS(s + v) break;
        case kRMax: BD_REDUCE_COLS(v > s ? v : s) break;
        case kRMin: BD_REDUCE_COLS(v < s ? v : s) break;
        default: break;
      }
      if (op == kMean) {
        const float rf = static_cast<float>(r);
        for (int64_t i = 0; i < w; i++) yo[i] = yo[i] / rf;
      }
    }
  }
}
#undef BD_REDUCE_ROW
#undef BD_REDUCE_COLS

BD_CLONES void cast_u8_f32(const uint8_t* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = static_cast<float>(x[i]);
}

BD_CLONES void cast_i32_f32(const int32_t* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = static_cast<float>(x[i]);
}

BD_CLONES void copy_block_u32(const uint32_t* src, int64_t sr, int64_t sc, uint32_t* dst, int64_t dr, int64_t dc, int64_t rows, int64_t cols) {
  if (sc == 1 && dc == 1) {
    for (int64_t r = 0; r < rows; r++) memcpy(dst + r * dr, src + r * sr, sizeof(uint32_t) * static_cast<size_t>(cols));
    return;
  }
  if (sc == 0 && dc == 1) {  // a broadcast along the row (tile / broadcastTo)
    for (int64_t r = 0; r < rows; r++) {
      const uint32_t v = src[r * sr];
      uint32_t* d = dst + r * dr;
      for (int64_t c = 0; c < cols; c++) d[c] = v;
    }
    return;
  }
  if (sr == 1 && dc == 1) {
    // A transpose: 16 x 16 tiles, so the 16 source lines a tile reads stay in L1 while it is written.
    constexpr int64_t kT = 16;
    for (int64_t r0 = 0; r0 < rows; r0 += kT) {
      const int64_t r1 = r0 + kT < rows ? r0 + kT : rows;
      for (int64_t c0 = 0; c0 < cols; c0 += kT) {
        const int64_t c1 = c0 + kT < cols ? c0 + kT : cols;
        for (int64_t r = r0; r < r1; r++) {
          uint32_t* d = dst + r * dr;
          for (int64_t c = c0; c < c1; c++) d[c] = src[r + c * sc];
        }
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[r * dr + c * dc] = src[r * sr + c * sc];
}

namespace {

// sum(x[i] * y[i]) over n floats with 16 partial sums (vectorisable, one fixed order per n).
// Sum and max of n floats in 16 lanes (vectorises without reassociation flags).
BD_INLINE float sum16(const float* __restrict x, int64_t n) {
  float acc[16];
  for (int u = 0; u < 16; u++) acc[u] = 0.0f;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; u++) acc[u] += x[j + u];
  float total;
  BD_FOLD16(acc, total, s + v)
  for (; j < n; j++) total += x[j];
  return total;
}

BD_INLINE float max16(const float* __restrict x, int64_t n) {
  float acc[16];
  for (int u = 0; u < 16; u++) acc[u] = -INFINITY;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; u++) acc[u] = x[j + u] > acc[u] ? x[j + u] : acc[u];
  float m;
  BD_FOLD16(acc, m, v > s ? v : s)
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

// 16 floats loaded from float32 or widened from binary16 exactly.
typedef uint16_t U16x16 __attribute__((vector_size(32)));
typedef uint32_t U32x16 __attribute__((vector_size(64)));
typedef int32_t I32x16 __attribute__((vector_size(64)));
BD_INLINE V16 load16(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
// binary16 -> float32 exactly in integer lanes (the compiler's _Float16 conversion is a library call per value in
// some clones): normal numbers re-biased (exponent + 112), infinities and NaNs get the all-ones exponent, zeros
// and subnormals are their integer mantissa times 2^-24.
BD_INLINE V16 load16(const uint16_t* p) {
  U16x16 h;
  std::memcpy(&h, p, sizeof(h));
  const U32x16 u = __builtin_convertvector(h, U32x16);
  const U32x16 em = u & 0x7fffu;
  const U32x16 normal = (em << 13) + (112u << 23);
  const U32x16 special = (em << 13) | (255u << 23);
  const V16 tiny = __builtin_convertvector((I32x16)em, V16) * 5.9604644775390625e-8f;  // 2^-24
  const U32x16 is_tiny = (U32x16)(em < 0x400u);
  const U32x16 is_special = (U32x16)(em >= 0x7c00u);
  const U32x16 bits = (is_tiny & (U32x16)tiny) | (is_special & special) | (~(is_tiny | is_special) & normal);
  const U32x16 out = bits | ((u & 0x8000u) << 16);
  return (V16)out;
}
BD_INLINE void store16(float* p, V16 v) { std::memcpy(p, &v, sizeof(v)); }
// The lanes of a 16-lane sum folded as dot16's tree (8, 4, 2, 1).
BD_INLINE float fold16(V16 a) {
  float total;
  BD_FOLD16(&a, total, s + v)
  return total;
}

BD_INLINE float dot16(const float* __restrict x, const float* __restrict y, int64_t n) {
  V16 acc = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) acc += load16(x + j) * load16(y + j);
  float s = fold16(acc);
  for (; j < n; j++) s += x[j] * y[j];
  return s;
}

}  // namespace

BD_CLONES void matvec_i8q(const int8_t* __restrict w, const float* __restrict wscale, const int8_t* __restrict xq, const float* __restrict xs,
                          float* __restrict y, int64_t rows, int64_t cols, int64_t xstride, int64_t batch, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const int8_t* wr = w + r * cols;
    for (int64_t b = 0; b < batch; b++) {
      const int8_t* xb = xq + b * xstride;
      int32_t acc = 0;
      for (int64_t c = 0; c < cols; c++) acc += static_cast<int32_t>(wr[c]) * static_cast<int32_t>(xb[c]);
      y[b * rows + r] = static_cast<float>(static_cast<double>(acc) * (static_cast<double>(wscale[r]) / static_cast<double>(xs[b])));
    }
  }
}

BD_CLONES int64_t quantize_rows_i8(const float* __restrict w, int8_t* __restrict q, float* __restrict scale, int64_t cols, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const float* wr = w + r * cols;
    int8_t* qr = q + r * cols;
    float m = 0.0f;
    int bad = 0;
    for (int64_t i = 0; i < cols; i++) {
      const float a = fabsf(wr[i]);
      m = a > m ? a : m;
      bad |= !(a <= 3.40282347e38f);  // NaN or infinity
    }
    if (bad) return r;
    const float s = m / 127.0f;
    scale[r] = s;
    if (s == 0.0f) {
      for (int64_t i = 0; i < cols; i++) qr[i] = 0;
      continue;
    }
    const float inv = 1.0f / s;
    for (int64_t i = 0; i < cols; i++) {
      const float v = round_even_f32(wr[i] * inv);
      qr[i] = static_cast<int8_t>(v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v));
    }
  }
  return -1;
}

// Binary16 <-> float32 through the compiler's _Float16 (vcvtph2ps / vcvtps2ph in the x86-64-v3 and v4 clones,
// libgcc's exact software conversion in the baseline one).
BD_INLINE float widen(float v) { return v; }
BD_INLINE float widen(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

// dot16 with y widened to float32 per element (exact), the same lanes and order.
template <typename Y>
BD_INLINE float dot16_w(const float* __restrict x, const Y* __restrict y, int64_t n) {
  float acc[16];
  for (int u = 0; u < 16; u++) acc[u] = 0.0f;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; u++) acc[u] += x[j + u] * widen(y[j + u]);
  float total;
  BD_FOLD16(acc, total, s + v)
  for (; j < n; j++) total += x[j] * widen(y[j]);
  return total;
}

// x0 . y and x1 . y for d a multiple of 16, each in 16 lanes folded as dot16: y is read once for both.
template <typename Y>
BD_INLINE void dot2_v16(const float* __restrict x0, const float* __restrict x1, const Y* __restrict y, int64_t n, float* r0, float* r1) {
  V16 a = {}, b = {};
  for (int64_t j = 0; j < n; j += 16) {
    const V16 v = load16(y + j);
    a += load16(x0 + j) * v;
    b += load16(x1 + j) * v;
  }
  *r0 = fold16(a);
  *r1 = fold16(b);
}

// Softmax of n scores in place, returning nothing: max-subtracted exp (vectorised: no running sum in the exp
// loop), the sum in 16 lanes, then p = e * (1 / z).
BD_INLINE void softmax_row(float* __restrict s, int64_t n) {
  const float m = max16(s, n);
  for (int64_t j = 0; j < n; j++) s[j] = exp_f32(s[j] - m);
  const float inv = 1.0f / sum16(s, n);
  for (int64_t j = 0; j < n; j++) s[j] = s[j] * inv;
}

// One code for the float32 and the binary16 cache: each K / V value is widened exactly, then the same arithmetic
// (the two instantiations may still be contracted into FMAs differently by the compiler). A work unit is one
// (token, KV head) with its H / Hkv query heads, taken two at a time so that each K and V row is read once for
// both (the cache is mostly read from DRAM: the weights streamed between two tokens evict it).
template <typename KV>
BD_INLINE void attention_rows(const float* __restrict q, const KV* __restrict kc, const KV* __restrict vc, float* __restrict out, int64_t H,
                              int64_t Hkv, int64_t d, int64_t cap, int64_t start, float scale, float* __restrict scores, int64_t u0, int64_t u1) {
  const int64_t group = H / Hkv;
  for (int64_t u = u0; u < u1; u++) {
    const int64_t t = u / Hkv;
    const int64_t g = u - t * Hkv;
    const int64_t n = start + t + 1;
    const KV* kg = kc + g * cap * d;
    const KV* vg = vc + g * cap * d;
    for (int64_t h0 = 0; h0 < group; h0 += 2) {
      const bool two = h0 + 1 < group;
      const float* q0 = q + (t * H + g * group + h0) * d;
      const float* q1 = two ? q0 + d : q0;
      float* s0 = scores;
      float* s1 = scores + n;
      if (two && d % 16 == 0) {
        for (int64_t j = 0; j < n; j++) {
          float a, b;
          // The V rows are read next: ask for them now, so both streams are in flight (no arithmetic changes).
          for (int64_t i = 0; i < d * static_cast<int64_t>(sizeof(KV)); i += 64) __builtin_prefetch(reinterpret_cast<const char*>(vg + j * d) + i, 0, 3);
          dot2_v16(q0, q1, kg + j * d, d, &a, &b);
          s0[j] = a * scale;
          s1[j] = b * scale;
        }
        softmax_row(s1, n);
      } else if (two) {
        for (int64_t j = 0; j < n; j++) {
          s0[j] = dot16_w(q0, kg + j * d, d) * scale;
          s1[j] = dot16_w(q1, kg + j * d, d) * scale;
        }
        softmax_row(s1, n);
      } else {
        for (int64_t j = 0; j < n; j++) s0[j] = dot16_w(q0, kg + j * d, d) * scale;
      }
      softmax_row(s0, n);
      float* o0 = out + (t * H + g * group + h0) * d;
      float* o1 = o0 + d;
      for (int64_t i = 0; i < d; i++) o0[i] = 0.0f;
      if (two && d % 16 == 0) {
        // The output rows in 16-lane blocks, each block accumulated over every V row in registers.
        for (int64_t i = 0; i < d; i += 16) {
          V16 a = {}, b = {};
          for (int64_t j = 0; j < n; j++) {
            const V16 v = load16(vg + j * d + i);
            a += s0[j] * v;
            b += s1[j] * v;
          }
          store16(o0 + i, a);
          store16(o1 + i, b);
        }
      } else if (two) {
        for (int64_t i = 0; i < d; i++) o1[i] = 0.0f;
        for (int64_t j = 0; j < n; j++) {
          const float p0 = s0[j], p1 = s1[j];
          const KV* vr = vg + j * d;
          for (int64_t i = 0; i < d; i++) {
            const float v = widen(vr[i]);
            o0[i] += p0 * v;
            o1[i] += p1 * v;
          }
        }
      } else {
        for (int64_t j = 0; j < n; j++) {
          const float p0 = s0[j];
          const KV* vr = vg + j * d;
          for (int64_t i = 0; i < d; i++) o0[i] += p0 * widen(vr[i]);
        }
      }
    }
  }
}

BD_CLONES void attention_f32(const float* __restrict q, const float* __restrict kc, const float* __restrict vc, float* __restrict out,
                             int64_t H, int64_t Hkv, int64_t d, int64_t cap, int64_t start, float scale, float* __restrict scores,
                             int64_t u0, int64_t u1) {
  attention_rows(q, kc, vc, out, H, Hkv, d, cap, start, scale, scores, u0, u1);
}

BD_CLONES void attention_f16kv(const float* __restrict q, const uint16_t* __restrict kc, const uint16_t* __restrict vc, float* __restrict out,
                               int64_t H, int64_t Hkv, int64_t d, int64_t cap, int64_t start, float scale, float* __restrict scores, int64_t u0,
                               int64_t u1) {
  attention_rows(q, kc, vc, out, H, Hkv, d, cap, start, scale, scores, u0, u1);
}

BD_CLONES int64_t argmax_f32(const float* __restrict x, int64_t n) {
  if (n <= 0 || x[0] != x[0]) return 0;
  const float m = max16(x, n);  // NaN never wins a comparison, as in the scalar loop
  for (int64_t i = 0; i < n; i++)
    if (x[i] == m) return i;
  return 0;
}

BD_CLONES void kv_store_f16(const float* __restrict src, uint16_t* __restrict dst, int64_t T, int64_t Hkv, int64_t d, int64_t cap, int64_t start) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t g = 0; g < Hkv; g++) {
      const float* s = src + (t * Hkv + g) * d;
      uint16_t* o = dst + (g * cap + start + t) * d;
      for (int64_t i = 0; i < d; i++) {
        const _Float16 v = static_cast<_Float16>(s[i]);
        std::memcpy(o + i, &v, 2);
      }
    }
}

BD_CLONES void rmsnorm_f32(const float* __restrict x, const float* __restrict g, float* __restrict y, int64_t r0, int64_t r1, int64_t dim, float eps) {
  for (int64_t r = r0; r < r1; r++) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const float ms = dot16(xr, xr, dim) / static_cast<float>(dim);
    const float inv = 1.0f / sqrtf(ms + eps);
    for (int64_t i = 0; i < dim; i++) yr[i] = xr[i] * inv * g[i];
  }
}

BD_CLONES void rmsnorm_grad_f32(const float* __restrict dy, const float* __restrict x, const float* __restrict g, float* __restrict dx,
                                float* __restrict dg, int64_t r0, int64_t r1, int64_t dim, float eps) {
  for (int64_t r = r0; r < r1; r++) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    const float ms = dot16(xr, xr, dim) / static_cast<float>(dim);
    const float inv = 1.0f / sqrtf(ms + eps);
    // s = sum(dy * g * x), written into dx first as u = dy * g (dx is this row's scratch until overwritten).
    for (int64_t i = 0; i < dim; i++) dxr[i] = dyr[i] * g[i];
    const float s = dot16(dxr, xr, dim);
    const float c = inv * inv * inv * s / static_cast<float>(dim);
    for (int64_t i = 0; i < dim; i++) {
      dg[i] += dyr[i] * xr[i] * inv;
      dxr[i] = inv * dxr[i] - c * xr[i];
    }
  }
}

BD_CLONES void adamw_f32(const float* p, const float* g, float* m, float* v, float* out, int64_t n, const AdamwParams& h) {
  for (int64_t i = 0; i < n; i++) {
    const double gi = static_cast<double>(g[i]) * h.grad_scale;
    const double mi = h.beta1 * static_cast<double>(m[i]) + (1.0 - h.beta1) * gi;
    const double vi = h.beta2 * static_cast<double>(v[i]) + (1.0 - h.beta2) * gi * gi;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    out[i] = static_cast<float>(static_cast<double>(p[i]) * h.decay - (h.lr * (mi / h.bc1)) / (std::sqrt(vi / h.bc2) + h.eps));
  }
}

BD_CLONES void int8_to_f32(const int8_t* __restrict q, float s, float* __restrict out, int64_t n) {
  if (s == 1.0f) {
    for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(q[i]);
  } else {
    for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(q[i]) / s;
  }
}

BD_CLONES void ternary_codes_i8(const float* __restrict w, float d, int8_t* __restrict codes, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float c = round_even_f32(w[i] / d);
    c = c < -1.0f ? -1.0f : (c > 1.0f ? 1.0f : c);
    codes[i] = static_cast<int8_t>(c);
  }
}

BD_CLONES double sq_sum_f64(const float* __restrict w, int64_t n) {
  // 8 double partial sums (vectorises), added in a fixed order, as abs_sum_f64.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const double x = static_cast<double>(w[i + j]);
      acc[j] += x * x;
    }
  }
  double total = 0.0;
  for (; i < n; i++) total += static_cast<double>(w[i]) * static_cast<double>(w[i]);
  for (int j = 0; j < 8; j++) total += acc[j];
  return total;
}

BD_CLONES double abs_sum_f64(const float* __restrict w, int64_t n) {
  // 8 double partial sums (vectorises), added in a fixed order.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) acc[j] += static_cast<double>(fabsf(w[i + j]));
  }
  double total = 0.0;
  for (; i < n; i++) total += static_cast<double>(fabsf(w[i]));
  for (int j = 0; j < 8; j++) total += acc[j];
  return total;
}

BD_CLONES void ternary_stats_f64(const float* __restrict w, float d, int64_t n, double* __restrict out) {
  // 8 lanes of partial sums each (vectorises), added in a fixed order; the codes as ternary_codes_i8's.
  double err[8] = {0, 0, 0, 0, 0, 0, 0, 0}, norm[8] = {0, 0, 0, 0, 0, 0, 0, 0}, near[8] = {0, 0, 0, 0, 0, 0, 0, 0}, zero[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const double dd = static_cast<double>(d);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const float x = w[i + j];
      const float r = x / d;
      const float c = r > 0.5f ? 1.0f : (r < -0.5f ? -1.0f : 0.0f);
      const double xv = static_cast<double>(x);
      const double diff = xv - static_cast<double>(c) * dd;
      err[j] += diff * diff;
      norm[j] += xv * xv;
      near[j] += fabs(fabs(xv) / dd - 0.5) < 0.05 ? 1.0 : 0.0;
      zero[j] += c == 0.0f ? 1.0 : 0.0;
    }
  }
  for (; i < n; i++) {
    const float x = w[i];
    const float r = x / d;
    const float c = r > 0.5f ? 1.0f : (r < -0.5f ? -1.0f : 0.0f);
    const double xv = static_cast<double>(x);
    const double diff = xv - static_cast<double>(c) * dd;
    err[0] += diff * diff;
    norm[0] += xv * xv;
    near[0] += fabs(fabs(xv) / dd - 0.5) < 0.05 ? 1.0 : 0.0;
    zero[0] += c == 0.0f ? 1.0 : 0.0;
  }
  for (int k = 0; k < 4; k++) out[k] = 0.0;
  for (int j = 0; j < 8; j++) {
    out[0] += err[j];
    out[1] += norm[j];
    out[2] += near[j];
    out[3] += zero[j];
  }
}

BD_CLONES void ternary_f32(const float* __restrict w, float d, float mul, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float c = round_even_f32(w[i] / d);
    c = c < -1.0f ? -1.0f : (c > 1.0f ? 1.0f : c);
    out[i] = c * mul;
  }
}

BD_INLINE float sigmoid_f32(float v) { return v >= 0.0f ? 1.0f / (1.0f + exp_f32(-v)) : exp_f32(v) / (1.0f + exp_f32(v)); }

BD_CLONES void swiglu_f32(const float* __restrict g, const float* __restrict u, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = g[i] * sigmoid_f32(g[i]) * u[i];
}

BD_CLONES void swiglu_grad_f32(const float* __restrict dy, const float* __restrict g, const float* __restrict u, float* __restrict dg,
                               float* __restrict du, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float sg = sigmoid_f32(g[i]);
    const float gs = g[i] * sg;
    du[i] = dy[i] * gs;
    dg[i] = dy[i] * u[i] * (sg + gs * (1.0f - sg));
  }
}

// D > 0: the head size as a constant, so a row's two half loops unroll (at d = 8 the runtime-length loops cost
// more in set-up than in arithmetic: RoPE was ~2.5% of a tiny-model distillation step); D = 0: any d.
template <int D>
BD_INLINE void rope_rows_body(const float* __restrict x, int64_t sx, const float* __restrict cos, const float* __restrict sin, float* __restrict y,
                              int64_t sy, int64_t T, int64_t dr, int inverse) {
  const int64_t d = D > 0 ? D : dr;
  const int64_t h = d / 2;
  for (int64_t t = 0; t < T; t++) {
    const float* xr = x + t * sx;
    const float* c = cos + t * d;
    const float* sn = sin + t * d;
    float* yr = y + t * sy;
    if (!inverse) {
      for (int64_t i = 0; i < h; i++) yr[i] = xr[i] * c[i] + (-xr[i + h]) * sn[i];
      for (int64_t i = h; i < d; i++) yr[i] = xr[i] * c[i] + xr[i - h] * sn[i];
    } else {
      for (int64_t i = 0; i < h; i++) yr[i] = xr[i] * c[i] + xr[i + h] * sn[i + h];
      for (int64_t i = h; i < d; i++) yr[i] = xr[i] * c[i] - xr[i - h] * sn[i - h];
    }
  }
}

BD_CLONES void rope_rows_f32(const float* __restrict x, int64_t sx, const float* __restrict cos, const float* __restrict sin, float* __restrict y,
                             int64_t sy, int64_t T, int64_t d, int inverse) {
  switch (d) {
    case 8:
      return rope_rows_body<8>(x, sx, cos, sin, y, sy, T, d, inverse);
    case 16:
      return rope_rows_body<16>(x, sx, cos, sin, y, sy, T, d, inverse);
    case 32:
      return rope_rows_body<32>(x, sx, cos, sin, y, sy, T, d, inverse);
    case 64:
      return rope_rows_body<64>(x, sx, cos, sin, y, sy, T, d, inverse);
    case 128:
      return rope_rows_body<128>(x, sx, cos, sin, y, sy, T, d, inverse);
    default:
      return rope_rows_body<0>(x, sx, cos, sin, y, sy, T, d, inverse);
  }
}

// Row i of a causal block keeps j < n = i + 1. The loops run over whole 16-lane groups up to nv = n rounded up
// to 16 (at most T), masking lanes j >= n, so no row ends in a scalar tail of exp calls; only a T that is not a
// multiple of 16 leaves one, in the last rows.
BD_INLINE int64_t causal_span(int64_t n, int64_t T) {
  const int64_t nv = (n + 15) & ~int64_t{15};
  return nv < T ? nv : T;
}

BD_CLONES void causal_softmax_f32(float* __restrict s, int64_t T, float scale) {
  for (int64_t i = 0; i < T; i++) {
    float* r = s + i * T;
    const int64_t n = i + 1;
    const int64_t nv = causal_span(n, T);
    float acc[16];
    for (int u = 0; u < 16; u++) acc[u] = -INFINITY;
    int64_t j = 0;
    for (; j + 16 <= nv; j += 16)
      for (int u = 0; u < 16; u++) {
        const float v = j + u < n ? r[j + u] * scale : -INFINITY;
        r[j + u] = v;
        acc[u] = v > acc[u] ? v : acc[u];
      }
    float m;
    BD_FOLD16(acc, m, v > s ? v : s)
    for (int64_t t = j; t < nv; t++) {
      r[t] = t < n ? r[t] * scale : -INFINITY;
      m = r[t] > m ? r[t] : m;
    }
    float sum[16];
    for (int u = 0; u < 16; u++) sum[u] = 0.0f;
    for (j = 0; j + 16 <= nv; j += 16)
      for (int u = 0; u < 16; u++) {
        const float e = j + u < n ? exp_f32(r[j + u] - m) : 0.0f;
        r[j + u] = e;
        sum[u] += e;
      }
    float z;
    BD_FOLD16(sum, z, s + v)
    for (int64_t t = j; t < nv; t++) {
      r[t] = t < n ? exp_f32(r[t] - m) : 0.0f;
      z += r[t];
    }
    const float inv = 1.0f / z;
    for (j = 0; j < nv; j++) r[j] = r[j] * inv;
    for (j = nv; j < T; j++) r[j] = 0.0f;
  }
}

BD_CLONES void causal_softmax_grad_f32(const float* __restrict p, float* __restrict dp, int64_t T, float scale) {
  for (int64_t i = 0; i < T; i++) {
    const float* pr = p + i * T;
    float* g = dp + i * T;
    const int64_t n = i + 1;
    const int64_t nv = causal_span(n, T);
    // p is 0 beyond the diagonal (causal_softmax_f32), so the dot over the padded span is the dot over j < n.
    const float dot = dot16(pr, g, n);
    for (int64_t j = 0; j < nv; j++) g[j] = j < n ? scale * (pr[j] * (g[j] - dot)) : 0.0f;
    for (int64_t j = nv; j < T; j++) g[j] = 0.0f;
  }
}

// 16-lane running sums as sum16, for the loops below that sum while they compute.
#define BD_LANES16(acc) \
  float acc[16];        \
  for (int u = 0; u < 16; u++) acc[u] = 0.0f;
BD_INLINE float lanes_total(const float* acc) {
  float total;
  BD_FOLD16(acc, total, s + v)
  return total;
}

// exp((z[j] / tau) - m) into e (tau == 1: no division), returning the 16-lane sum; m is max(z) / tau.
BD_INLINE float scaled_exp_sum(const float* __restrict z, int64_t V, float tau, float m, float* __restrict e) {
  BD_LANES16(acc)
  int64_t j = 0;
  if (tau == 1.0f) {
    for (; j + 16 <= V; j += 16)
      for (int u = 0; u < 16; u++) {
        const float x = exp_f32(z[j + u] - m);
        e[j + u] = x;
        acc[u] += x;
      }
  } else {
    for (; j + 16 <= V; j += 16)
      for (int u = 0; u < 16; u++) {
        const float x = exp_f32(z[j + u] / tau - m);
        e[j + u] = x;
        acc[u] += x;
      }
  }
  float s = lanes_total(acc);
  for (; j < V; j++) {
    e[j] = exp_f32((tau == 1.0f ? z[j] : z[j] / tau) - m);
    s += e[j];
  }
  return s;
}

BD_CLONES void head_loss_row_f32(const float* __restrict z, const float* __restrict zt, int64_t V, int32_t label, float ce_mask, float ce_grad, float kd_mask,
                                 float kd_grad, float tau, float* __restrict g, float* __restrict e, float* es, float* __restrict et, double* ce,
                                 double* kl) {
  const bool has_ce = ce_mask != 0.0f && label >= 0;
  const bool has_kd = zt != nullptr && kd_mask != 0.0f;
  const float m = max16(z, V);
  float gc = 0.0f, sum = 1.0f;
  if (has_ce) {
    sum = scaled_exp_sum(z, V, 1.0f, m, e);
    // -log softmax at the label: log(sum) - (z[y] - m)
    *ce = static_cast<double>(ce_mask) * static_cast<double>(logf(sum) - (z[label] - m));
    gc = ce_mask * ce_grad;
  }
  if (!has_kd) {
    if (g == nullptr) return;
    const float f = gc / sum;
    if (has_ce) {
      for (int64_t j = 0; j < V; j++) g[j] = e[j] * f;
      g[label] -= gc;
    } else {
      for (int64_t j = 0; j < V; j++) g[j] = 0.0f;
    }
    return;
  }
  // log softmax(z / tau) of student and teacher: b = z / tau - max, log p = b - log(sum exp b).
  const float ms = m / tau;
  const float mt = max16(zt, V) / tau;
  // tau 1 with CE: the student's exponentials are the CE's (same z, same max), so that pass is not repeated.
  const bool reuse = tau == 1.0f && has_ce;
  if (reuse) es = e;
  const float ss = reuse ? sum : scaled_exp_sum(z, V, tau, ms, es);
  const float st = scaled_exp_sum(zt, V, tau, mt, et);
  const float ls = logf(ss), lt = logf(st);
  const float is = 1.0f / ss, it = 1.0f / st;
  const float gk = kd_mask * kd_grad;
  const float f = gc / sum;
  BD_LANES16(acc)
  int64_t j = 0;
  // KL(p_t || p_s) = sum p_t (log p_t - log p_s); d/dz of its tau^2-scaled mean is tau (p_s - p_t) (in kd_grad).
#define BD_HEAD_KD(J, LANE)                                                     \
  {                                                                             \
    const float bs = (tau == 1.0f ? z[J] : z[J] / tau) - ms;                    \
    const float bt = (tau == 1.0f ? zt[J] : zt[J] / tau) - mt;                  \
    const float pt = et[J] * it;                                                \
    LANE += pt * ((bt - lt) - (bs - ls));                                       \
    if (g != nullptr) g[J] = (has_ce ? e[J] * f : 0.0f) + (es[J] * is - pt) * gk; \
  }
  for (; j + 16 <= V; j += 16)
    for (int u = 0; u < 16; u++) BD_HEAD_KD(j + u, acc[u])
  float tail = 0.0f;
  for (; j < V; j++) BD_HEAD_KD(j, tail)
#undef BD_HEAD_KD
  *kl = static_cast<double>(kd_mask) * static_cast<double>(lanes_total(acc) + tail);
  if (g != nullptr && has_ce) g[label] -= gc;
}

// --- Small-head causal attention for training: 16 query rows (or 16 keys) per SIMD lane group ---
// Every loop below runs over the 16 lanes of one group (u < 16) and vectorises without a horizontal reduction:
// the forward and the query pass of the backward put 16 query rows in the lanes (row max, sum and dot are
// lane-wise), the key pass of the backward puts 16 keys in the lanes (dK, dV lane-wise). Products over the head
// dimension c run in ascending c with the same operations in both passes, so both compute the same scores.

// The lane group of the training kernels below: the 16-float vector of the decode attention above (V16).
typedef V16 v16f;
typedef I32x16 v16i;

BD_INLINE v16f splat16(float x) { return v16f{} + x; }
BD_INLINE v16f select16(v16i keep, v16f a, v16f b) { return keep ? a : b; }

// exp_f32 on 16 lanes: the same steps, lane by lane (so the same values).
BD_INLINE v16f exp16(v16f x) {
  const v16f x1 = x > -104.0f ? x : splat16(-104.0f);
  const v16f xc = x1 < 89.0f ? x1 : splat16(89.0f);
  const float magic = 12582912.0f;
  const v16f n = (xc * 1.44269504088896341f + magic) - magic;
  v16f r = n * -0.693359375f + xc;
  r = n * 2.12194440e-4f + r;
  v16f p = splat16(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const v16i ni = __builtin_convertvector(n, v16i);
  const v16i n1 = ni / 2;
  const v16i n2 = ni - n1;
  const v16f s1 = reinterpret_cast<v16f>((n1 + 127) << 23);
  const v16f s2 = reinterpret_cast<v16f>((n2 + 127) << 23);
  const v16f y = p * s1 * s2;
  return x != x ? x : y;
}

// Lanes u of row group i0 (query i0 + u) that see key j: i0 + u >= j.
BD_INLINE v16i causal16(int64_t i0, int64_t j) {
  const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return lane >= static_cast<int32_t>(j - i0);
}

// One group of query rows [i0, i0 + 16): the scaled, causally masked scores of keys j < n into S [n][16],
// their lane-wise max returned.
template <int DC>
BD_INLINE v16f attn_q_scores(const float* __restrict qT, int64_t Tp, int64_t i0, const float* __restrict kr, int64_t dr, int64_t n, float scale,
                             float* __restrict S) {
  const int64_t d = DC > 0 ? DC : dr;
  v16f m = splat16(-INFINITY);
  for (int64_t j = 0; j < n; j++) {
    v16f acc = v16f{};
    for (int64_t c = 0; c < d; c++) acc += load16(qT + c * Tp + i0) * kr[j * d + c];
    const v16f v = select16(causal16(i0, j), acc * scale, splat16(-INFINITY));
    store16(S + j * 16, v);
    m = v > m ? v : m;
  }
  return m;
}

template <int DC>
BD_INLINE void attn16_fwd_f32_body(const float* __restrict qT, int64_t Tp, const float* __restrict kr, const float* __restrict v, int64_t T, int64_t dr,
                                   float scale, float* __restrict y, int64_t sy, float* __restrict S) {
  const int64_t d = DC > 0 ? DC : dr;
  for (int64_t i0 = 0; i0 < T; i0 += 16) {
    const int64_t n = i0 + 16 < T ? i0 + 16 : T;
    const v16f m = attn_q_scores<DC>(qT, Tp, i0, kr, d, n, scale, S);
    v16f z = v16f{};
    v16f yc[16];
    for (int64_t c = 0; c < d; c++) yc[c] = v16f{};
    for (int64_t j = 0; j < n; j++) {
      const v16f e = select16(causal16(i0, j), exp16(load16(S + j * 16) - m), v16f{});
      z += e;
      for (int64_t c = 0; c < d; c++) yc[c] += e * v[j * d + c];
    }
    const v16f inv = 1.0f / z;
    float out[16 * 16];
    for (int64_t c = 0; c < d; c++) store16(out + c * 16, yc[c] * inv);
    const int64_t rows = T - i0 < 16 ? T - i0 : 16;
    for (int64_t u = 0; u < rows; u++)
      for (int64_t c = 0; c < d; c++) y[(i0 + u) * sy + c] = out[c * 16 + u];
  }
}

template <int DC>
BD_INLINE void attn16_bwd_q_f32_body(const float* __restrict qT, const float* __restrict dyT, int64_t Tp, const float* __restrict kr, const float* __restrict v,
                                     int64_t T, int64_t dr, float scale, float* __restrict dqr, float* __restrict stats, float* __restrict S, float* __restrict DP) {
  const int64_t d = DC > 0 ? DC : dr;
  for (int64_t i0 = 0; i0 < T; i0 += 16) {
    const int64_t n = i0 + 16 < T ? i0 + 16 : T;
    const v16f m = attn_q_scores<DC>(qT, Tp, i0, kr, d, n, scale, S);
    v16f z = v16f{};
    for (int64_t j = 0; j < n; j++) {
      const v16f e = select16(causal16(i0, j), exp16(load16(S + j * 16) - m), v16f{});
      store16(S + j * 16, e);
      z += e;
    }
    const v16f zi = 1.0f / z;
    // P and dP = dy v^T, and the row dots sum_j P dP.
    v16f dot = v16f{};
    for (int64_t j = 0; j < n; j++) {
      v16f acc = v16f{};
      for (int64_t c = 0; c < d; c++) acc += load16(dyT + c * Tp + i0) * v[j * d + c];
      const v16f pj = load16(S + j * 16) * zi;
      store16(S + j * 16, pj);
      store16(DP + j * 16, acc);
      dot += pj * acc;
    }
    v16f dq[16];
    for (int64_t c = 0; c < d; c++) dq[c] = v16f{};
    for (int64_t j = 0; j < n; j++) {
      const v16f ds = scale * (load16(S + j * 16) * (load16(DP + j * 16) - dot));
      for (int64_t c = 0; c < d; c++) dq[c] += ds * kr[j * d + c];
    }
    float out[16 * 16];
    for (int64_t c = 0; c < d; c++) store16(out + c * 16, dq[c]);
    float st[3 * 16];
    store16(st, m);
    store16(st + 16, zi);
    store16(st + 32, dot);
    const int64_t rows = T - i0 < 16 ? T - i0 : 16;
    for (int64_t u = 0; u < rows; u++) {
      for (int64_t c = 0; c < d; c++) dqr[(i0 + u) * d + c] = out[c * 16 + u];
      stats[i0 + u] = st[u];
      stats[T + i0 + u] = st[16 + u];
      stats[2 * T + i0 + u] = st[32 + u];
    }
  }
}

template <int DC>
BD_INLINE void attn16_bwd_kv_f32_body(const float* __restrict qr, const float* __restrict dy, int64_t sdy, const float* __restrict krT,
                                      const float* __restrict vT, int64_t Tp, int64_t T, int64_t dr, float scale, const float* __restrict stats,
                                      float* __restrict dkT, float* __restrict dvT) {
  const int64_t d = DC > 0 ? DC : dr;
  const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int64_t j0 = 0; j0 < T; j0 += 16) {
    v16f dk[16], dv[16];
    for (int64_t c = 0; c < d; c++) dk[c] = dv[c] = v16f{};
    for (int64_t i = j0; i < T; i++) {
      const float* q = qr + i * d;
      const float* g = dy + i * sdy;
      v16f s = v16f{}, dp = v16f{};
      for (int64_t c = 0; c < d; c++) {
        s += q[c] * load16(krT + c * Tp + j0);
        dp += g[c] * load16(vT + c * Tp + j0);
      }
      const float m = stats[i], zi = stats[T + i], dot = stats[2 * T + i];
      // Key j0 + u is seen by query i when j0 + u <= i. The scores are the query pass's (same products, same order).
      const v16f p = select16(lane <= static_cast<int32_t>(i - j0), exp16(s * scale - m) * zi, v16f{});
      const v16f ds = scale * (p * (dp - dot));
      for (int64_t c = 0; c < d; c++) {
        dv[c] += p * g[c];
        dk[c] += ds * q[c];
      }
    }
    for (int64_t c = 0; c < d; c++) {
      store16(dkT + c * Tp + j0, load16(dkT + c * Tp + j0) + dk[c]);
      store16(dvT + c * Tp + j0, load16(dvT + c * Tp + j0) + dv[c]);
    }
  }
}

// fn<d>(...) for the head sizes specialised at compile time (their loops over d unrolled), fn<0> otherwise.
#define BD_BY_HEAD_SIZE(fn, d, ...)    \
  switch (d) {                         \
    case 2:                            \
      return fn<2>(__VA_ARGS__);       \
    case 4:                            \
      return fn<4>(__VA_ARGS__);       \
    case 6:                            \
      return fn<6>(__VA_ARGS__);       \
    case 8:                            \
      return fn<8>(__VA_ARGS__);       \
    case 12:                           \
      return fn<12>(__VA_ARGS__);      \
    case 16:                           \
      return fn<16>(__VA_ARGS__);      \
    default:                           \
      return fn<0>(__VA_ARGS__);       \
  }

BD_CLONES void attn16_fwd_f32(const float* qT, int64_t Tp, const float* kr, const float* v, int64_t T, int64_t d, float scale, float* y, int64_t sy, float* S) {
  BD_BY_HEAD_SIZE(attn16_fwd_f32_body, d, qT, Tp, kr, v, T, d, scale, y, sy, S)
}

BD_CLONES void attn16_bwd_q_f32(const float* qT, const float* dyT, int64_t Tp, const float* kr, const float* v, int64_t T, int64_t d, float scale, float* dqr,
                                float* stats, float* S, float* DP) {
  BD_BY_HEAD_SIZE(attn16_bwd_q_f32_body, d, qT, dyT, Tp, kr, v, T, d, scale, dqr, stats, S, DP)
}

BD_CLONES void attn16_bwd_kv_f32(const float* qr, const float* dy, int64_t sdy, const float* krT, const float* vT, int64_t Tp, int64_t T, int64_t d, float scale,
                                 const float* stats, float* dkT, float* dvT) {
  BD_BY_HEAD_SIZE(attn16_bwd_kv_f32_body, d, qr, dy, sdy, krT, vT, Tp, T, d, scale, stats, dkT, dvT)
}

// --- Relation KD for small relation heads (D <= 16), 16 rows per lane group ---
// Pass 1 puts 16 relation rows i in the lanes: both relations' scores key by key, the row softmax (max, exp, sum
// lane-wise; one logf per row), the row's KL, the score gradient and the first half of d an, dS an; it stores
// dS in G [T, Tp] (row i, keys contiguous). Pass 2 puts 16 keys j in the lanes and streams the rows for the
// other half, dS^T an. Same formulas as relation_softmax_f32 / relation_kl_grad_f32.
// DC > 0: teacher and student relation heads both DC wide, known at compile time (the loops over the features
// unrolled); DC = 0 takes Dt and Ds as given. Same arithmetic in the same order either way.
template <int DC>
BD_INLINE void rel16_rows_f32_body(const float* __restrict at, const float* __restrict atT, int64_t Dtr, const float* __restrict as,
                                   const float* __restrict asT, int64_t Dsr, int64_t T, int64_t Tp, bool cosine, float inv, float* __restrict buf,
                                   float* __restrict G, float* __restrict dan, double* kl) {
  const int64_t Dt = DC > 0 ? DC : Dtr, Ds = DC > 0 ? DC : Dsr;
  float* LT = buf;  // [T][16] each: shifted scores, then clamped log-probabilities
  float* LS = LT + T * 16;
  float* ET = LS + T * 16;  // exps, then probabilities
  float* ES = ET + T * 16;
  const float log_floor = -18.420680743952367f;  // log(1e-8)
  const float sdt = sqrtf(static_cast<float>(Dt)), sds = sqrtf(static_cast<float>(Ds));
  double total = 0.0;
  for (int64_t i0 = 0; i0 < T; i0 += 16) {
    v16f mt = splat16(-INFINITY), ms = splat16(-INFINITY);
    // Four keys at a time: each score is still the same in-order sum over c, but four independent FMA chains
    // instead of one (one chain per key left the loop at the FMA latency: a quarter of the kernel's time).
    int64_t j = 0;
    for (; j + 4 <= T; j += 4) {
      v16f a[4] = {}, b[4] = {};
      for (int64_t c = 0; c < Dt; c++) {
        const v16f r = load16(atT + c * Tp + i0);
        for (int u = 0; u < 4; u++) a[u] += r * at[(j + u) * Dt + c];
      }
      for (int64_t c = 0; c < Ds; c++) {
        const v16f r = load16(asT + c * Tp + i0);
        for (int u = 0; u < 4; u++) b[u] += r * as[(j + u) * Ds + c];
      }
      for (int u = 0; u < 4; u++) {
        if (!cosine) {
          a[u] = a[u] / sdt;
          b[u] = b[u] / sds;
        }
        store16(LT + (j + u) * 16, a[u]);
        store16(LS + (j + u) * 16, b[u]);
        mt = a[u] > mt ? a[u] : mt;
        ms = b[u] > ms ? b[u] : ms;
      }
    }
    for (; j < T; j++) {
      v16f a = v16f{}, b = v16f{};
      for (int64_t c = 0; c < Dt; c++) a += load16(atT + c * Tp + i0) * at[j * Dt + c];
      for (int64_t c = 0; c < Ds; c++) b += load16(asT + c * Tp + i0) * as[j * Ds + c];
      if (!cosine) {
        a = a / sdt;
        b = b / sds;
      }
      store16(LT + j * 16, a);
      store16(LS + j * 16, b);
      mt = a > mt ? a : mt;
      ms = b > ms ? b : ms;
    }
    v16f zt = v16f{}, zs = v16f{};
    for (int64_t j = 0; j < T; j++) {
      const v16f lt = load16(LT + j * 16) - mt, ls = load16(LS + j * 16) - ms;
      const v16f et = exp16(lt), es = exp16(ls);
      store16(LT + j * 16, lt);
      store16(LS + j * 16, ls);
      store16(ET + j * 16, et);
      store16(ES + j * 16, es);
      zt += et;
      zs += es;
    }
    float lzt[16], lzs[16], zta[16], zsa[16];
    store16(zta, zt);
    store16(zsa, zs);
    for (int u = 0; u < 16; u++) {
      lzt[u] = logf(zta[u]);
      lzs[u] = logf(zsa[u]);
    }
    const v16f zti = 1.0f / zt, zsi = 1.0f / zs, lztv = load16(lzt), lzsv = load16(lzs);
    v16f row = v16f{}, dot = v16f{};
    for (int64_t j = 0; j < T; j++) {
      const v16f pt = load16(ET + j * 16) * zti, ps = load16(ES + j * 16) * zsi;
      const v16f lt0 = load16(LT + j * 16) - lztv, ls0 = load16(LS + j * 16) - lzsv;
      const v16f lt = lt0 > log_floor ? lt0 : splat16(log_floor), ls = ls0 > log_floor ? ls0 : splat16(log_floor);
      const v16f ptc = pt > 1e-8f ? pt : splat16(1e-8f);
      row += ptc * (lt - ls);
      const v16f gp = ps >= 1e-8f ? -ptc * inv / ps : v16f{};
      dot += gp * ps;
      store16(LT + j * 16, gp);
      store16(ES + j * 16, ps);
    }
    float rowa[16];
    store16(rowa, row);
    const int64_t rows = T - i0 < 16 ? T - i0 : 16;
    for (int64_t u = 0; u < rows; u++) total += static_cast<double>(rowa[u]) * inv;
    if (dan == nullptr) continue;
    v16f d1[16];
    for (int64_t c = 0; c < Ds; c++) d1[c] = v16f{};
    for (int64_t j = 0; j < T; j++) {
      const v16f g = load16(ES + j * 16) * (load16(LT + j * 16) - dot);
      float ga[16];
      store16(ga, g);
      for (int64_t u = 0; u < rows; u++) G[(i0 + u) * Tp + j] = ga[u];
      for (int64_t c = 0; c < Ds; c++) d1[c] += g * as[j * Ds + c];
    }
    float out[16 * 16];
    for (int64_t c = 0; c < Ds; c++) store16(out + c * 16, d1[c]);
    for (int64_t u = 0; u < rows; u++)
      for (int64_t c = 0; c < Ds; c++) dan[(i0 + u) * Ds + c] = out[c * 16 + u];
  }
  *kl = total;
}

template <int DC>
BD_INLINE void rel16_cols_f32_body(const float* __restrict as, const float* __restrict G, int64_t Dsr, int64_t T, int64_t Tp, float* __restrict dan) {
  const int64_t Ds = DC > 0 ? DC : Dsr;
  for (int64_t j0 = 0; j0 < T; j0 += 16) {
    v16f d2[16];
    for (int64_t c = 0; c < Ds; c++) d2[c] = v16f{};
    for (int64_t i = 0; i < T; i++) {
      const v16f g = load16(G + i * Tp + j0);
      for (int64_t c = 0; c < Ds; c++) d2[c] += g * as[i * Ds + c];
    }
    float out[16 * 16];
    for (int64_t c = 0; c < Ds; c++) store16(out + c * 16, d2[c]);
    const int64_t rows = T - j0 < 16 ? T - j0 : 16;
    for (int64_t u = 0; u < rows; u++)
      for (int64_t c = 0; c < Ds; c++) dan[(j0 + u) * Ds + c] += out[c * 16 + u];
  }
}

BD_CLONES void rel16_rows_f32(const float* at, const float* atT, int64_t Dt, const float* as, const float* asT, int64_t Ds, int64_t T, int64_t Tp, bool cosine,
                              float inv, float* buf, float* G, float* dan, double* kl) {
  const int64_t d = Dt == Ds ? Dt : 0;
  BD_BY_HEAD_SIZE(rel16_rows_f32_body, d, at, atT, Dt, as, asT, Ds, T, Tp, cosine, inv, buf, G, dan, kl)
}

BD_CLONES void rel16_cols_f32(const float* as, const float* G, int64_t Ds, int64_t T, int64_t Tp, float* dan) {
  BD_BY_HEAD_SIZE(rel16_cols_f32_body, Ds, as, G, Ds, T, Tp, dan)
}

BD_CLONES void relation_softmax_f32(const float* s, float* p, float* __restrict logp, int64_t T) {
  // p may be s (in place): the shifted scores go to logp first, then p and logp are finished from there.
  const float log_floor = -18.420680743952367f;  // log(1e-8)
  for (int64_t i = 0; i < T; i++) {
    const float* sr = s + i * T;
    float* pr = p + i * T;
    float* lr = logp + i * T;
    const float m = max16(sr, T);
    for (int64_t j = 0; j < T; j++) lr[j] = sr[j] - m;
    for (int64_t j = 0; j < T; j++) pr[j] = exp_f32(lr[j]);
    const float z = sum16(pr, T);
    const float inv = 1.0f / z;
    const float lz = logf(z);
    for (int64_t j = 0; j < T; j++) {
      pr[j] = pr[j] * inv;
      const float l = lr[j] - lz;
      lr[j] = l > log_floor ? l : log_floor;
    }
  }
}

BD_CLONES void relation_kl_grad_f32(const float* __restrict p_t, const float* __restrict p_s, const float* __restrict logp_s, const float* __restrict logp_t,
                                    float* __restrict g, int64_t T, float inv, double* kl) {
  double total = 0.0;
  for (int64_t i = 0; i < T; i++) {
    const float* pt = p_t + i * T;
    const float* ps = p_s + i * T;
    const float* ls = logp_s + i * T;
    const float* lt = logp_t + i * T;
    float* gr = g + i * T;
    // g first holds pT (lt - ls), summed for the row's KL, then gP, then the score gradient.
    for (int64_t j = 0; j < T; j++) gr[j] = (pt[j] > 1e-8f ? pt[j] : 1e-8f) * (lt[j] - ls[j]);
    const float row = sum16(gr, T);
    for (int64_t j = 0; j < T; j++) gr[j] = ps[j] >= 1e-8f ? -(pt[j] > 1e-8f ? pt[j] : 1e-8f) * inv / ps[j] : 0.0f;
    const float dot = dot16(gr, ps, T);  // sum_k gP p_s
    for (int64_t j = 0; j < T; j++) gr[j] = ps[j] * (gr[j] - dot);
    total += static_cast<double>(row) * inv;
  }
  *kl += total;
}

}  // namespace bd
