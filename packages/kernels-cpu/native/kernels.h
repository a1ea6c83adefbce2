// Kernel interface shared by the ISA files (kernels_scalar.cc, kernels_avx2.cc, kernels_avx512.cc) and the
// generic drivers (gemm_napi.cc, ternary_napi.cc, ...). Each ISA file fills one IsaKernels table; isa.cc picks one
// at run time.
//
// The ISA files are compiled with `#pragma GCC target(...)` and must not instantiate anything with external
// linkage from C++ headers (std::min, std::vector...): the linker could keep the AVX-512 copy of such an
// inline function and hand it to code running on a CPU without AVX-512. Only <stdint.h>, <stddef.h> and
// <immintrin.h> are included there, and every helper lives in an anonymous namespace.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace bd {

// Ternary layout "t4x256" (README.md "In-memory ternary layout"): rows in tiles of 4, columns in blocks of
// 256. Tile t, block k, row r (0..3) is 64 contiguous bytes at ((t * nblk + k) * 4 + r) * 64; byte j holds the
// codes (value + 1, 2 bits) of columns k*256 + j + 64*s in bits 2s..2s+1, s = 0..3. Padding codes are 1 (0).
constexpr int kTileRows = 4;
constexpr int kBlockCols = 256;
constexpr int kBlockBytes = 64;  // per row per block
constexpr int kTileBlockBytes = kTileRows * kBlockBytes;
static_assert(kBlockBytes * 4 == kBlockCols, "4 two-bit codes per byte");

struct TernaryJob {
  const uint8_t* w;      // t4x256 layout
  int64_t nblk;          // blocks per row = colsPadded / 256
  const int8_t* x;       // [batch, nblk * 256], zero padded
  const int32_t* xsum;   // [batch] sum of x (the "- sum(x)" of x . t = x . (t + 1) - sum(x))
  int64_t rows;
  int64_t batch;
  int32_t* y;            // [batch, rows] int32, or null when yf is set
  float* yf;             // [batch, rows] float: (float)((double)acc * factor[s * batch + b]), s the row's segment
  const double* factor;  // [segments, batch] weightScale[s] / actScale[b]
  const int64_t* seg_end;  // [segments] end row of each segment (rows stacked from matrices with their own scale);
                           // null: one segment
  const int8_t* xv;      // AMX only: x in VNNI order (AmxKernels::prep_xv), or null for the VNNI kernels
};
// Computes output rows of tiles [tile_begin, tile_end) for every batch row.
using TernaryFn = void (*)(const TernaryJob& job, int64_t tile_begin, int64_t tile_end);

struct MatvecJob {
  const float* w;  // [rows, cols]
  const float* x;  // [batch, cols]
  float* y;        // [batch, rows]
  int64_t rows, cols, batch;
};
using MatvecFn = void (*)(const MatvecJob& job, int64_t row_begin, int64_t row_end);

// int8 weights (one scale per row) x int8 activations (one absmax scale per row, BitNet's per-token quantizer),
// as llama.cpp's Q8_0 x q8_0: acc[b, r] = sum_c xq[b, c] * w[r, c] exactly in int32, then
// y[b, r] = (float)((double)acc * ((double)wscale[r] / (double)xs[b])).
struct MatvecI8Job {
  const int8_t* w;       // [rows, cols]
  const float* wscale;   // [rows]
  const int8_t* xq;      // [batch, xstride], zero-padded from cols to xstride (a multiple of 64)
  const float* xs;       // [batch] activation scales (127 / max|x|)
  const int32_t* xsum;   // [batch] sum of each row of xq
  float* y;              // [batch, rows]
  int64_t rows, cols, xstride, batch;
};
using MatvecI8Fn = void (*)(const MatvecI8Job& job, int64_t row_begin, int64_t row_end);

// C[mr, nr] (row stride ldc) = (accumulate ? C : 0) + Apack[kc, mr]^T-strip x Bpack[kc, nr]-strip.
using GemmMicroFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int accumulate);

