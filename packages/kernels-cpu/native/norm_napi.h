// RMSNorm over rows on the pool (tensor_ops_napi.cc), for the fused ops that normalise their input inside the
// call (fused_napi.cc: BitLinear with its SubLN gain).
#pragma once
#include <stdint.h>

namespace bd {

// y = x * rsqrt(mean(x^2) + eps) * g for each of `rows` rows of `dim`.
void rmsnorm_rows(const float* x, const float* g, float* y, int64_t rows, int64_t dim, float eps);

// Its gradient for dy: dx, and dg summed over rows in a fixed order (per-chunk partial sums, chunk by chunk).
void rmsnorm_grad_rows(const float* dy, const float* x, const float* g, float* dx, float* dg, int64_t rows, int64_t dim, float eps);

}  // namespace bd
