// The ternary product driver of ternary_napi.cc, for the runtime's fused decoder layer (decode_napi.cc), which runs
// its prefill products on the same kernels as the op-by-op calls.
#pragma once
#include <stdint.h>

#include "kernels.h"

namespace bd {

struct TernaryCtx {
  const IsaKernels* isa;
  TernaryJob job;
  int64_t tiles;
};

// Runs the ternary product of ctx (w, rows, nblk, tiles, y or yf + factor set) on int8 activations x [batch,
// cols]: a zero-padded copy of x (the kernels read whole 256-column blocks) and its row sums, the AMX layout
// where that path runs, then the tiles on the pool. False when the scratch cannot be allocated.
bool ternary_product(TernaryCtx* ctx, const int8_t* x, int64_t cols, int64_t batch);

}  // namespace bd
