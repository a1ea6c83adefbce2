/**
 * Chooses and initialises the tfjs backend. `auto` prefers tfjs-node-gpu (an optional dependency that usually
 * cannot install: its install script downloads libtensorflow), then WebGPU on a hardware GPU (webgpu.ts: Dawn's
 * Node bindings; a software adapter such as lavapipe only with `--backend webgpu`), then tfjs-node, then the
 * native CPU engine, then wasm (SIMD, works offline), then the pure-JS cpu backend. Only the CLI (or a test)
 * calls this; libraries use whatever is active.
 *
 * `native` is the default CPU engine: a tfjs backend of our own (registered as 'native') whose tensors are
 * ordinary TypedArrays, the storage of tfjs's cpu backend, so a 0.6B model's weights, AdamW moments and teacher
 * (~10 GB) fit where wasm32's 4 GiB heap cannot; the kernels that dominate training (BatchMatMul, broadcast
 * elementwise ops, reductions, transposes, gather and its gradient, RmsNorm...) are the native ones of
 * @bitdistill/kernels-cpu (native-kernels.ts), every other op is tfjs's cpu kernel. Why a backend of our own
 * rather than replacing the `cpu` backend's kernels in place: `--backend cpu` stays stock tfjs (the reference
 * the engine is tested against) and both can live in one process. It needs the addon: without it `auto` skips
 * to wasm and says so.
 *
 * `wasm` stays selectable and comes accelerated the same way (the native kernels read and write its heap).
 * With BITDISTILL_NATIVE=0 (the benchmark's stock baseline) it runs stock wasm and the logger is told once.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, silentLogger, type Logger } from '@bitdistill/core';
import { BACKEND_CHOICES, type BackendChoice } from '@bitdistill/config';
import { nativeStatus } from '@bitdistill/kernels-cpu/engine';
import { NATIVE_KERNEL_NAMES, setNativeKernels } from './native-kernels.ts';
import { registerNativeEngine } from './engine.ts';
import { registerWasmSegmentSum } from './segment-sum.ts';
import { tryWebGpu, type WebGpuAdapterInfo } from './webgpu.ts';

export { BACKEND_CHOICES, type BackendChoice };

export interface BackendInfo {
  /** tfjs backend name now active: 'tensorflow' | 'webgpu' | 'native' | 'wasm' | 'cpu'. */
  name: string;
  /** Which package provided it. */
  provider: string;
  /** Why each better candidate was skipped (auto only). */
  skipped: { provider: string; reason: string }[];
  /** native and wasm (else null): whether the native kernels of @bitdistill/kernels-cpu back it, or why not. */
  nativeKernels: NativeKernelsInfo | null;
  /** webgpu only (else null): the adapter (vendor, architecture, description, software or not) and its limits. */
  webgpu: WebGpuAdapterInfo | null;
}

export interface NativeKernelsInfo {
  active: boolean;
  /** ISA path of the addon ('avx512vnni', 'avx2', 'scalar'), or 'none'. */
  isa: string;
  threads: number;
  /** The tfjs kernels replaced. */
  kernels: readonly string[];
  /** Why they are not active. */
  reason?: string;
}

const WASM_PROVIDER = '@tensorflow/tfjs-backend-wasm';
const NATIVE_PROVIDER = `${WASM_PROVIDER} + @bitdistill/kernels-cpu`;
const ENGINE_PROVIDER = '@bitdistill/backend native engine (tfjs cpu storage + @bitdistill/kernels-cpu)';
const WEBGPU_PROVIDER = '@tensorflow/tfjs-backend-webgpu + webgpu (Dawn)';

const require = createRequire(import.meta.url);
let active: BackendInfo | null = null;
/** The choice `active` was set up for: 'auto' reuses only an automatic pick, not an explicit 'cpu' before it. */
let activeChoice: BackendChoice | null = null;

function errorSummary(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') return 'not installed';
    return e.message.split('\n')[0] ?? e.message;
  }
  return String(e);
}

