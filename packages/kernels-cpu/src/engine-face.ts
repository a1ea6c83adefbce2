/**
 * `@bitdistill/kernels-cpu/engine`: what the training side uses (the native tfjs engine and wasm kernels of
 * @bitdistill/backend, the trainer's AdamW, the training benchmarks and the fused-op tests of other packages):
 * loading and settings, the fp32 GEMM and its reference, the tensor ops, the fused training ops and the AdamW
 * update. The inference side imports `./runtime` instead.
 */
export { initKernels, nativeStatus, setThreads } from './native.ts';
export { matmulF32, batchMatmulF32 } from './gemm.ts';
export { matmulF32Ref } from './reference.ts';
export {
  unaryF32,
  binaryF32,
  compare,
  broadcastPlan,
  reduceF32,
  castToF32,
  copyStrided32,
  transpose32,
  tile32,
  gatherRows32,
  rmsNormF32,
  rmsNormGradF32,
} from './tensor-ops.ts';
export type { UnaryOp, BinaryOp, CompareOp, ReduceOp } from './tensor-ops.ts';
export {
  normBitLinearF32,
  normBitLinearGradF32,
  gradMatmulF32,
  ropeHeadsF32,
  ternaryStatsF32,
  setGradPrecision,
  bf16GradAvailable,
  type GradPrecision,
} from './fused.ts';
export type { BitLinearNorm } from './fused.ts';
export { bitLinearF32, bitLinearGradF32, swigluF32, swigluGradF32, attentionTrainF32, attentionTrainGradF32, relationKdF32, headLossF32 } from './fused.ts';
export type { HeadLossBlock } from './fused.ts';
export { adamwF32, sumSquaresF32 } from './optim.ts';
