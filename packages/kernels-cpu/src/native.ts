/**
 * Loads the Node-API addon (built by node-gyp during `npm install`, see scripts/build.mjs) and holds the
 * package-wide kernel settings: which ISA path runs and how many threads. When the addon is missing or does
 * not load, every kernel runs its TypeScript twin and `initKernels` says so once through the logger.
 *
 * Environment: BITDISTILL_NATIVE=0 disables the addon; BITDISTILL_ISA=scalar|avx2|avx512vnni|amx forces an ISA
 * path (at most the best one this CPU has); BITDISTILL_THREADS=N sets the pool size; BITDISTILL_HUGE_PAGES=0 keeps
 * weights off transparent huge pages (allocHugePages in gemm.ts).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ArgumentError, BitDistillError, UnsupportedError, silentLogger, type Logger } from '@bitdistill/core';

/** The native code paths, lowest first. `scalar` is portable C++, the others need the named x86 features. */
export const ISAS = ['scalar', 'avx2', 'avx512vnni', 'amx'] as const;
export type Isa = (typeof ISAS)[number];

export interface NativeStatus {
  /** true when the addon is loaded and the kernels run natively. */
  native: boolean;
  /** The ISA path in use, or 'typescript' without the addon. */
  isa: Isa | 'typescript';
  /** Size of the thread pool (1 without the addon). */
  threads: number;
  /** Why the addon is not in use. */
  reason?: string;
}

/** One data or unified cache level as CPUID describes it (leaf 4 on Intel, 0x8000001D on AMD). */
export interface CpuCache {
  level: number;
  type: 'data' | 'unified';
  bytes: number;
  /** Logical processors sharing one instance of this cache (CPUID's maximum, not the count online; 0 unknown). */
  sharedBy: number;
  /** 'deterministic' (leaf 4 / 0x8000001D, per cache instance), or AMD's legacy leaves: '0x80000006' (the L3 size,
   * which under a VM can be the whole host package's; the L2 too where the deterministic leaf is missing) and
   * '0x80000005' (L1D, likewise). */
  leaf: 'deterministic' | '0x80000005' | '0x80000006';
}

