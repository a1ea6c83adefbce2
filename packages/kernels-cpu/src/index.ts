export { ISAS, initKernels, nativeStatus, availableIsas, setIsa, setThreads } from './native.ts';
export type { Isa, NativeStatus, InitKernelsOptions } from './native.ts';
export {
  TERNARY_LAYOUT,
  ternaryLayoutBytes,
  repackTernary,
  repackTernaryTs,
  ternaryMatMul,
  ternaryMatVec,
  ternaryLinear,
} from './ternary.ts';
export type { TernaryMatrix } from './ternary.ts';
export { matmulF32, batchMatmulF32, broadcastBatch, matvecF32, streamRead, allocAligned } from './gemm.ts';
export type { MatMulOptions, BatchMatMulShape, BatchBroadcast } from './gemm.ts';
export { quantizeActivations, rmsNorm, ropeTables, applyRope, softmax, siluGate, roundHalfEven } from './ops.ts';
export type { QuantizedActivations, RopeTables } from './ops.ts';
export { ternaryMatMulRef, ternaryLinearRef, matmulF32Ref, matvecF32Ref } from './reference.ts';
