/**
 * The GPU path: tfjs's WebGPU backend (@tensorflow/tfjs-backend-webgpu) on Dawn's Node bindings (the `webgpu`
 * package, whose prebuilt dawn.node ships inside it: no download at install). Both are optional dependencies.
 *
 * Why WebGPU rather than tfjs-node-gpu: the latter downloads libtensorflow 2.9.1 at install and needs CUDA 11.2
 * and cuDNN 8.1 (no kernels for current NVIDIA GPUs); Dawn runs on Vulkan, Metal and D3D12, so NVIDIA, AMD and
 * Apple GPUs alike, and on a CPU-only machine a software Vulkan driver (Mesa's lavapipe) gives a real adapter
 * that CI tests run on (MACHINE.md: Dawn needs Mesa >= 25; bookworm's 22.3.6 is rejected).
 *
 * What this module adds on top of the stock backend:
 * - The adapter is requested here, classified (a software adapter - lavapipe, SwiftShader, WARP - is used only
 *   when `--backend webgpu` asks for it; `auto` skips it) and logged with its limits. The device asks for the
 *   adapter's own buffer limits (WebGPU's defaults are 256 MiB / 128 MiB). `auto` first looks at the adapter
 *   from a child process (~0.1 s): Dawn and the Vulkan driver print to the process's stderr directly (lavapipe:
 *   two "artificially reduced" warnings), and a broken driver can crash or hang its process; the CLI must not
 *   pay either for a GPU it will not use.
 * - Binding limits are enforced: a storage binding over maxStorageBufferBindingSize is a validation error that
 *   Dawn reports asynchronously while the dispatch is dropped (a sum over a 160 MB tensor on lavapipe read back
 *   as 0). Every program's inputs and output are checked before dispatch: DeviceLimitError instead.
 * - Errors the device reports (uncapturederror, device lost) surface as DeviceError at the next read.
 * - A synchronous read (dataSync) of GPU data fails in Node (tfjs reads through an OffscreenCanvas, which Node
 *   lacks): it throws a typed error naming the problem instead of "OffscreenCanvas is not defined". The
 *   pipeline reads GPU tensors with `await data()` only. Small tensors made from host arrays keep their host
 *   copy when uploaded (tfjs itself keeps one after a read): the losses check labels and masks on the host
 *   with dataSync, and a batch's labels may reach the GPU before that (a bench reuses them every step).
 *
 * The project's custom kernels (BitDistillRmsNorm, BitLinear, SwiGLU, attention, relation KD) are not
 * registered for 'webgpu', so every caller takes its op-by-op twin (model/src/ops.ts `fusedKernel`), and
 * tfjs-backend-webgpu has its own UnsortedSegmentSum. No kernels-cpu code runs on a GPU tensor.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { DeviceError, DeviceLimitError, UnsupportedError } from '@bitdistill/core';

export const WEBGPU_NAME = 'webgpu';
const DAWN_PACKAGE: string = 'webgpu';
const TFJS_WEBGPU_PACKAGE = '@tensorflow/tfjs-backend-webgpu';

/** The adapter limits the device requests (the ones tfjs's own registration asks for). */
export const REQUESTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeWorkgroupSizeX',
  'maxComputeInvocationsPerWorkgroup',
] as const;
export type RequestedLimit = (typeof REQUESTED_LIMITS)[number];

/** What was found about the adapter: logged, and part of BackendInfo. */
export interface WebGpuAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (lavapipe, SwiftShader, WARP): used only when asked for explicitly. */
  software: boolean;
  limits: Record<RequestedLimit, number>;
}