async function tryTensorflow(pkg: string): Promise<void> {
  // tfjs-node registers the 'tensorflow' backend as a side effect of being loaded.
  require(pkg);
  if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but backend 'tensorflow' failed to initialise`);
}

let nativeWarned = false;

/** Stock wasm plus the native kernels when the addon loads; says once through the logger when it does not. */
async function tryWasm(logger: Logger): Promise<NativeKernelsInfo> {
  await import('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend failed to initialise');
  registerWasmSegmentSum();
  const status = nativeStatus();
  if (status.native && setNativeKernels(true)) {
    return { active: true, isa: status.isa, threads: status.threads, kernels: NATIVE_KERNEL_NAMES };
  }
  const reason = status.reason ?? 'unknown';
  if (!nativeWarned) {
    nativeWarned = true;
    logger.warn({ reason }, `native kernels unavailable (${reason}): running stock tfjs wasm (single-threaded, much slower)`);
  }
  return { active: false, isa: 'none', threads: 1, kernels: [], reason };
}

/** The native engine: needs the addon (stock cpu kernels alone would be ~1 GFLOP/s). */
async function tryNative(): Promise<NativeKernelsInfo> {
  const status = nativeStatus();
  if (!status.native) throw new Error(`native kernels unavailable (${status.reason ?? 'unknown'})`);
  if (process.env['BITDISTILL_NATIVE'] === '0') throw new Error('BITDISTILL_NATIVE=0');
  registerNativeEngine();
  if (!(await tf.setBackend('native'))) throw new Error('native engine failed to initialise');
  if (!setNativeKernels(true, 'native')) throw new Error('native kernels could not be registered');
  return { active: true, isa: status.isa, threads: status.threads, kernels: NATIVE_KERNEL_NAMES };
}

async function tryCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend failed to initialise');
}

/** Initialise the backend once per process; later calls with the same choice return the same info. */
export async function initBackend(choice: BackendChoice = 'auto', logger: Logger = silentLogger): Promise<BackendInfo> {
  if (!(BACKEND_CHOICES as readonly string[]).includes(choice)) {
    throw new ArgumentError(`unknown backend '${String(choice)}'`, { hint: `use one of ${BACKEND_CHOICES.join(', ')}` });
  }
  tf.enableProdMode();
  let adapter: WebGpuAdapterInfo | null = null;
  const candidates: { provider: string; name: string; init: () => Promise<NativeKernelsInfo | void> }[] = [];
  if (choice === 'auto' || choice === 'tensorflow') {
    candidates.push({ provider: '@tensorflow/tfjs-node-gpu', name: 'tensorflow', init: () => tryTensorflow('@tensorflow/tfjs-node-gpu') });
  }
  if (choice === 'auto' || choice === 'webgpu') {
    candidates.push({ provider: WEBGPU_PROVIDER, name: 'webgpu', init: async () => void (adapter = await tryWebGpu(choice === 'webgpu')) });
  }
  if (choice === 'auto' || choice === 'tensorflow') {
    candidates.push({ provider: '@tensorflow/tfjs-node', name: 'tensorflow', init: () => tryTensorflow('@tensorflow/tfjs-node') });
  }
  if (choice === 'auto' || choice === 'native') candidates.push({ provider: ENGINE_PROVIDER, name: 'native', init: tryNative });
  if (choice === 'auto' || choice === 'wasm') candidates.push({ provider: WASM_PROVIDER, name: 'wasm', init: () => tryWasm(logger) });
  if (choice === 'auto' || choice === 'cpu') candidates.push({ provider: '@tensorflow/tfjs-backend-cpu', name: 'cpu', init: tryCpu });

  // Same choice again: the cached info, unless another backend was set meanwhile (then set it up again).
  if (active !== null && (active.name === choice || (choice === 'auto' && activeChoice === 'auto')) && tf.getBackend() === active.name) return active;

  const skipped: BackendInfo['skipped'] = [];
  for (const c of candidates) {
    try {
      const native = (await c.init()) ?? null;
      const provider = c.name === 'wasm' && native?.active === true ? NATIVE_PROVIDER : c.provider;
      const gpu: WebGpuAdapterInfo | null = c.name === 'webgpu' ? adapter : null;
      active = { name: c.name, provider, skipped, nativeKernels: native, webgpu: gpu };
      activeChoice = choice;
      for (const s of skipped) logger.debug({ provider: s.provider, reason: s.reason }, 'backend candidate skipped');
      logger.info(
        {
          backend: c.name,
          provider,
          ...(native?.active === true ? { isa: native.isa, threads: native.threads } : {}),
          ...(gpu !== null ? { adapter: gpu } : {}),
          skipped: skipped.map((s) => `${s.provider}: ${s.reason}`),
        },
        `using tfjs backend '${c.name}'`,
      );
      return active;
    } catch (e) {
      skipped.push({ provider: c.provider, reason: errorSummary(e) });
    }
  }
  throw new ArgumentError(`no tfjs backend for --backend ${choice} could be initialised: ${skipped.map((s) => `${s.provider} (${s.reason})`).join('; ')}`, {
    hint:
      choice === 'tensorflow'
        ? 'tfjs-node needs libtensorflow, which cannot be downloaded here; use --backend wasm'
        : choice === 'webgpu'
          ? 'WebGPU needs a GPU driver Dawn accepts (Vulkan, Metal or D3D12; without a GPU: Mesa >= 25 lavapipe, see README "WebGPU"); or use --backend native'
          : 'reinstall with `npm install`',
  });
}

export function activeBackend(): BackendInfo | null {
  return active;
}
