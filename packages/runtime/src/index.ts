export { TernaryRuntime } from './runtime.ts';
export type { RuntimeInfo, KvCache } from './runtime.ts';
export { loadGgufModel, tokenizerFromGguf } from './gguf.ts';
export type { GgufModel } from './gguf.ts';