// GEMM packing of a strip whose elements are contiguous along k: dst[p * w + i] = src[i * ld + p] for
// i < rows (<= w), p < kc, and 0 for rows <= i < w. This is the packing of row-major A (w = mr) and of a
// transposed B (w = nr); null in a table means the driver's generic loop.
using PackTransFn = void (*)(const float* src, int64_t ld, int64_t rows, int64_t kc, int w, float* dst);

// A block transpose of 4-byte elements: dst[r * dr + c] = src[r + c * sc] for r < rows, c < cols (the source is
// contiguous along r, the destination along c). Null in a table means the generic tiled loop.
using TransposeFn = void (*)(const uint32_t* src, int64_t sc, uint32_t* dst, int64_t dr, int64_t rows, int64_t cols);

// Reads n bytes once (the memory-bandwidth probe); returns a checksum so the reads cannot be elided.
using StreamFn = uint64_t (*)(const uint8_t* p, size_t n);

// Copies n activations to dst, zero-fills dst[n..padded) and returns their sum (the x . t = x . c - sum(x)
// correction of the ternary kernels).
using PrepXFn = int32_t (*)(const int8_t* src, int64_t n, int8_t* dst, int64_t padded);

// Per-token absmax int8 quantization of one row (BitNet b1.58), float32 arithmetic throughout:
// s = 127 / max(max|x|, 1e-5f); q = saturate_int8(round_half_even(x * s)). Returns s. Bit-exact with the
// TypeScript twin (float32 products and quotients rounded once; the default rounding mode is to-nearest-even).
using QuantizeFn = float (*)(const float* x, int64_t n, int8_t* q);

// Dense int8 x ternary GEMM of the training forward (the fused BitLinear at any batch): for row i of the
// activation codes q [m, k] and output feature j of the ternary codes c [n, k],
//   acc = sum_k q[i, k] * (c[j, k] + 1) in int32 (vpdpbusd: c + 1 is the unsigned operand),
//   y[i, j] = (float)(acc - asum[i]) * f32(d / s[i])   (d[j] when per_row, else d[0]),
// i.e. the fp32 path's exact integer product rescaled by the same float32 factor: bit-identical to it.
constexpr int kI8Mr = 12;  // rows of q per packed block
constexpr int kI8Nr = 32;  // output features per packed block (two 16-lane panels)
struct GemmI8Job {
  const int8_t* a;      // [ceil(m / kI8Mr)][groups][kI8Mr][4]: q in groups of 4 columns, zero padded
  const uint8_t* b;     // [ceil(n / kI8Nr)][groups][kI8Nr][4]: c + 1, padding 1
  const int32_t* asum;  // [m] row sums of q
  const float* s;       // [m] activation scales
  const float* d;       // [n] (per_row) or [1] ternary scales
  int per_row;
  float* y;             // [m, n]
  int64_t m, n, groups; // groups = ceil(k / 4)
  int64_t l2_blocks;    // column blocks per pass over the row blocks (B's slice kept in L2)
};
// Computes rows of blocks [rb_begin, rb_end) for every column.
using GemmI8Fn = void (*)(const GemmI8Job& job, int64_t rb_begin, int64_t rb_end);