// The small part of the WebGPU API used here (the `webgpu` package's types pull in @webgpu/types' globals, and
// the package is optional: the import below is by name, typed by these).
interface GpuAdapterInfoLike {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter?: boolean;
}
interface GpuErrorLike {
  message: string;
}
interface GpuDeviceLike {
  readonly limits: Readonly<Record<string, number>>;
  readonly lost: Promise<{ reason: string; message: string }>;
  addEventListener(type: 'uncapturederror', listener: (event: { error: GpuErrorLike }) => void): void;
}
interface GpuAdapterLike {
  readonly info: GpuAdapterInfoLike;
  readonly limits: Readonly<Record<string, number>>;
  readonly features: { has(name: string): boolean };
  requestDevice(descriptor: { requiredLimits: Record<string, number>; requiredFeatures: string[] }): Promise<GpuDeviceLike>;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<GpuAdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}
interface TfjsWebGpuModule {
  WebGPUBackend: new (device: GpuDeviceLike, adapterInfo: GpuAdapterInfoLike) => tf.KernelBackend;
}
/** Internals of tfjs's WebGPUBackend that the guards below wrap (tfjs-backend-webgpu 4.22). */
interface WebGpuBackendInternals {
  tensorMap: { get(id: tf.DataId): { values: unknown; dtype: tf.DataType; resource?: unknown } | undefined };
  runWebGPUProgram(program: { outputShape: number[]; constructor: { name: string } }, inputs: tf.TensorInfo[], ...rest: unknown[]): tf.TensorInfo;
  readSync(dataId: tf.DataId): unknown;
  read(dataId: tf.DataId): Promise<unknown>;
  uploadToGPU(dataId: tf.DataId): void;
}

/** Host arrays up to this many values keep their host copy when uploaded (256 KiB: labels, masks, norm gains). */
const HOST_COPY_MAX_VALUES = 65536;

/** Lavapipe, SwiftShader, WARP and Dawn's own fallback flag. */
export function isSoftwareAdapter(info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean }): boolean {
  if (info.isFallbackAdapter === true) return true;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return /software|llvmpipe|lavapipe|swiftshader|microsoft basic render|\bwarp\b/.test(text);
}

const require = createRequire(import.meta.url);
let probed: { gpu: GpuLike; adapter: GpuAdapterLike; dawn: DawnModule; info: WebGpuAdapterInfo } | null = null;
let registeredInfo: WebGpuAdapterInfo | null = null;

function adapterInfoOf(adapter: GpuAdapterLike): WebGpuAdapterInfo {
  const i = adapter.info;
  const limits = {} as Record<RequestedLimit, number>;
  for (const k of REQUESTED_LIMITS) limits[k] = adapter.limits[k] ?? 0;
  return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, software: isSoftwareAdapter(i), limits };
}

/**
 * Loads Dawn and requests the high-performance adapter (once per process). Throws when the `webgpu` package is
 * missing or no adapter exists (no GPU driver, or only a Vulkan driver Dawn rejects).
 */
export async function probeWebGpu(): Promise<WebGpuAdapterInfo> {
  if (probed !== null) return probed.info;
  // An ES module (so not require): imported by a name held in a variable, typed by DawnModule.
  const dawn = (await import(DAWN_PACKAGE)) as DawnModule;
  const gpu = dawn.create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (adapter === null) {
    throw new DeviceError('no WebGPU adapter: Dawn found no GPU it can use (no Vulkan, Metal or D3D12 driver, or one it rejects)', {
      hint: 'install the GPU driver; without a GPU, Mesa >= 25 lavapipe (Debian: apt-get install -t bookworm-backports mesa-vulkan-drivers) gives a software adapter',
    });
  }
  probed = { gpu, adapter, dawn, info: adapterInfoOf(adapter) };
  return probed.info;
}

/** What a look at the adapter from a child process found: its description and limits, or why there is none. */
export type AdapterLook = ({ found: true } & WebGpuAdapterInfo) | { found: false; reason: string };

/** Seconds a child process may take to load Dawn and request the adapter (a hung driver is a skipped backend). */
const LOOK_TIMEOUT_S = 30;

/**
 * Requests the adapter in a child process and reports it; never loads Dawn in this process (see the header).
 * Tests use it to decide whether to skip, and `auto` to decide whether WebGPU is worth loading.
 */
