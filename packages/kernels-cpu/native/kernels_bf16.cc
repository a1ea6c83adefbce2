// AVX512_BF16 GEMM block (vdpbf16ps) for the BitLinear backward's bf16 precision (fused_napi.cc). Its own file:
// AVX512_BF16 is not implied by the AVX-512 VNNI ISA (Ice Lake has VNNI without it), so the rest of
// kernels_avx512.cc must not be compiled for it. See kernels.h for the rules of these ISA files.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")
#endif

namespace bd {
namespace {

// acc += the bf16 pairs of u . the pair at p broadcast to every lane (fp32 products of bf16 values, exact, summed
// in fp32). Inline asm, as the VNNI kernels' dpbusd: the intrinsic's accumulators get copied and spilled by GCC 12.
inline __m512 dpbf16_bcast(__m512 acc, __m512 u, const uint32_t* p) {
  __asm__("vdpbf16ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*p));
  return acc;
}

void gemm_bf16_block(const GemmBf16Job& j, int64_t rb, int64_t cb) {
  static_assert(kBfMr == 12 && kBfNr == 32, "the register blocking below");
  const uint32_t* a = j.a + rb * j.pairs * kBfMr;
  const uint32_t* b = j.b + cb * j.pairs * kBfNr;
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  __m512 c80 = c00, c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
  for (int64_t p = 0; p < j.pairs; p++, a += kBfMr, b += kBfNr) {
    const __m512 b0 = _mm512_castsi512_ps(_mm512_load_si512(b));
    const __m512 b1 = _mm512_castsi512_ps(_mm512_load_si512(b + 16));
    c00 = dpbf16_bcast(c00, b0, a + 0), c01 = dpbf16_bcast(c01, b1, a + 0);
    c10 = dpbf16_bcast(c10, b0, a + 1), c11 = dpbf16_bcast(c11, b1, a + 1);
    c20 = dpbf16_bcast(c20, b0, a + 2), c21 = dpbf16_bcast(c21, b1, a + 2);
    c30 = dpbf16_bcast(c30, b0, a + 3), c31 = dpbf16_bcast(c31, b1, a + 3);
    c40 = dpbf16_bcast(c40, b0, a + 4), c41 = dpbf16_bcast(c41, b1, a + 4);
    c50 = dpbf16_bcast(c50, b0, a + 5), c51 = dpbf16_bcast(c51, b1, a + 5);
    c60 = dpbf16_bcast(c60, b0, a + 6), c61 = dpbf16_bcast(c61, b1, a + 6);
    c70 = dpbf16_bcast(c70, b0, a + 7), c71 = dpbf16_bcast(c71, b1, a + 7);
    c80 = dpbf16_bcast(c80, b0, a + 8), c81 = dpbf16_bcast(c81, b1, a + 8);
    c90 = dpbf16_bcast(c90, b0, a + 9), c91 = dpbf16_bcast(c91, b1, a + 9);
    ca0 = dpbf16_bcast(ca0, b0, a + 10), ca1 = dpbf16_bcast(ca1, b1, a + 10);
    cb0 = dpbf16_bcast(cb0, b0, a + 11), cb1 = dpbf16_bcast(cb1, b1, a + 11);
  }
  const __m512 acc[kBfMr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                                {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {ca0, ca1}, {cb0, cb1}};
  const int64_t row0 = rb * kBfMr, col0 = cb * kBfNr;
  const __m512 scale = _mm512_set1_ps(j.scale);
  for (int r = 0; r < kBfMr && row0 + r < j.m; r++) {
    for (int h = 0; h < 2; h++) {
      const int64_t col = col0 + 16 * h;
      if (col >= j.n) break;
      const int64_t left = j.n - col;
      const __mmask16 mk = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      float* cp = j.c + (row0 + r) * j.ldc + col;
      const __m512 v = j.scale == 1.0f ? acc[r][h] : _mm512_mul_ps(acc[r][h], scale);
      _mm512_mask_storeu_ps(cp, mk, j.acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, cp), v) : v);
    }
  }
}

void gemm_bf16_avx512(const GemmBf16Job& j, int64_t rb_begin, int64_t rb_end) {
  const int64_t cblocks = (j.n + kBfNr - 1) / kBfNr;
  for (int64_t c0 = 0; c0 < cblocks; c0 += j.l2_blocks) {
    const int64_t c1 = c0 + j.l2_blocks < cblocks ? c0 + j.l2_blocks : cblocks;
    for (int64_t rb = rb_begin; rb < rb_end; rb++)
      for (int64_t cb = c0; cb < c1; cb++) gemm_bf16_block(j, rb, cb);
  }
}

// lanes t of the result: (x[t], x[16 + t]) as one 32-bit pair
inline __m512i interleave_halves(__m512bh x) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, reinterpret_cast<__m512i&>(x));
}

inline __mmask16 lanes_below(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << left) - 1);
}

inline __m512 scaled(const Bf16PackA& j, __m512 v, __m512 s) {
  return j.mode == 1 ? _mm512_mul_ps(v, s) : j.mode == 2 ? _mm512_div_ps(v, s) : v;
}