// bf16 GEMM of the BitLinear backward's bf16 precision (kernels_bf16.cc, AVX512_BF16 vdpbf16ps):
// C[i, j] = scale * sum_p A[i, p] B[p, j], A and B given as bfloat16 pairs along p (low half: even p), products
// exact in fp32 and summed in fp32. The driver (fused_napi.cc) rounds the operands to bf16 while packing.
constexpr int kBfMr = 12;  // rows of A per packed block
constexpr int kBfNr = 32;  // columns of B per packed block (two 16-lane panels)
struct GemmBf16Job {
  const uint32_t* a;  // [ceil(m / kBfMr)][pairs][kBfMr], zero padded
  const uint32_t* b;  // [ceil(n / kBfNr)][pairs][kBfNr], zero padded
  float* c;           // [m, ldc]
  int64_t ldc, m, n, pairs;
  int64_t l2_blocks;  // column blocks per pass over the row blocks
  float scale;
  bool acc = false;  // C += scale * A @ B
};
using GemmBf16Fn = void (*)(const GemmBf16Job& job, int64_t rb_begin, int64_t rb_end);
// Packing of A: element (i, p) = src[i * rs + p * ps] (times sv[p] for mode 1, divided by sv[p] for mode 2),
// rounded to bf16 (nearest even, vcvtne2ps2bf16); rs or ps must be 1.
struct Bf16PackA {
  const float* src;
  int64_t rs, ps;
  const float* sv;
  int mode;
  int64_t rows, inner, pairs;
  uint32_t* dst;
};
// Packing of B from int8 codes [inner, cols] (exact in bf16), or, when fsrc is set, from floats: element (p, j)
// = fsrc[p * ps + j * cs], rounded to bf16 (nearest even); ps or cs must be 1.
struct Bf16PackB {
  const int8_t* codes;
  int64_t inner, cols, pairs;
  uint32_t* dst;
  const float* fsrc;
  int64_t ps, cs;
};
struct Bf16Kernels {
  GemmBf16Fn gemm;
  void (*pack_a)(const Bf16PackA& job, int64_t rb_begin, int64_t rb_end);
  void (*pack_b)(const Bf16PackB& job, int64_t cb_begin, int64_t cb_end);
};
// Null when the compiler could not build them; usable only where the CPU has AVX512_BF16 (isa.h bf16_gemm()).
extern const Bf16Kernels* const kBf16Avx512;

struct IsaKernels {
  const char* name;
  QuantizeFn quantize;
  PrepXFn prep_x;
  TernaryFn ternary;
  MatvecFn matvec;
  GemmMicroFn gemm_micro;
  int mr, nr;  // micro-tile of gemm_micro
  PackTransFn pack_trans;
  TransposeFn transpose;
  StreamFn stream;
  MatvecI8Fn matvec_i8;  // null: the generic loop of tensor_ops.cc
  GemmI8Fn gemm_i8;      // null: the fp32 GEMM path of the fused BitLinear
};

// The AMX part of the "amx" ISA (kernels_amx.cc); the rest of that ISA is the AVX-512 VNNI table. For
// batch >= min_batch the driver fills TernaryJob::xv with prep_xv (x in the VNNI order of AMX B tiles:
// ceil(batch / 16) * 16 * xs bytes) and `ternary` runs on the tile unit; below it, xv is null and `ternary`
// hands the job to the VNNI kernels.
struct AmxKernels {
  TernaryFn ternary;
  void (*prep_xv)(const int8_t* x, int64_t batch, int64_t xs, int8_t* dst);
  int64_t min_batch;
};

// Null when the compiler could not build that ISA (e.g. not x86-64).
extern const AmxKernels* const kAmxKernels;
extern const IsaKernels* const kScalarKernels;
extern const IsaKernels* const kAvx2Kernels;
extern const IsaKernels* const kAvx512VnniKernels;

// The checksum of every StreamFn: the sum of the little-endian 64-bit words at offsets 0, 8, 16... plus the
// last n % 8 bytes. Independent of the ISA and of how the pool splits the buffer (at 64-byte boundaries).
static inline uint64_t stream_tail(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    __builtin_memcpy(&v, p + i, 8);
    s += v;
  }
  for (; i < n; i++) s += p[i];
  return s;
}

// max(m, 1e-5f) then 127 / that, in float32: the activation scale of every QuantizeFn.
static inline float absmax_scale(float m) { return 127.0f / (m < 1e-5f ? 1e-5f : m); }

// Shared epilogue of every ternary kernel (inline, header-only, no ISA-specific code).
static inline void ternary_store(const TernaryJob& j, int64_t row, int64_t b, int32_t dot_c) {
  if (row >= j.rows) return;
  const int32_t v = dot_c - j.xsum[b];
  if (j.yf != nullptr) {
    int64_t s = 0;
    if (j.seg_end != nullptr)
      while (row >= j.seg_end[s]) s++;
    j.yf[b * j.rows + row] = static_cast<float>(static_cast<double>(v) * j.factor[s * j.batch + b]);
  } else {
    j.y[b * j.rows + row] = v;
  }
}

}  // namespace bd
