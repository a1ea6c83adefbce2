export { Decoder } from './decoder.ts';
export type { CapturedQkv, ForwardOptions, ForwardOutput, HiddenOutput } from './decoder.ts';
export { denseLinear, matMulT, transposeFlagsFast, rmsNorm, swiglu, fusedKernel, registerFusedGradient } from './ops.ts';
export type { LinearFn } from './ops.ts';
export { loadModel, saveModel, configJson, copyTokenizerFiles } from './io.ts';
export type { LoadedModel, LoadOptions, SaveOptions } from './io.ts';
export { generateGreedy, sequenceNll, lmNll } from './generate.ts';
export { initDecoder } from './init.ts';
export { setFusedOps } from '@bitdistill/core';
