// The Node-API module bitdistill_kernels: Init picks the ISA and starts the pool once per process (isa.cc), then
// each translation unit defines its functions on the exports object:
//   isa.cc              info, setIsa, setThreads
//   gemm_napi.cc        gemmF32, gemmBatchF32, matvecF32, streamRead, misalignment, adviseHugePages
//   ternary_napi.cc     repackTernary, ternaryMatMul, quantizeActivations, matvecI8F32, quantizeRowsI8
//   tensor_ops_napi.cc  binaryF32, compare, unaryF32, castToF32, reduceF32, copyStrided32, gatherRows32,
//                       rmsNormF32, rmsNormGradF32, adamwF32, attentionF32
//   fused_napi.cc       bitLinearF32, bitLinearGradF32, swigluF32, attentionTrainF32, attentionTrainGradF32,
//                       relationKdF32
//   decode_napi.cc      decodeLayerInit, decodeLayer, argmaxF32
// All of them are compiled for the baseline ISA; the SIMD code is in kernels_<isa>.cc behind the IsaKernels tables
// (kernels.h) and in tensor_ops.cc.
#include <node_api.h>

#include "isa.h"
#include "napi_util.h"

namespace bd {
namespace {

napi_value Init(napi_env env, napi_value exports) {
  init_dispatch();
  register_isa(env, exports);
  register_gemm(env, exports);
  register_ternary(env, exports);
  register_tensor_ops(env, exports);
  register_fused(env, exports);
  register_decode(env, exports);
  return exports;
}

}  // namespace
}  // namespace bd

NAPI_MODULE_INIT() { return bd::Init(env, exports); }
