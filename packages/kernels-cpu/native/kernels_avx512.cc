// AVX-512 (F, BW, DQ, VL) + VNNI kernels (Ice Lake / Zen 4 and later). See kernels.h for the rules of these
// ISA files.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

// GCC 12 reports its own `__m256i __Y = __Y;` (avxintrin.h) inside the AVX-512 extract intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,bmi2"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,bmi2")
#endif

namespace bd {
namespace {

inline const __m512i* v512(const void* p) { return static_cast<const __m512i*>(p); }

// acc += u8 . s8 in groups of 4 (vpdpbusd). Inline asm rather than _mm512_dpbusd_epi32: GCC 12 copies and
// spills the accumulators of the intrinsic (each use costs register moves and stack stores in the loop).
inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

float quantize_avx512(const float* x, int64_t n, int8_t* q) {
  __m512 mx = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
  if (i < n) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, x + i)));
  const float s = absmax_scale(_mm512_reduce_max_ps(mx));
  const __m512 sv = _mm512_set1_ps(s);
  // vcvtps2dq rounds half to even; vpmovsdb narrows with signed saturation, i.e. clamps to [-128, 127].
  for (i = 0; i + 16 <= n; i += 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), sv))));
  }
  if (i < n) _mm512_mask_cvtsepi32_storeu_epi8(q + i, tail, _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), sv)));
  return s;
}

// sum(x) = sum(x ^ 0x80 as unsigned) - 128 n: vpsadbw adds unsigned bytes in groups of 8.
int32_t prep_x_avx512(const int8_t* src, int64_t n, int8_t* dst, int64_t padded) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i v = _mm512_loadu_si512(v512(src + i));
    _mm512_storeu_si512(dst + i, v);
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(v, bias), _mm512_setzero_si512()));
  }
  int64_t s = _mm512_reduce_add_epi64(acc) - 128 * i;
  if (i < n) {
    const __mmask64 m = (~uint64_t{0}) >> (64 - (n - i));
    const __m512i v = _mm512_maskz_loadu_epi8(m, src + i);
    _mm512_mask_storeu_epi8(dst + i, m, v);
    // Masked-off bytes are 0 ^ 0x80 = 128 each after the bias: count only the n - i real ones.
    s += _mm512_reduce_add_epi64(_mm512_sad_epu8(_mm512_maskz_mov_epi8(m, _mm512_xor_si512(v, bias)), _mm512_setzero_si512())) -
         128 * (n - i);
    i = n;
  }
  for (; i < padded; i++) dst[i] = 0;
  return static_cast<int32_t>(s);
}

constexpr int64_t kPrefetchBytes = 4096;

// Batch 1, one tile. vpdpbusd multiplies unsigned bytes by signed bytes and adds groups of 4 into int32,
// so it takes the codes c = t + 1 in {0,1,2} as they are and x as int8; the caller subtracts sum(x).
// The code of column 64*s + j sits in bits 2s..2s+1 of byte j: masking the byte with 3 << 2s (no shift)
// leaves c << 2s, so accumulator s collects (c . x) << 2s; one arithmetic shift per accumulator at the end
// removes the factor exactly (every term is a multiple of 4^s). Four accumulators per row keep 16
// independent dependency chains in flight. Bound: an int32 lane of a3 sums cols / 64 terms of magnitude
// <= 2 * 128 * 64, far below 2^31 for any cols the JS side accepts (< 2^23).
// s0 + s1 / 4 + s2 / 16 + s3 / 64 lane by lane: slot s accumulated c << 2s (see ternary_tile_b1).
inline __m512i fold_slots(__m512i s0, __m512i s1, __m512i s2, __m512i s3) {
  return _mm512_add_epi32(_mm512_add_epi32(s0, _mm512_srai_epi32(s1, 2)),
                          _mm512_add_epi32(_mm512_srai_epi32(s2, 4), _mm512_srai_epi32(s3, 6)));
}

