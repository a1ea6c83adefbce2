// The package's whole API, for its own tests (test/*.test.ts). Other packages import one of the two narrow entry
// points of package.json: `@bitdistill/kernels-cpu/runtime` (runtime-face.ts, inference) or
// `@bitdistill/kernels-cpu/engine` (engine-face.ts, training).
export { ISAS, initKernels, nativeStatus, availableIsas, setIsa, setThreads, cpuCaches } from './native.ts';
export type { Isa, NativeStatus, InitKernelsOptions, CpuCache } from './native.ts';
export {
  TERNARY_LAYOUT,
  ternaryLayoutBytes,
  repackTernary,
  repackTernaryTs,
  ternaryMatMul,
  ternaryMatVec,
  ternaryLinear,
  ternaryStack,
  ternaryLinearStacked,
  ternaryLinearStackedTs,
} from './ternary.ts';
export type { TernaryMatrix, TernarySegments } from './ternary.ts';
export { matmulF32, batchMatmulF32, broadcastBatch, matvecF32, streamRead, allocAligned, allocHugePages, HugePageArena } from './gemm.ts';
export type { MatMulOptions, BatchMatMulShape, BatchBroadcast } from './gemm.ts';
export {
  quantizeActivations,
  rmsNorm,
  ropeTables,
  applyRope,
  softmax,
  siluGate,
  attentionCausal,
  attentionCausalTs,
  attentionKvF16,
  attentionKvF16Ts,
} from './ops.ts';
export type { QuantizedActivations, RopeTables, AttentionShape } from './ops.ts';
export { adamwF32, adamwF32Ts, sumSquaresF32, sumSquaresF32Ts } from './optim.ts';
export { bitLinearF32, bitLinearGradF32, bitLinearF32Ts, bitLinearGradF32Ts, swigluF32, swigluGradF32, swigluF32Ts, swigluGradF32Ts } from './fused.ts';
export { normBitLinearF32, normBitLinearGradF32, normBitLinearF32Ts, normBitLinearGradF32Ts } from './fused.ts';
export {
  setGradPrecision,
  bf16GradAvailable,
  bitLinearGradBf16Ts,
  roundBf16,
  gradMatmulF32,
  gradMatmulBf16Ts,
  ropeHeadsF32,
  ropeHeadsF32Ts,
  ternaryStatsF32,
  type GradPrecision,
  type RopeHeadsShape,
} from './fused.ts';
export type { BitLinearNorm } from './fused.ts';
export { attentionTrainF32, attentionTrainGradF32, relationKdF32, headLossF32, headLossF32Ts } from './fused.ts';
export type { BitLinearShape, AttentionTrainShape, HeadLossBlock } from './fused.ts';
export type { AdamwStep } from './optim.ts';
export { decodeLayerWeights, decodeLayer, argmax, argmaxTs, DECODE_PROJECTIONS } from './decode.ts';
export type { DecodeLayerSpec, DecodeLayerWeights, DecodeLinear, DecodeStack, DecodeCache, DecodeProjection } from './decode.ts';
export { quantizeRowsInt8, quantizeRowsInt8Ts, dequantizeRow, matvecI8, matvecI8Ts } from './int8.ts';
export type { Int8RowMatrix } from './int8.ts';
export { ternaryMatMulRef, ternaryLinearRef, matmulF32Ref, matvecF32Ref } from './reference.ts';
export {
  UNARY_OPS,
  BINARY_OPS,
  COMPARE_OPS,
  REDUCE_OPS,
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
export type { UnaryOp, BinaryOp, CompareOp, ReduceOp, BroadcastPlan, StridedView } from './tensor-ops.ts';
