// @bitdistill/arch: what every package knows about the decoder, with no tfjs - config.json parsing, tensor names
// and shapes, and the reference numerics of BitNet b1.58 (round half to even, absmean ternary, int8 absmax).
export { parseDecoderConfig, hfConfigKeys, SUBLN_MODES } from './config.ts';
export type { DecoderConfig, SublnMode, ModelType } from './config.ts';
export { PROJECTIONS, projectionName, parseProjectionWeight, projectionShape, sublnName, expectedTensorShapes, SUBLN_EPS } from './names.ts';
export type { Projection } from './names.ts';
export {
  WEIGHT_QUANT_MODES,
  checkWeightQuantMode,
  roundHalfEven,
  scaleGroups,
  absmeanScale,
  ternaryCode,
  ternaryQuantRef,
  int8AbsmaxRow,
  int8QuantRef,
} from './numerics.ts';
export type { WeightQuantMode } from './numerics.ts';