// The lane sums of four vectors as one [sum v0, sum v1, sum v2, sum v3] (a transpose-and-add tree).
inline __m128i reduce4(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
  const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
  const __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

void ternary_tile_b1(const TernaryJob& j, int64_t t, int64_t b) {
  const uint8_t* w = j.w + t * j.nblk * kTileBlockBytes;
  const int8_t* x = j.x + b * j.nblk * kBlockCols;
  const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0c);
  const __m512i m2 = _mm512_set1_epi8(0x30), m3 = _mm512_set1_epi8(static_cast<char>(0xc0));
  // Named accumulators (row r, slot s): GCC spills and copies arrays of vectors fed to vpdpbusd.
  __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
          a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  for (int64_t k = 0; k < j.nblk; k++, w += kTileBlockBytes, x += kBlockCols) {
    // Software prefetch 4 KiB ahead: on 2 threads it lifts the product from ~80% to ~95% of the streaming
    // read (the loop's 40 operations per 256 bytes keep fewer loads in flight than a pure read does).
    for (int l = 0; l < 4; l++) _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 64 * l), _MM_HINT_T0);
    const __m512i x0 = _mm512_loadu_si512(v512(x));
    const __m512i x1 = _mm512_loadu_si512(v512(x + 64));
    const __m512i x2 = _mm512_loadu_si512(v512(x + 128));
    const __m512i x3 = _mm512_loadu_si512(v512(x + 192));
#define BD_ROW(r, off)                                                  \
  {                                                                     \
    const __m512i wr = _mm512_loadu_si512(v512(w + (off)));             \
    a##r##0 = dpbusd(a##r##0, _mm512_and_si512(wr, m0), x0); \
    a##r##1 = dpbusd(a##r##1, _mm512_and_si512(wr, m1), x1); \
    a##r##2 = dpbusd(a##r##2, _mm512_and_si512(wr, m2), x2); \
    a##r##3 = dpbusd(a##r##3, _mm512_and_si512(wr, m3), x3); \
  }
    BD_ROW(0, 0)
    BD_ROW(1, 64)
    BD_ROW(2, 128)
    BD_ROW(3, 192)
#undef BD_ROW
  }
  const __m128i sums = reduce4(fold_slots(a00, a01, a02, a03), fold_slots(a10, a11, a12, a13),
                               fold_slots(a20, a21, a22, a23), fold_slots(a30, a31, a32, a33));
  const int64_t row = t * kTileRows;
  ternary_store(j, row + 0, b, _mm_extract_epi32(sums, 0));
  ternary_store(j, row + 1, b, _mm_extract_epi32(sums, 1));
  ternary_store(j, row + 2, b, _mm_extract_epi32(sums, 2));
  ternary_store(j, row + 3, b, _mm_extract_epi32(sums, 3));
}