/** What the addon exports (registered in native/addon.cc); the wrappers in this package check arguments first. */
export interface NativeAddon {
  info(): { isa: string; available: string[]; threads: number; cpus: number; caches: CpuCache[]; bf16: boolean };
  setBitLinearGradPrecision(bf16: boolean): boolean;
  setIsa(name: string): boolean;
  setThreads(n: number): number;
  misalignment(bytes: Uint8Array): number;
  /** offset of the first 2 MiB boundary in bytes; the whole 2 MiB pages from there are advised MADV_HUGEPAGE */
  adviseHugePages(bytes: Uint8Array): number;
  repackTernary(hf: Uint8Array, out: number, inF: number, dst: Uint8Array): number;
  ternaryMatMul(w: Uint8Array, rows: number, cols: number, x: Int8Array, batch: number, y: Int32Array): void;
  ternaryMatMul(
    w: Uint8Array,
    rows: number,
    cols: number,
    x: Int8Array,
    batch: number,
    y: Float32Array,
    actScale: Float32Array,
    /** one scale, or one per row segment with segmentEnds (ternaryLinearStacked) */
    weightScale: number | Float64Array,
    float32Factor?: boolean,
    segmentEnds?: Int32Array,
  ): void;
  /** -1, or the first row holding NaN or infinity */
  quantizeRowsI8(w: Float32Array, q: Int8Array, scale: Float32Array, rows: number, cols: number): number;
  matvecI8F32(w: Int8Array, wscale: Float32Array, x: Float32Array, y: Float32Array, rows: number, cols: number, batch: number): void;
  attentionF32(
    q: Float32Array,
    kc: Float32Array,
    vc: Float32Array,
    out: Float32Array,
    T: number,
    H: number,
    Hkv: number,
    d: number,
    cap: number,
    start: number,
    scale: number,
  ): void;
  attentionKvF16(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    kc: Uint16Array,
    vc: Uint16Array,
    out: Float32Array,
    T: number,
    H: number,
    Hkv: number,
    d: number,
    cap: number,
    start: number,
    scale: number,
  ): void;
  quantizeActivations(x: Float32Array, rows: number, dim: number, q: Int8Array, scale: Float32Array): void;
  matvecF32(w: Float32Array, x: Float32Array, y: Float32Array, rows: number, cols: number, batch: number): void;
  gemmF32(a: Float32Array, b: Float32Array, c: Float32Array, m: number, k: number, n: number, transA: boolean, transB: boolean): void;
  gemmBatchF32(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
    aIndex: Int32Array,
    bIndex: Int32Array,
  ): void;
  streamRead(bytes: Uint8Array, streams?: number): number;
  binaryF32(op: number, a: Float32Array, b: Float32Array, y: Float32Array, shape: Int32Array, aStrides: Int32Array, bStrides: Int32Array): void;
  compare(
    op: number,
    isInt32: boolean,
    a: Float32Array | Int32Array,
    b: Float32Array | Int32Array,
    y: Uint8Array,
    shape: Int32Array,
    aStrides: Int32Array,
    bStrides: Int32Array,
  ): void;
  unaryF32(op: number, x: Float32Array, y: Float32Array, lo: number, hi: number): void;
  adamwF32(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, hyper: Float64Array): void;
  sumSquaresF32(x: Float32Array): number;
  castToF32(x: Uint8Array | Int32Array, y: Float32Array): void;
  reduceF32(op: number, x: Float32Array, y: Float32Array, outer: number, r: number, inner: number): void;
  copyStrided32(
    src: Float32Array,
    srcOffset: number,
    srcStrides: Int32Array,
    dst: Float32Array,
    dstOffset: number,
    dstStrides: Int32Array,
    shape: Int32Array,
  ): void;
  gatherRows32(x: Float32Array, rowLen: number, idx: Int32Array, y: Float32Array): number;
  rmsNormF32(x: Float32Array, gain: Float32Array, dim: number, eps: number, y: Float32Array): void;
  rmsNormGradF32(x: Float32Array, gain: Float32Array, dim: number, eps: number, dy: Float32Array, dx: Float32Array, dgain: Float32Array): void;
  bitLinearF32(x: Float32Array, w: Float32Array, m: number, k: number, n: number, perRow: boolean, y: Float32Array): void;
  bitLinearGradF32(
    x: Float32Array,
    w: Float32Array,
    m: number,
    k: number,
    n: number,
    perRow: boolean,
    dy: Float32Array,
    dx: Float32Array,
    dw: Float32Array,
  ): void;
  attentionTrainF32(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    B: number,
    T: number,
    H: number,
    Hkv: number,
    d: number,
    scale: number,
    y: Float32Array,
  ): void;
  attentionTrainGradF32(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    B: number,
    T: number,
    H: number,
    Hkv: number,
    d: number,
    scale: number,
    dy: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
  ): void;
  relationKdF32(
    t: Float32Array,
    tH: number,
    td: number,
    s: Float32Array,
    sH: number,
    sd: number,
    B: number,
    T: number,
    R: number,
    cosine: boolean,
    dx: Float32Array | null,
  ): number;
  normBitLinearF32(x: Float32Array, gain: Float32Array, eps: number, w: Float32Array, m: number, k: number, n: number, perRow: boolean, y: Float32Array): void;
  normBitLinearGradF32(
    x: Float32Array,
    gain: Float32Array,
    eps: number,
    w: Float32Array,
    m: number,
    k: number,
    n: number,
    perRow: boolean,
    dy: Float32Array,
    dx: Float32Array,
    dgain: Float32Array,
    dw: Float32Array,
  ): void;
  gradMatmulF32(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
    accumulate: boolean,
  ): void;
  ropeHeadsF32(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    B: number,
    T: number,
    H: number,
    d: number,
    rope: boolean,
    backward: boolean,
    y: Float32Array,
  ): void;
  ternaryStatsF32(w: Float32Array, d: Float32Array, groupLen: number): [number, number, number, number];
  headLossF32(
    zs: Float32Array,
    zt: Float32Array | null,
    r: number,
    V: number,
    labels: Int32Array | null,
    ceMask: Float32Array | null,
    kdMask: Float32Array | null,
    ceGrad: number,
    kdGrad: number,
    tau: number,
    g: Float32Array | null,
    sums: Float64Array,
  ): void;
  /** (g, u, y): forward; (g, u, dy, dg, du): gradient. */
  swigluF32(g: Float32Array, u: Float32Array, y: Float32Array, dg?: Float32Array, du?: Float32Array): void;
  /** A decoder layer's weights (decode.ts): an opaque handle holding the arrays' data pointers. */
  decodeLayerInit(
    dims: Float64Array,
    norms: (Float32Array | null)[],
    proj: (Uint8Array | Float32Array | null)[][],
    scales: Float64Array,
    stacks: ((Uint8Array | Int32Array | Float64Array)[] | null)[],
  ): unknown;
  argmaxF32(x: Float32Array): number;
  decodeLayer(
    layer: unknown,
    x: Float32Array,
    T: number,
    kc: Float32Array | Uint16Array,
    vc: Float32Array | Uint16Array,
    cap: number,
    start: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void;
}

/** The addon, found from the package's own folder (so that a bundle of this module finds it too). */
function addonPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@bitdistill/kernels-cpu/package.json')), 'build', 'Release', 'bitdistill_kernels.node');
}
const ADDON_FUNCTIONS = [
  'info',
  'setIsa',
  'setThreads',
  'misalignment',
  'adviseHugePages',
  'repackTernary',
  'ternaryMatMul',
  'quantizeActivations',
  'matvecF32',
  'gemmF32',
  'gemmBatchF32',
  'streamRead',
  'binaryF32',
  'compare',
  'unaryF32',
  'adamwF32',
  'sumSquaresF32',
  'castToF32',
  'reduceF32',
  'copyStrided32',
  'gatherRows32',
  'rmsNormF32',
  'rmsNormGradF32',
  'matvecI8F32',
  'attentionF32',
  'attentionKvF16',
  'quantizeRowsI8',
  'bitLinearF32',
  'bitLinearGradF32',
  'swigluF32',
  'attentionTrainF32',
  'attentionTrainGradF32',
  'relationKdF32',
  'headLossF32',
  'normBitLinearF32',
  'normBitLinearGradF32',
  'gradMatmulF32',
  'ropeHeadsF32',
  'ternaryStatsF32',
  'setBitLinearGradPrecision',
  'decodeLayerInit',
  'decodeLayer',
  'argmaxF32',
] as const;

