export { ternaryQuant, int8Quant, bitMatmulInt, bitMatmulIntTwin } from './quantizers.ts';
export { LOWBIT_FORMATS, roundToLowBit, fakeQuantLowBit, lowBitTensorScale, fakeQuantNvfp4 } from './lowbit.ts';
export type { LowBitFormat } from './lowbit.ts';
export { bitLinear, makeBitLinear, prepareStudent, restoreStudent, studentRecord, describeStudent, latentWeightStats } from './student.ts';
export type { BitLinearOptions, PrepareStudentOptions, StudentReport, StudentRecord, LatentWeightStats } from './student.ts';