// Rows r0..r0+R-1 of one tile against activation rows b0..b0+BT-1: each 64-byte weight row is unpacked once
// per block (shift + mask to plain codes) and reused by every activation row; R x BT accumulators.
template <int R, int BT>
void ternary_tile_bt(const TernaryJob& j, int64_t t, int r0, int64_t b0) {
  static_assert(R * BT <= 16, "accumulators must stay in registers");
  const uint8_t* w = j.w + t * j.nblk * kTileBlockBytes + r0 * kBlockBytes;
  const int64_t xs = j.nblk * kBlockCols;
  const int8_t* x = j.x + b0 * xs;
  const __m512i mask = _mm512_set1_epi8(3);
  __m512i acc[R][BT];
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) acc[r][b] = _mm512_setzero_si512();
  for (int64_t k = 0; k < j.nblk; k++, w += kTileBlockBytes, x += kBlockCols) {
    __m512i wr[R];
    for (int r = 0; r < R; r++) wr[r] = _mm512_loadu_si512(v512(w + r * kBlockBytes));
    for (int s = 0; s < 4; s++) {
      __m512i c[R];
      for (int r = 0; r < R; r++) c[r] = _mm512_and_si512(_mm512_srli_epi16(wr[r], 2 * s), mask);
      for (int b = 0; b < BT; b++) {
        const __m512i xv = _mm512_loadu_si512(v512(x + b * xs + 64 * s));
        for (int r = 0; r < R; r++) acc[r][b] = dpbusd(acc[r][b], c[r], xv);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) ternary_store(j, t * kTileRows + r0 + r, b0 + b, _mm512_reduce_add_epi32(acc[r][b]));
}

void ternary_avx512(const TernaryJob& j, int64_t t0, int64_t t1) {
  // Batch inside the tile loop: a tile's weights (cols bytes) come from DRAM once and from L1 after that.
  // Groups of 8 activation rows take 2 weight rows at a time (fewest unpack operations per vpdpbusd).
  for (int64_t t = t0; t < t1; t++) {
    int64_t b = 0;
    for (; b + 8 <= j.batch; b += 8) {
      ternary_tile_bt<2, 8>(j, t, 0, b);
      ternary_tile_bt<2, 8>(j, t, 2, b);
    }
    if (j.batch - b >= 4) {
      ternary_tile_bt<4, 4>(j, t, 0, b);
      b += 4;
    }
    switch (j.batch - b) {
      case 3: ternary_tile_bt<4, 3>(j, t, 0, b); break;
      case 2: ternary_tile_bt<4, 2>(j, t, 0, b); break;
      case 1: ternary_tile_b1(j, t, b); break;
      default: break;
    }
  }
}

// Weight rows as the matrix-vector kernels read them: 16 columns at a time as float32.
struct F32Rows {
  static constexpr bool kPrefetch = false;  // one 64-byte row step per load: the hardware prefetcher keeps up
  const float* w;
  int64_t cols;
  __m512 load(int64_t r, int64_t c) const { return _mm512_loadu_ps(w + r * cols + c); }
  __m512 load_tail(__mmask16 m, int64_t r, int64_t c) const { return _mm512_maskz_loadu_ps(m, w + r * cols + c); }
  const void* at(int64_t r, int64_t c) const { return w + r * cols + c; }
  float scale(int64_t) const { return 1.0f; }
};

// Software prefetch distance of the int8-rows product: R concurrent row streams defeat the hardware prefetcher
// (measured on the Xeon: 6.9 -> 12.1 GB/s on one thread with 8 KiB).
constexpr int64_t kI8PrefetchBytes = 8192;

// R weight rows x BT activation rows of y = (W x) * scale, 16 columns per step, masked tail.
template <class Rows, int R, int BT>
void matvec_tile_512(const Rows& W, const float* x, float* y, int64_t rows, int64_t r0, int64_t b0) {
  const int64_t cols = W.cols;
  __m512 acc[R][BT];
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) acc[r][b] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    if (Rows::kPrefetch && (c & 63) == 0)
      for (int r = 0; r < R; r++) _mm_prefetch(static_cast<const char*>(W.at(r0 + r, c)) + kI8PrefetchBytes, _MM_HINT_T0);
    __m512 xv[BT];
    for (int b = 0; b < BT; b++) xv[b] = _mm512_loadu_ps(x + (b0 + b) * cols + c);
    for (int r = 0; r < R; r++) {
      const __m512 wv = W.load(r0 + r, c);
      for (int b = 0; b < BT; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
    }
  }
  if (c < cols) {
    const __mmask16 m = static_cast<__mmask16>((1u << (cols - c)) - 1);
    __m512 xv[BT];
    for (int b = 0; b < BT; b++) xv[b] = _mm512_maskz_loadu_ps(m, x + (b0 + b) * cols + c);
    for (int r = 0; r < R; r++) {
      const __m512 wv = W.load_tail(m, r0 + r, c);
      for (int b = 0; b < BT; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) y[(b0 + b) * rows + r0 + r] = _mm512_reduce_add_ps(acc[r][b]) * W.scale(r0 + r);
}

// R weight rows from r for every batch row: tiles of 4 activation rows, then the remainder in one tile.
template <class Rows, int R>
void matvec_batch_512(const Rows& W, const float* x, float* y, int64_t rows, int64_t batch, int64_t r) {
  int64_t b = 0;
  for (; b + 4 <= batch; b += 4) matvec_tile_512<Rows, R, 4>(W, x, y, rows, r, b);
  switch (batch - b) {
    case 3: matvec_tile_512<Rows, R, 3>(W, x, y, rows, r, b); break;
    case 2: matvec_tile_512<Rows, R, 2>(W, x, y, rows, r, b); break;
    case 1: matvec_tile_512<Rows, R, 1>(W, x, y, rows, r, b); break;
    default: break;
  }
}

template <class Rows>
void matvec_rows_512(const Rows& W, const float* x, float* y, int64_t rows, int64_t batch, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) matvec_batch_512<Rows, 4>(W, x, y, rows, batch, r);
  for (; r < r1; r++) matvec_batch_512<Rows, 1>(W, x, y, rows, batch, r);
}

void matvec_avx512(const MatvecJob& j, int64_t r0, int64_t r1) { matvec_rows_512(F32Rows{j.w, j.cols}, j.x, j.y, j.rows, j.batch, r0, r1); }

// R int8 weight rows x BT int8 activation rows, 64 columns per vpdpbusd. vpdpbusd multiplies unsigned by signed
// bytes: the weights are biased to w + 128 (an XOR with 0x80) and the caller's sum(xq) * 128 taken off at the end.
// Columns past cols are masked to weight 0 (biased 128) against zero-padded activations, adding nothing. Each
// int32 lane sums cols / 16 terms of at most 255 * 128: exact for any cols the JS side accepts.
template <int R, int BT>
void matvec_i8q_tile(const MatvecI8Job& j, int64_t r0, int64_t b0) {
  __m512i acc[R][BT];
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) acc[r][b] = _mm512_setzero_si512();
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t c = 0; c < j.cols; c += 64) {
    const __mmask64 m = j.cols - c >= 64 ? ~__mmask64{0} : (__mmask64{1} << (j.cols - c)) - 1;
    __m512i xv[BT];
    for (int b = 0; b < BT; b++) xv[b] = _mm512_loadu_si512(v512(j.xq + (b0 + b) * j.xstride + c));
    for (int r = 0; r < R; r++) {
      const int8_t* wr = j.w + (r0 + r) * j.cols + c;
      _mm_prefetch(reinterpret_cast<const char*>(wr) + kI8PrefetchBytes, _MM_HINT_T0);
      const __m512i wu = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, wr), bias);
      for (int b = 0; b < BT; b++) acc[r][b] = dpbusd(acc[r][b], wu, xv[b]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) {
      const int32_t total = _mm512_reduce_add_epi32(acc[r][b]) - 128 * j.xsum[b0 + b];
      j.y[(b0 + b) * j.rows + r0 + r] =
          static_cast<float>(static_cast<double>(total) * (static_cast<double>(j.wscale[r0 + r]) / static_cast<double>(j.xs[b0 + b])));
    }
}

