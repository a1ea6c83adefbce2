// AVX2 + FMA kernels (Haswell / Zen 1 and later). See kernels.h for the rules of these ISA files.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi2")
#endif

namespace bd {
namespace {

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float quantize_avx2(const float* x, int64_t n, int8_t* q) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 mx = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float m = _mm_cvtss_f32(m4);
  for (int64_t t = i; t < n; t++) {
    const float a = _mm_cvtss_f32(_mm_and_ps(_mm_set_ss(x[t]), _mm256_castps256_ps128(absmask)));
    m = a > m ? a : m;
  }
  const float s = absmax_scale(m);
  const __m256 sv = _mm256_set1_ps(s);
  // vcvtps2dq rounds half to even; the two saturating packs clamp to int8 and interleave 128-bit lanes,
  // which the final permute undoes.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), sv));
    const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), sv));
    const __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), sv));
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(packed, order));
  }
  for (; i < n; i++) {
    const int32_t r = _mm_cvtss_si32(_mm_mul_ss(_mm_set_ss(x[i]), _mm_set_ss(s)));
    q[i] = static_cast<int8_t>(r > 127 ? 127 : (r < -128 ? -128 : r));
  }
  return s;
}

// sum(x) = sum(x ^ 0x80 as unsigned) - 128 n: vpsadbw adds unsigned bytes in groups of 8.
int32_t prep_x_avx2(const int8_t* src, int64_t n, int8_t* dst, int64_t padded) {
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), v);
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(v, bias), _mm256_setzero_si256()));
  }
  int64_t s = _mm256_extract_epi64(acc, 0) + _mm256_extract_epi64(acc, 1) + _mm256_extract_epi64(acc, 2) +
              _mm256_extract_epi64(acc, 3) - 128 * i;
  for (; i < n; i++) {
    s += src[i];
    dst[i] = src[i];
  }
  for (; i < padded; i++) dst[i] = 0;
  return static_cast<int32_t>(s);
}

// One tile (4 rows) against one activation row. Codes c in {0,1,2} are unsigned, activations signed:
// vpmaddubsw(c, x) gives 16-bit pair sums of magnitude <= 2 * 2 * 128 = 512; 8 of them per block stay far
// below the int16 limit before vpmaddwd widens them to int32, so nothing saturates and the sum is exact.
void ternary_tile_avx2(const TernaryJob& j, int64_t t, int64_t b) {
  const uint8_t* tile = j.w + t * j.nblk * kTileBlockBytes;
  const int8_t* x = j.x + b * j.nblk * kBlockCols;
  const __m256i mask = _mm256_set1_epi8(3);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[kTileRows];
  for (int r = 0; r < kTileRows; r++) acc[r] = _mm256_setzero_si256();
  for (int64_t k = 0; k < j.nblk; k++) {
    const uint8_t* wk = tile + k * kTileBlockBytes;
    const int8_t* xk = x + k * kBlockCols;
    __m256i acc16[kTileRows];
    for (int r = 0; r < kTileRows; r++) acc16[r] = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
      __m256i w[kTileRows];
      for (int r = 0; r < kTileRows; r++) {
        w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wk + r * kBlockBytes + 32 * h));
      }
      for (int s = 0; s < 4; s++) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xk + 64 * s + 32 * h));
        for (int r = 0; r < kTileRows; r++) {
          const __m256i c = _mm256_and_si256(_mm256_srli_epi16(w[r], 2 * s), mask);
          acc16[r] = _mm256_add_epi16(acc16[r], _mm256_maddubs_epi16(c, xv));
        }
      }
    }
    for (int r = 0; r < kTileRows; r++) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(acc16[r], ones));
  }
  for (int r = 0; r < kTileRows; r++) ternary_store(j, t * kTileRows + r, b, hsum_epi32(acc[r]));
}

void ternary_avx2(const TernaryJob& j, int64_t t0, int64_t t1) {
  // Batch inside the tile loop: a tile's weights (cols bytes) stay in L1 while every batch row uses them.
  for (int64_t t = t0; t < t1; t++) {
    for (int64_t b = 0; b < j.batch; b++) ternary_tile_avx2(j, t, b);
  }
}

// R rows x BT activation rows of y = W x, 8 columns per step, scalar tail.
template <int R, int BT>
void matvec_tile_avx2(const MatvecJob& j, int64_t r0, int64_t b0) {
  __m256 acc[R][BT];
  for (int r = 0; r < R; r++)
    for (int b = 0; b < BT; b++) acc[r][b] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= j.cols; c += 8) {
    __m256 xv[BT];
    for (int b = 0; b < BT; b++) xv[b] = _mm256_loadu_ps(j.x + (b0 + b) * j.cols + c);
    for (int r = 0; r < R; r++) {
      const __m256 wv = _mm256_loadu_ps(j.w + (r0 + r) * j.cols + c);
      for (int b = 0; b < BT; b++) acc[r][b] = _mm256_fmadd_ps(wv, xv[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; r++) {
    for (int b = 0; b < BT; b++) {
      float s = hsum_ps(acc[r][b]);
      for (int64_t cc = c; cc < j.cols; cc++) s += j.w[(r0 + r) * j.cols + cc] * j.x[(b0 + b) * j.cols + cc];
      j.y[(b0 + b) * j.rows + r0 + r] = s;
    }
  }
}

template <int R>
void matvec_rows_avx2(const MatvecJob& j, int64_t r) {
  int64_t b = 0;
  for (; b + 3 <= j.batch; b += 3) matvec_tile_avx2<R, 3>(j, r, b);
  if (j.batch - b == 2) matvec_tile_avx2<R, 2>(j, r, b);
  if (j.batch - b == 1) matvec_tile_avx2<R, 1>(j, r, b);
}

void matvec_avx2(const MatvecJob& j, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) matvec_rows_avx2<4>(j, r);
  for (; r < r1; r++) matvec_rows_avx2<1>(j, r);
}

constexpr int kMr = 6;
constexpr int kNr = 16;

void gemm_micro_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int accumulate) {
  __m256 c0[kMr], c1[kMr];
  for (int i = 0; i < kMr; i++) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kNr);
    const __m256 b1 = _mm256_loadu_ps(b + k * kNr + 8);
    for (int i = 0; i < kMr; i++) {
      const __m256 av = _mm256_broadcast_ss(a + k * kMr + i);
      c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
    }
  }
  for (int i = 0; i < kMr; i++) {
    float* ci = c + i * ldc;
    if (accumulate) {
      c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(ci));
      c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, c0[i]);
    _mm256_storeu_ps(ci + 8, c1[i]);
  }
}

uint64_t stream_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t out = static_cast<uint64_t>(_mm256_extract_epi64(s, 0)) + static_cast<uint64_t>(_mm256_extract_epi64(s, 1)) +
                 static_cast<uint64_t>(_mm256_extract_epi64(s, 2)) + static_cast<uint64_t>(_mm256_extract_epi64(s, 3));
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
const IsaKernels kTable = {"avx2", quantize_avx2, prep_x_avx2, ternary_avx2, matvec_avx2, gemm_micro_avx2, kMr, kNr, nullptr, nullptr, stream_avx2, nullptr, nullptr};
}
const IsaKernels* const kAvx2Kernels = &kTable;
}  // namespace bd

#else
namespace bd {
const IsaKernels* const kAvx2Kernels = nullptr;
}
#endif
