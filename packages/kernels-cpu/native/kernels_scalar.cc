// Portable kernels: plain loops, the fallback on any CPU and the native twin of the TypeScript reference.
#include <math.h>

#include "kernels.h"

namespace bd {
namespace {

float quantize_scalar(const float* x, int64_t n, int8_t* q) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float a = fabsf(x[i]);
    m = a > m ? a : m;
  }
  const float s = absmax_scale(m);
  for (int64_t i = 0; i < n; i++) {
    const float r = nearbyintf(x[i] * s);  // round half to even in the default rounding mode
    q[i] = static_cast<int8_t>(r > 127.0f ? 127.0f : (r < -128.0f ? -128.0f : r));
  }
  return s;
}

int32_t prep_x_scalar(const int8_t* src, int64_t n, int8_t* dst, int64_t padded) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; i++) {
    s += src[i];
    dst[i] = src[i];
  }
  for (int64_t i = n; i < padded; i++) dst[i] = 0;
  return s;
}

void ternary_scalar(const TernaryJob& j, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; t++) {
    const uint8_t* tile = j.w + t * j.nblk * kTileBlockBytes;
    for (int64_t b = 0; b < j.batch; b++) {
      const int8_t* x = j.x + b * j.nblk * kBlockCols;
      for (int r = 0; r < kTileRows; r++) {
        // One int32 lane per byte position: a loop shape compilers vectorise (SSE2, NEON).
        int32_t lane[kBlockBytes] = {};
        for (int64_t k = 0; k < j.nblk; k++) {
          const uint8_t* w = tile + (k * kTileRows + r) * kBlockBytes;
          const int8_t* xb = x + k * kBlockCols;
          for (int i = 0; i < kBlockBytes; i++) {
            const int32_t byte = w[i];
            lane[i] += (byte & 3) * xb[i] + ((byte >> 2) & 3) * xb[i + 64] + ((byte >> 4) & 3) * xb[i + 128] +
                       (byte >> 6) * xb[i + 192];
          }
        }
        int32_t acc = 0;
        for (int i = 0; i < kBlockBytes; i++) acc += lane[i];
        ternary_store(j, t * kTileRows + r, b, acc);
      }
    }
  }
}

void matvec_scalar(const MatvecJob& j, int64_t r0, int64_t r1) {
  for (int64_t b = 0; b < j.batch; b++) {
    const float* x = j.x + b * j.cols;
    for (int64_t r = r0; r < r1; r++) {
      const float* w = j.w + r * j.cols;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t c = 0;
      for (; c + 8 <= j.cols; c += 8) {
        for (int u = 0; u < 8; u++) acc[u] += w[c + u] * x[c + u];
      }
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; c < j.cols; c++) s += w[c] * x[c];
      j.y[b * j.rows + r] = s;
    }
  }
}

constexpr int kMr = 4;
constexpr int kNr = 8;

void gemm_micro_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int accumulate) {
  float acc[kMr][kNr] = {};
  for (int64_t k = 0; k < kc; k++) {
    for (int i = 0; i < kMr; i++) {
      const float av = a[k * kMr + i];
      for (int n = 0; n < kNr; n++) acc[i][n] += av * b[k * kNr + n];
    }
  }
  for (int i = 0; i < kMr; i++) {
    for (int n = 0; n < kNr; n++) c[i * ldc + n] = accumulate ? c[i * ldc + n] + acc[i][n] : acc[i][n];
  }
}

uint64_t stream_scalar(const uint8_t* p, size_t n) {
  uint64_t acc[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int u = 0; u < 4; u++) {
      uint64_t v;
      __builtin_memcpy(&v, p + i + 8 * u, 8);
      acc[u] += v;
    }
  }
  return acc[0] + acc[1] + acc[2] + acc[3] + stream_tail(p + i, n - i);
}

const IsaKernels kTable = {"scalar", quantize_scalar, prep_x_scalar, ternary_scalar, matvec_scalar, gemm_micro_scalar, kMr, kNr, nullptr, nullptr, stream_scalar, nullptr, nullptr};

}  // namespace

const IsaKernels* const kScalarKernels = &kTable;

}  // namespace bd