template <int R>
void matvec_i8q_rows(const MatvecI8Job& j, int64_t r) {
  int64_t b = 0;
  for (; b + 4 <= j.batch; b += 4) matvec_i8q_tile<R, 4>(j, r, b);
  switch (j.batch - b) {
    case 3: matvec_i8q_tile<R, 3>(j, r, b); break;
    case 2: matvec_i8q_tile<R, 2>(j, r, b); break;
    case 1: matvec_i8q_tile<R, 1>(j, r, b); break;
    default: break;
  }
}

void matvec_i8_avx512(const MatvecI8Job& j, int64_t r0, int64_t r1) {
  int64_t r = r0;
  // One weight row at a time, i.e. one sequential stream per thread: four rows in step (four streams 1 KiB apart,
  // 64 bytes from each in turn) ran 2.5x slower on the AMD EPYC (8.7 vs 22.2 GB/s, one thread, 151,936 x 1,024).
  for (; r < r1; r++) matvec_i8q_rows<1>(j, r);
}

constexpr int kMr = 12;
constexpr int kNr = 32;

void gemm_micro_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int accumulate) {
  __m512 c0[kMr], c1[kMr];
#pragma GCC unroll 12
  for (int i = 0; i < kMr; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(b + k * kNr);
    const __m512 b1 = _mm512_loadu_ps(b + k * kNr + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMr; i++) {
      const __m512 av = _mm512_set1_ps(a[k * kMr + i]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  }
  // Fully unrolled epilogues, one per case: with a runtime branch per row GCC keeps the accumulators in a
  // stack array (zeroed with rep stos on entry and spilled after the loop), 5-10% of a 256-deep tile.
  if (accumulate) {
#pragma GCC unroll 12
    for (int i = 0; i < kMr; i++) {
      _mm512_storeu_ps(c + i * ldc, _mm512_add_ps(c0[i], _mm512_loadu_ps(c + i * ldc)));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_add_ps(c1[i], _mm512_loadu_ps(c + i * ldc + 16)));
    }
  } else {
#pragma GCC unroll 12
    for (int i = 0; i < kMr; i++) {
      _mm512_storeu_ps(c + i * ldc, c0[i]);
      _mm512_storeu_ps(c + i * ldc + 16, c1[i]);
    }
  }
}

// In-register transpose of 16 rows of 16 floats (r[i] lane j -> r[j] lane i): unpack, shuffle, then two
// 128-bit lane permutes.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

// PackTransFn: groups of 16 source rows go through transpose16; 16 k-steps at a time, masked to the rows
// of the group (missing rows read as zero), scalar for the last kc % 16 steps.
void pack_trans_avx512(const float* src, int64_t ld, int64_t rows, int64_t kc, int w, float* dst) {
  for (int i0 = 0; i0 < w; i0 += 16) {
    const int width = w - i0 < 16 ? w - i0 : 16;  // output lanes of this group
    const __mmask16 out_mask = static_cast<__mmask16>((1u << width) - 1);
    const int64_t have = rows - i0;  // source rows present in this group
    int64_t p = 0;
    for (; p + 16 <= kc; p += 16) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) r[i] = i < have ? _mm512_loadu_ps(src + (i0 + i) * ld + p) : _mm512_setzero_ps();
      transpose16(r);
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(dst + (p + j) * w + i0, out_mask, r[j]);
    }
    for (; p < kc; p++) {
      for (int i = 0; i < width; i++) dst[p * w + i0 + i] = i < have ? src[(i0 + i) * ld + p] : 0.0f;
    }
  }
}

