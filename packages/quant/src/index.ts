export { ternaryQuant, int8Quant, bitMatmulInt, bitMatmulIntTwin } from './quantizers.ts';
export { ternaryQuantRef, int8QuantRef, roundHalfEven, scaleGroups, WEIGHT_QUANT_MODES } from './reference.ts';
export type { WeightQuantMode } from './reference.ts';
export { bitLinear, makeBitLinear, prepareStudent, restoreStudent, studentRecord, describeStudent, latentWeightStats } from './student.ts';
export type { BitLinearOptions, PrepareStudentOptions, StudentReport, StudentRecord, LatentWeightStats } from './student.ts';
