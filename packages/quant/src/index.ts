export { ternaryQuant, int8Quant, bitMatmulInt, bitMatmulIntTwin } from './quantizers.ts';
export { ternaryQuantRef, int8QuantRef, roundHalfEven, scaleGroups, WEIGHT_QUANT_MODES, LOWBIT_FORMATS, roundToLowBit, fakeQuantLowBit, lowBitTensorScale, fakeQuantNvfp4 } from './reference.ts';
export type { WeightQuantMode, LowBitFormat } from './reference.ts';
export { bitLinear, makeBitLinear, prepareStudent, restoreStudent, studentRecord, describeStudent, latentWeightStats } from './student.ts';
export type { BitLinearOptions, PrepareStudentOptions, StudentReport, StudentRecord, LatentWeightStats } from './student.ts';