// TransposeFn: 16 x 16 tiles through transpose16, masked at the edges (bits are moved, never converted).
void transpose_avx512(const uint32_t* src, int64_t sc, uint32_t* dst, int64_t dr, int64_t rows, int64_t cols) {
  const float* s = reinterpret_cast<const float*>(src);
  float* d = reinterpret_cast<float*>(dst);
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t nr = rows - r0 < 16 ? rows - r0 : 16;
    const __mmask16 rmask = static_cast<__mmask16>((1u << nr) - 1);
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int64_t nc = cols - c0 < 16 ? cols - c0 : 16;
      const __mmask16 cmask = static_cast<__mmask16>((1u << nc) - 1);
      __m512 v[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) v[i] = i < nc ? _mm512_maskz_loadu_ps(rmask, s + (c0 + i) * sc + r0) : _mm512_setzero_ps();
      transpose16(v);
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) {
        if (i < nr) _mm512_mask_storeu_ps(d + (r0 + i) * dr + c0, cmask, v[i]);
      }
    }
  }
}

// acc += (u8 panel) . (the 4 bytes at p broadcast to every lane), the broadcast folded into vpdpbusd.
inline __m512i dpbusd_bcast(__m512i acc, __m512i u8, const int32_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*p));
  return acc;
}

// One kI8Mr x kI8Nr block of the int8 training GEMM (kernels.h GemmI8Job): 24 int32 accumulators, two 16-lane
// panels of c + 1 loaded per group of 4 columns, each row's 4 codes broadcast from memory.
void gemm_i8_block(const GemmI8Job& j, int64_t rb, int64_t cb) {
  static_assert(kI8Mr == 12 && kI8Nr == 32, "the register blocking below");
  const int32_t* a = reinterpret_cast<const int32_t*>(j.a) + rb * j.groups * kI8Mr;
  const uint8_t* b = j.b + cb * j.groups * (kI8Nr * 4);
  __m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512i c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  __m512i c80 = c00, c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
  for (int64_t g = 0; g < j.groups; g++, a += kI8Mr, b += kI8Nr * 4) {
    const __m512i b0 = _mm512_load_si512(v512(b));
    const __m512i b1 = _mm512_load_si512(v512(b + 64));
    c00 = dpbusd_bcast(c00, b0, a + 0), c01 = dpbusd_bcast(c01, b1, a + 0);
    c10 = dpbusd_bcast(c10, b0, a + 1), c11 = dpbusd_bcast(c11, b1, a + 1);
    c20 = dpbusd_bcast(c20, b0, a + 2), c21 = dpbusd_bcast(c21, b1, a + 2);
    c30 = dpbusd_bcast(c30, b0, a + 3), c31 = dpbusd_bcast(c31, b1, a + 3);
    c40 = dpbusd_bcast(c40, b0, a + 4), c41 = dpbusd_bcast(c41, b1, a + 4);
    c50 = dpbusd_bcast(c50, b0, a + 5), c51 = dpbusd_bcast(c51, b1, a + 5);
    c60 = dpbusd_bcast(c60, b0, a + 6), c61 = dpbusd_bcast(c61, b1, a + 6);
    c70 = dpbusd_bcast(c70, b0, a + 7), c71 = dpbusd_bcast(c71, b1, a + 7);
    c80 = dpbusd_bcast(c80, b0, a + 8), c81 = dpbusd_bcast(c81, b1, a + 8);
    c90 = dpbusd_bcast(c90, b0, a + 9), c91 = dpbusd_bcast(c91, b1, a + 9);
    ca0 = dpbusd_bcast(ca0, b0, a + 10), ca1 = dpbusd_bcast(ca1, b1, a + 10);
    cb0 = dpbusd_bcast(cb0, b0, a + 11), cb1 = dpbusd_bcast(cb1, b1, a + 11);
  }
  const __m512i acc[kI8Mr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                                 {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {ca0, ca1}, {cb0, cb1}};
  const int64_t row0 = rb * kI8Mr, col0 = cb * kI8Nr;
  for (int r = 0; r < kI8Mr && row0 + r < j.m; r++) {
    const int64_t i = row0 + r;
    const __m512i sum = _mm512_set1_epi32(j.asum[i]);
    const float si = j.s[i];
    for (int p = 0; p < 2; p++) {
      const int64_t col = col0 + 16 * p;
      if (col >= j.n) break;
      const int64_t left = j.n - col;
      const __mmask16 mk = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      // exact: |acc - asum| <= 128 k < 2^24
      const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][p], sum));
      // f32(d / s) rounded once, as the fp32 path's scalar quotient (IEEE division in both)
      const __m512 f = j.per_row ? _mm512_div_ps(_mm512_maskz_loadu_ps(mk, j.d + col), _mm512_set1_ps(si)) : _mm512_set1_ps(j.d[0] / si);
      _mm512_mask_storeu_ps(j.y + i * j.n + col, mk, _mm512_mul_ps(v, f));
    }
  }
}

