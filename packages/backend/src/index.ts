export { initBackend, activeBackend, BACKEND_CHOICES } from './backend.ts';
export type { BackendChoice, BackendInfo, NativeKernelsInfo } from './backend.ts';
export { setNativeKernels, nativeKernelsEnabled, NATIVE_KERNEL_NAMES, NATIVE_HOSTS } from './native-kernels.ts';
export type { NativeHost } from './native-kernels.ts';
export { registerNativeEngine, enginePoolStats, defaultPoolCapBytes, poolCapFor, ENGINE_NAME } from './engine.ts';
export type { PoolStats } from './engine.ts';
export { registerWasmSegmentSum, unsortedSegmentSumRef } from './segment-sum.ts';
