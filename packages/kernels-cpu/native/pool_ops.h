// Pool drivers of single ops that another translation unit reuses as they are, so that a fused call computes
// exactly what the op-by-op calls compute (same chunking, same kernels): the KV-cache attention of
// tensor_ops_napi.cc and the SwiGLU of fused_napi.cc, for the decoder layer of decode_napi.cc.
#pragma once
#include <stdint.h>

namespace bd {

// Causal attention of T new positions (start .. start+T-1) over a KV cache [Hkv, cap, d] (tensor_ops.h
// attention_f32 / attention_f16kv), split over (token, head) pairs on the pool as attentionF32 / attentionKvF16 do.
struct AttentionShape {
  int64_t T, H, Hkv, d, cap, start;
  float scale;
};
void attention_pool(const AttentionShape& a, const float* q, const float* kc, const float* vc, float* out);
void attention_pool(const AttentionShape& a, const float* q, const uint16_t* kc, const uint16_t* vc, float* out);

// y = silu(g) * u over n elements (tensor_ops.h swiglu_f32), chunked on the pool as swigluF32 is.
void swiglu_pool(const float* g, const float* u, float* y, int64_t n);

}  // namespace bd