export function lookForAdapter(): AdapterLook {
  let url: string;
  try {
    url = pathToFileURL(require.resolve(DAWN_PACKAGE)).href;
  } catch {
    return { found: false, reason: `the optional dependency '${DAWN_PACKAGE}' is not installed` };
  }
  const script = [
    `const { create } = await import(${JSON.stringify(url)});`,
    `const a = await create([]).requestAdapter({ powerPreference: 'high-performance' });`,
    `const i = a === null ? null : a.info;`,
    `const limits = a === null ? null : Object.fromEntries(${JSON.stringify(REQUESTED_LIMITS)}.map((k) => [k, a.limits[k]]));`,
    `process.stdout.write(JSON.stringify(i === null ? null : { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: i.isFallbackAdapter, limits }));`,
  ].join('\n');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: LOOK_TIMEOUT_S * 1000 });
  if (r.error !== undefined) return { found: false, reason: `the adapter probe failed: ${r.error.message}` };
  if (r.status !== 0) {
    const why = r.signal !== null ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
    const last = r.stderr.trim().split('\n').pop() ?? '';
    return { found: false, reason: `the adapter probe ${why}${last !== '' ? `: ${last}` : ''}` };
  }
  const info = JSON.parse(r.stdout) as (GpuAdapterInfoLike & { limits: Record<RequestedLimit, number> }) | null;
  if (info === null) return { found: false, reason: 'no WebGPU adapter: Dawn found no GPU driver it accepts (Vulkan, Metal or D3D12)' };
  const { vendor, architecture, device, description, limits } = info;
  return { found: true, vendor, architecture, device, description, software: isSoftwareAdapter(info), limits };
}

/** Creates the device with the adapter's limits and registers the 'webgpu' tfjs backend on it (once). */
async function registerWebGpu(): Promise<WebGpuAdapterInfo> {
  const p = probed;
  if (p === null) throw new Error('registerWebGpu before probeWebGpu');
  if (registeredInfo !== null) return registeredInfo;
  // tfjs-backend-webgpu reads the WebGPU globals (GPUBufferUsage, ...) and navigator.gpu; importing it while
  // navigator.gpu is unset skips its own registration, which would request a second adapter.
  Object.assign(globalThis, p.dawn.globals);
  const mod = require(TFJS_WEBGPU_PACKAGE) as TfjsWebGpuModule;
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav === undefined) Object.defineProperty(globalThis, 'navigator', { value: { gpu: p.gpu }, configurable: true, writable: true });
  else Object.defineProperty(nav, 'gpu', { value: p.gpu, configurable: true });

  const requiredLimits: Record<string, number> = {};
  for (const k of REQUESTED_LIMITS) requiredLimits[k] = p.info.limits[k];
  const requiredFeatures = p.adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  const device = await p.adapter.requestDevice({ requiredLimits, requiredFeatures });
  const health = watchDevice(device);
  const backend = new mod.WebGPUBackend(device, p.adapter.info);
  guard(backend as unknown as WebGpuBackendInternals, device, health, p.info);
  if (tf.findBackend(WEBGPU_NAME) !== null) tf.removeBackend(WEBGPU_NAME);
  // Priority 0: never tfjs's implicit default; the backend is only ever chosen by name.
  tf.registerBackend(WEBGPU_NAME, () => backend, 0);
  registeredInfo = p.info;
  return p.info;
}

interface DeviceHealth {
  /** The first error the device reported, if any. */
  error: DeviceError | null;
}

function watchDevice(device: GpuDeviceLike): DeviceHealth {
  const health: DeviceHealth = { error: null };
  device.addEventListener('uncapturederror', (event) => {
    health.error ??= new DeviceError(`the WebGPU device reported an error: ${event.error.message.split('\n')[0] ?? ''}`, {
      hint: 'results after it are not trustworthy; rerun with --backend native and report this with --verbose',
    });
  });
  void device.lost.then((info) => {
    health.error ??= new DeviceError(`the WebGPU device was lost (${info.reason}): ${info.message}`, {
      hint: 'the GPU driver reset or ran out of memory; lower optim.batchSize or model.maxSeqLen, or use --backend native',
    });
  });
  return health;
}

