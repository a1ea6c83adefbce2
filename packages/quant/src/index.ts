export { ternaryQuant, int8Quant, bitMatmulInt } from './quantizers.ts';
export type { LowBitFormat } from './lowbit.ts';
export { bitLinear, prepareStudent, restoreStudent, describeStudent, latentWeightStats } from './student.ts';
export type { BitLinearOptions, PrepareStudentOptions, StudentReport, StudentRecord, LatentWeightStats } from './student.ts';
export { GEMM_FORMATS, lowBitLinear, applyLowBitGemm, fakeQuantGemmOperand } from './lowbit-gemm.ts';
export type { GemmFormat } from './lowbit-gemm.ts';
export { quantizeDecoder } from './ptq-model.ts';
export type { ProjectionPtq } from './ptq-model.ts';