interface State {
  addon: NativeAddon | null;
  reason: string | undefined;
  /** A non-fatal note from the environment settings (e.g. a forced ISA this CPU lacks). */
  envNote: string | undefined;
  reported: boolean;
}

let state: State | undefined;

function isIsa(s: string): s is Isa {
  return (ISAS as readonly string[]).includes(s);
}

function loadAddon(): { addon: NativeAddon | null; reason?: string } {
  if (process.env['BITDISTILL_NATIVE'] === '0') return { addon: null, reason: 'disabled by BITDISTILL_NATIVE=0' };
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)(addonPath());
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { addon: null, reason: `native addon not loadable (${msg}); rebuild with \`npm install\` or \`npm run build -w @bitdistill/kernels-cpu\`` };
  }
  const missing = ADDON_FUNCTIONS.filter((f) => typeof (mod as Record<string, unknown> | null)?.[f] !== 'function');
  if (missing.length > 0) return { addon: null, reason: `native addon is stale (missing ${missing.join(', ')}); rebuild it` };
  return { addon: withTypedErrors(mod as NativeAddon) };
}

/**
 * The addon's checks throw plain errors carrying a `code` (E_ARGUMENT: sizes that do not fit the arrays; E_MEMORY:
 * scratch that cannot be had; E_IO). Each exported function is wrapped so those reach callers as the project's
 * typed errors, naming the kernel.
 */
function withTypedErrors(addon: NativeAddon): NativeAddon {
  const wrapped: Record<string, unknown> = {};
  for (const name of ADDON_FUNCTIONS) {
    const fn = addon[name] as (...args: unknown[]) => unknown;
    wrapped[name] = (...args: unknown[]): unknown => {
      try {
        return fn(...args);
      } catch (e) {
        throw nativeError(name, e);
      }
    };
  }
  return wrapped as unknown as NativeAddon;
}

