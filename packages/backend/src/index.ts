export { initBackend, activeBackend, BACKEND_CHOICES } from './backend.ts';
export type { BackendChoice, BackendInfo, NativeKernelsInfo } from './backend.ts';
export { setNativeKernels, nativeKernelsEnabled, NATIVE_KERNEL_NAMES } from './native-kernels.ts';
export { registerWasmSegmentSum, unsortedSegmentSumRef } from './segment-sum.ts';
