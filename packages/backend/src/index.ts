export { initBackend, activeBackend, BACKEND_CHOICES } from './backend.ts';
export type { BackendChoice, BackendInfo } from './backend.ts';
export { registerWasmSegmentSum, unsortedSegmentSumRef } from './segment-sum.ts';
