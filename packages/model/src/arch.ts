// The tfjs-free part of @bitdistill/model (import as '@bitdistill/model/arch'): config.json parsing and names.
export { parseDecoderConfig, SUBLN_MODES, SUPPORTED_MODEL_TYPES } from './config.ts';
export type { DecoderConfig, SublnMode, ModelType } from './config.ts';
export { PROJECTIONS, projectionName, projectionShape, sublnName, SUBLN_EPS } from './names.ts';
export type { Projection } from './names.ts';