void gemm_i8_avx512(const GemmI8Job& j, int64_t rb_begin, int64_t rb_end) {
  const int64_t cblocks = (j.n + kI8Nr - 1) / kI8Nr;
  for (int64_t c0 = 0; c0 < cblocks; c0 += j.l2_blocks) {
    const int64_t c1 = c0 + j.l2_blocks < cblocks ? c0 + j.l2_blocks : cblocks;
    for (int64_t rb = rb_begin; rb < rb_end; rb++)
      for (int64_t cb = c0; cb < c1; cb++) gemm_i8_block(j, rb, cb);
  }
}

uint64_t stream_avx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(v512(p + i)));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(v512(p + i + 64)));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(v512(p + i + 128)));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(v512(p + i + 192)));
  }
  uint64_t out = static_cast<uint64_t>(
      _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
  return out + stream_tail(p + i, n - i);
}

}  // namespace
}  // namespace bd

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bd {
namespace {
const IsaKernels kTable = {"avx512vnni", quantize_avx512, prep_x_avx512, ternary_avx512, matvec_avx512, gemm_micro_avx512, kMr, kNr, pack_trans_avx512, transpose_avx512, stream_avx512, matvec_i8_avx512, gemm_i8_avx512};
}
const IsaKernels* const kAvx512VnniKernels = &kTable;
}  // namespace bd

#else
namespace bd {
const IsaKernels* const kAvx512VnniKernels = nullptr;
}
#endif
