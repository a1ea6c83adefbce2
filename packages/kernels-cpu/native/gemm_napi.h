// The blocked fp32 GEMM driver of gemm_napi.cc, for the other translation units that run products on it (the
// fused training ops: BitLinear, attention, relation KD).
#pragma once
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

namespace bd {

// fp32 GEMM: C[m, n] = A[m, k] @ B[k, n] with A(i, p) = a[i * sai + p * sap], B(p, j) = b[p * sbp + j * sbj]
// (so a transpose is only a change of strides), C row-major with row stride ldc. Goto/BLIS blocking:
// a KC x NC panel of B and an MC x KC block of A are packed into the micro-kernel's order (zero padded to
// whole micro-tiles), then MR x NR micro-tiles of C are computed from them.
struct GemmView {
  const float* a;
  int64_t sai, sap;
  const float* b;
  int64_t sbp, sbj;
  float* c;
  int64_t ldc;
  int64_t m, n, k;
  // C += A @ B instead of C = A @ B (a gradient summed over row chunks in place).
  bool acc = false;
};

// One product on the calling thread (gemm_serial) or split across the pool (gemm_parallel).
void gemm_serial(const IsaKernels& K, const GemmView& g);
void gemm_parallel(const IsaKernels* isa, const GemmView& g);

// The arguments the gemm*F32 Node-API functions start with, (a, b, c, m, k, n, transA, transB), as a GemmView of
// matrix 0 (A is [m, k], or [k, m] with transA; B [k, n], or [n, k]; C [m, n]) and the three arrays' lengths;
// false with a JavaScript error thrown. Sizes are the caller's to check.
bool get_gemm_args(napi_env env, napi_value* argv, GemmView* g, size_t* al, size_t* bl, size_t* cl);

}  // namespace bd
