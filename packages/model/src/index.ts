export { Decoder, PROJECTIONS, SUBLN_EPS, projectionName, sublnName } from './decoder.ts';
export type { Projection, CapturedQkv, ForwardOptions, ForwardOutput } from './decoder.ts';
export { parseDecoderConfig, SUBLN_MODES, SUPPORTED_MODEL_TYPES } from './config.ts';
export type { DecoderConfig, SublnMode, ModelType } from './config.ts';
export { denseLinear, matmul2d, rmsNorm, bmm } from './ops.ts';
export type { LinearFn } from './ops.ts';
export { loadModel, saveModel, configJson, copyTokenizerFiles } from './io.ts';
export type { LoadedModel, LoadOptions, SaveOptions } from './io.ts';
export { generateGreedy, sequenceNll } from './generate.ts';
