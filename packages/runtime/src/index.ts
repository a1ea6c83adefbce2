export { TernaryRuntime, EMBEDDING_MODES, KV_CACHE_MODES } from './runtime.ts';
export type { RuntimeInfo, RuntimeOptions, EmbeddingMode, KvCache, KvCacheMode } from './runtime.ts';
export { tokenizerFromGguf } from './gguf.ts';
export type { GgufModel } from './gguf.ts';
export { kernelsPredictor } from './predictor.ts';