function nativeError(fn: string, e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const code = (e as NodeJS.ErrnoException).code;
  const message = `kernels-cpu native ${fn}: ${e.message}`;
  if (code === 'E_ARGUMENT')
    return new ArgumentError(message, {
      cause: e,
      hint: 'the sizes passed do not fit the arrays (or overflow); this is a bug in the caller, please report it',
    });
  if (code === 'E_MEMORY')
    return new BitDistillError('E_MEMORY', message, {
      cause: e,
      hint: 'the kernel could not get its scratch memory; use smaller shapes (batch, sequence length) or free memory',
    });
  if (code === 'E_IO') return new BitDistillError('E_IO', message, { cause: e });
  return e;
}

function getState(): State {
  if (state !== undefined) return state;
  const { addon, reason } = loadAddon();
  state = { addon, reason, envNote: undefined, reported: false };
  if (addon !== null) {
    const isaEnv = process.env['BITDISTILL_ISA'];
    if (isaEnv !== undefined && isaEnv !== '') {
      if (!isIsa(isaEnv) || !addon.setIsa(isaEnv)) {
        state.envNote = `BITDISTILL_ISA=${isaEnv} is not available here (available: ${addon.info().available.join(', ')}); using ${addon.info().isa}`;
      }
    }
    const thrEnv = process.env['BITDISTILL_THREADS'];
    if (thrEnv !== undefined && thrEnv !== '') {
      const n = Number(thrEnv);
      if (Number.isInteger(n) && n >= 1 && n <= 256) addon.setThreads(n);
      else state.envNote = `BITDISTILL_THREADS=${thrEnv} is not an integer in 1..256; ignored`;
    }
  }
  return state;
}

/** The loaded addon, or null when the TypeScript kernels are in use. */
export function nativeAddon(): NativeAddon | null {
  return getState().addon;
}

export function nativeStatus(): NativeStatus {
  const s = getState();
  if (s.addon === null) return { native: false, isa: 'typescript', threads: 1, reason: s.reason ?? 'unknown' };
  const info = s.addon.info();
  return { native: true, isa: info.isa as Isa, threads: info.threads };
}

/**
 * The CPU's data/unified caches from CPUID (empty without the addon or off x86): what the benchmarks size their
 * cold-weight rotation from, since a VM's sysfs often lists no L3 while CPUID passes the host's through.
 */
export function cpuCaches(): CpuCache[] {
  const s = getState();
  return s.addon === null ? [] : s.addon.info().caches;
}

export interface InitKernelsOptions {
  /** Receives one message: a warning when the TypeScript fallback is in use, else a debug line. */
  logger?: Logger;
  isa?: Isa;
  threads?: number;
}

/**
 * Loads the kernels (idempotent) and applies the options. The status is reported once per process, to the
 * first logger passed here. Kernels called without `initKernels` load lazily and stay silent.
 */
export function initKernels(options: InitKernelsOptions = {}): NativeStatus {
  const s = getState();
  if (options.isa !== undefined) setIsa(options.isa);
  if (options.threads !== undefined) setThreads(options.threads);
  const status = nativeStatus();
  const logger = options.logger ?? silentLogger;
  if (!s.reported && logger !== silentLogger) {
    s.reported = true;
    if (s.envNote !== undefined) logger.warn(s.envNote);
    if (status.native) logger.debug({ isa: status.isa, threads: status.threads }, 'kernels-cpu: native kernels loaded');
    else logger.warn({ reason: status.reason }, 'kernels-cpu: native addon unavailable, using the TypeScript kernels (slow)');
  }
  return status;
}

/** The ISA paths this CPU and build can run, lowest first ([] without the addon). */
export function availableIsas(): Isa[] {
  const addon = nativeAddon();
  return addon === null ? [] : addon.info().available.filter(isIsa);
}

/** Selects an ISA path (tests use this to compare every path to the reference). */
export function setIsa(isa: Isa): void {
  const addon = nativeAddon();
  if (addon === null) throw new UnsupportedError(`setIsa(${isa}): the native addon is not loaded`, { hint: nativeStatus().reason ?? '' });
  if (!addon.setIsa(isa)) {
    throw new UnsupportedError(`setIsa(${isa}): not available on this CPU or build`, {
      hint: `available: ${availableIsas().join(', ')}`,
    });
  }
}

/** Sets the thread-pool size (default: the CPUs this process may run on). */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new ArgumentError(`setThreads: ${n} is not an integer in 1..256`);
  nativeAddon()?.setThreads(n);
}
