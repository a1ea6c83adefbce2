/**
 * `@bitdistill/kernels-cpu/runtime`: what the inference side uses (the packed-ternary runtime of
 * @bitdistill/runtime, the CLI's eval / generate, the kernel and end-to-end benchmarks): loading and settings,
 * the ternary layout and products, int8 rows, the fp32 products the runtime's dense projections and benchmarks
 * run, memory streaming, the decoder's forward ops and the one-call decoder layer. The training side imports `./engine` instead.
 */
export { initKernels, nativeStatus, availableIsas, setIsa, setThreads, cpuCaches } from './native.ts';
export type { Isa } from './native.ts';
export { repackTernary, ternaryMatMul, ternaryLinear, ternaryStack, ternaryLinearStacked, ternaryLayoutBytes } from './ternary.ts';
export type { TernaryMatrix, TernarySegments } from './ternary.ts';
export { quantizeRowsInt8, dequantizeRow, matvecI8 } from './int8.ts';
export type { Int8RowMatrix } from './int8.ts';
export { matmulF32, matvecF32, streamRead, allocAligned, allocHugePages, HugePageArena } from './gemm.ts';
export { quantizeActivations, rmsNorm, ropeTables, applyRope, attentionCausal, attentionKvF16 } from './ops.ts';
export type { QuantizedActivations } from './ops.ts';
export { swigluF32 } from './fused.ts';
export { decodeLayerWeights, decodeLayer, argmax, DECODE_PROJECTIONS } from './decode.ts';
export type { DecodeLayerSpec, DecodeLayerWeights, DecodeLinear, DecodeStack, DecodeCache, DecodeProjection } from './decode.ts';
