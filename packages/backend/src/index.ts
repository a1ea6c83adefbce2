export { initBackend, BACKEND_CHOICES } from './backend.ts';
export type { BackendChoice, BackendInfo, NativeKernelsInfo } from './backend.ts';
export type { NativeHost } from './native-kernels.ts';
export { defaultPoolCapBytes, enginePoolStats } from './engine.ts';
export type { PoolStats } from './engine.ts';
export { lookForAdapter } from './webgpu.ts';
export type { AdapterLook, WebGpuAdapterInfo } from './webgpu.ts';