void pack_a_bf16(const Bf16PackA& j, int64_t rb_begin, int64_t rb_end) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t rb = rb_begin; rb < rb_end; rb++) {
    uint32_t* dst = j.dst + rb * j.pairs * kBfMr;
    if (j.ps == 1) {
      // rows along the destination's short axis: convert 32 inner values of a row, scatter its 16 pairs
      const __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(kBfMr));
      for (int r = 0; r < kBfMr; r++) {
        const int64_t i = rb * kBfMr + r;
        for (int64_t p0 = 0; p0 < j.inner; p0 += 32) {
          const __mmask16 m0 = lanes_below(j.inner - p0), m1 = lanes_below(j.inner - p0 - 16);
          __m512 lo = _mm512_setzero_ps(), hi = lo;
          if (i < j.rows) {
            const float* row = j.src + i * j.rs + p0;
            lo = _mm512_maskz_loadu_ps(m0, row);
            hi = _mm512_maskz_loadu_ps(m1, row + 16);
            if (j.mode != 0) {
              lo = scaled(j, lo, _mm512_mask_loadu_ps(one, m0, j.sv + p0));
              hi = scaled(j, hi, _mm512_mask_loadu_ps(one, m1, j.sv + p0 + 16));
            }
          }
          const __m512bh b = _mm512_cvtne2ps_pbh(hi, lo);
          const int64_t q0 = p0 / 2;
          const __mmask16 mq = lanes_below(j.pairs - q0);
          _mm512_mask_i32scatter_epi32(dst + q0 * kBfMr + r, mq, stride, reinterpret_cast<const __m512i&>(b), 4);
        }
      }
    } else {
      // rows contiguous in the source: one pair of inner positions per step, 12 rows at once
      const int64_t i0 = rb * kBfMr;
      const __mmask16 mr = static_cast<__mmask16>(lanes_below(j.rows - i0) & 0x0fff);
      for (int64_t q = 0; q < j.pairs; q++) {
        const int64_t p = 2 * q;
        __m512 v0 = _mm512_maskz_loadu_ps(mr, j.src + p * j.ps + i0);
        __m512 v1 = p + 1 < j.inner ? _mm512_maskz_loadu_ps(mr, j.src + (p + 1) * j.ps + i0) : _mm512_setzero_ps();
        if (j.mode != 0) {
          v0 = scaled(j, v0, _mm512_set1_ps(j.sv[p]));
          if (p + 1 < j.inner) v1 = scaled(j, v1, _mm512_set1_ps(j.sv[p + 1]));
        }
        _mm512_mask_storeu_epi32(dst + q * kBfMr, 0x0fff, interleave_halves(_mm512_cvtne2ps_pbh(v1, v0)));
      }
    }
  }
}

// B from floats: columns contiguous (cs == 1) take pack_b's pair-of-rows form; inner contiguous (ps == 1, the
// transposed operand) converts 32 inner values of a column and scatters its 16 pairs, as pack_a does for rows.
void pack_b_bf16_floats(const Bf16PackB& j, int64_t cb_begin, int64_t cb_end) {
  for (int64_t cb = cb_begin; cb < cb_end; cb++) {
    uint32_t* dst = j.dst + cb * j.pairs * kBfNr;
    if (j.cs == 1) {
      for (int64_t q = 0; q < j.pairs; q++) {
        const int64_t p = 2 * q;
        for (int h = 0; h < 2; h++) {
          const int64_t c0 = cb * kBfNr + 16 * h;
          const __mmask16 mc = lanes_below(j.cols - c0);
          const __m512 f0 = _mm512_maskz_loadu_ps(mc, j.fsrc + p * j.ps + c0);
          const __m512 f1 = p + 1 < j.inner ? _mm512_maskz_loadu_ps(mc, j.fsrc + (p + 1) * j.ps + c0) : _mm512_setzero_ps();
          _mm512_storeu_si512(dst + q * kBfNr + 16 * h, interleave_halves(_mm512_cvtne2ps_pbh(f1, f0)));
        }
      }
      continue;
    }
    const __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(kBfNr));
    for (int c = 0; c < kBfNr; c++) {
      const int64_t col = cb * kBfNr + c;
      for (int64_t p0 = 0; p0 < j.inner; p0 += 32) {
        const __mmask16 m0 = lanes_below(j.inner - p0), m1 = lanes_below(j.inner - p0 - 16);
        __m512 lo = _mm512_setzero_ps(), hi = lo;
        if (col < j.cols) {
          const float* src = j.fsrc + col * j.cs + p0;
          lo = _mm512_maskz_loadu_ps(m0, src);
          hi = _mm512_maskz_loadu_ps(m1, src + 16);
        }
        const __m512bh b = _mm512_cvtne2ps_pbh(hi, lo);
        const int64_t q0 = p0 / 2;
        _mm512_mask_i32scatter_epi32(dst + q0 * kBfNr + c, lanes_below(j.pairs - q0), stride, reinterpret_cast<const __m512i&>(b), 4);
      }
    }
  }
}

void pack_b_bf16(const Bf16PackB& j, int64_t cb_begin, int64_t cb_end) {
  if (j.fsrc != nullptr) {
    pack_b_bf16_floats(j, cb_begin, cb_end);
    return;
  }
  for (int64_t cb = cb_begin; cb < cb_end; cb++) {
    uint32_t* dst = j.dst + cb * j.pairs * kBfNr;
    for (int64_t q = 0; q < j.pairs; q++) {
      const int64_t p = 2 * q;
      for (int h = 0; h < 2; h++) {
        const int64_t c0 = cb * kBfNr + 16 * h;
        const __mmask16 mc = lanes_below(j.cols - c0);
        const __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mc, j.codes + p * j.cols + c0)));
        const __m512 f1 = p + 1 < j.inner ? _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mc, j.codes + (p + 1) * j.cols + c0)))
                                          : _mm512_setzero_ps();
        _mm512_storeu_si512(dst + q * kBfNr + 16 * h, interleave_halves(_mm512_cvtne2ps_pbh(f1, f0)));
      }
    }
  }
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
const Bf16Kernels kTable = {gemm_bf16_avx512, pack_a_bf16, pack_b_bf16};
}
const Bf16Kernels* const kBf16Avx512 = &kTable;
}  // namespace bd

#else
namespace bd {
const Bf16Kernels* const kBf16Avx512 = nullptr;
}
#endif
