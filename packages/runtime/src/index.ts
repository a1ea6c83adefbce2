export { TernaryRuntime } from './runtime.ts';
export type { RuntimeInfo, KvCache } from './runtime.ts';