const MiB = 2 ** 20;
const fmtBytes = (b: number): string => `${b.toLocaleString('en-US')} bytes (${(b / MiB).toFixed(1)} MiB)`;

/** Wraps the backend instance's dispatch and reads (the class is untouched). */
function guard(b: WebGpuBackendInternals, device: GpuDeviceLike, health: DeviceHealth, info: WebGpuAdapterInfo): void {
  const maxBinding = device.limits['maxStorageBufferBindingSize'] ?? info.limits.maxStorageBufferBindingSize;
  const check = (shape: readonly number[], what: string, program: string): void => {
    // Every dtype the backend stores takes 4 bytes a value (bool as u32).
    const bytes = 4 * tf.util.sizeFromShape(shape as number[]);
    if (bytes <= maxBinding) return;
    throw new DeviceLimitError(
      'maxStorageBufferBindingSize',
      maxBinding,
      bytes,
      `${program}: its ${what} [${shape.join(', ')}] is ${fmtBytes(bytes)}, more than the ${fmtBytes(maxBinding)} one buffer binding may hold on this WebGPU adapter (${info.description})`,
      {
        hint: 'lower optim.batchSize, model.maxSeqLen or optim.lossChunkRows if this is an activation; a weight this large needs a GPU with a larger maxStorageBufferBindingSize, or --backend native',
      },
    );
  };
  const run = b.runWebGPUProgram.bind(b);
  b.runWebGPUProgram = (program, inputs, ...rest) => {
    const name = program.constructor.name;
    check(program.outputShape, 'output', name);
    inputs.forEach((t, i) => check(t.shape, `input ${i}`, name));
    return run(program, inputs, ...rest);
  };
  const upload = b.uploadToGPU.bind(b);
  b.uploadToGPU = (dataId) => {
    const d = b.tensorMap.get(dataId);
    const values = d !== undefined && d.resource == null && ArrayBuffer.isView(d.values) && d.values.byteLength <= 4 * HOST_COPY_MAX_VALUES ? d.values : null;
    upload(dataId);
    if (d !== undefined && values !== null) d.values = values;
  };
  const readSync = b.readSync.bind(b);
  b.readSync = (dataId) => {
    const d = b.tensorMap.get(dataId);
    if (d !== undefined && d.values == null && d.dtype !== 'string' && d.dtype !== 'complex64') {
      throw new UnsupportedError('a synchronous read (dataSync / arraySync) of a tensor held on the WebGPU device: Node has no synchronous GPU readback', {
        hint: 'this is a bug in bitdistill (the pipeline reads GPU tensors with await data()); rerun with --verbose and report the stack, or use --backend native',
      });
    }
    return readSync(dataId);
  };
  const read = b.read.bind(b);
  b.read = async (dataId) => {
    if (health.error !== null) throw health.error;
    const values = await read(dataId);
    // Errors arrive asynchronously: the mapping above is the point where those of earlier dispatches are in.
    if (health.error !== null) throw health.error;
    return values;
  };
}

/**
 * The 'webgpu' backend for initBackend: probes the adapter, refuses a software one unless `explicit`, registers
 * and sets the backend. Returns the adapter's description for BackendInfo.
 */
export async function tryWebGpu(explicit: boolean): Promise<WebGpuAdapterInfo> {
  if (!explicit && probed === null) {
    const look = lookForAdapter();
    if (!look.found) throw new Error(look.reason);
    if (look.software) throw new Error(`software adapter (${look.description}): used only with --backend webgpu`);
  }
  const info = await probeWebGpu();
  if (info.software && !explicit) {
    throw new Error(`software adapter (${info.description}): used only with --backend webgpu`);
  }
  await registerWebGpu();
  if (!(await tf.setBackend(WEBGPU_NAME))) throw new Error('webgpu backend failed to initialise');
  return info;
}
