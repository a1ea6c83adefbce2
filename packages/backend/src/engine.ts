/**
 * The native CPU engine's registration with tfjs: a backend named 'native' that is an instance of tfjs's cpu
 * backend (MathBackendCPU, made by the factory tfjs registered for 'cpu'), so its tensors are ordinary
 * TypedArrays outside any wasm heap, with every kernel the cpu backend has registered under 'native' too. The
 * native kernels (native-kernels.ts) then replace the hot ones with `setNativeKernels(true, 'native')`.
 *
 * Registering the cpu kernels again under another name is what tfjs itself does for its backends (a kernel
 * config is a name, a backend name and a function of (inputs, attrs, backend)); the cpu kernels only use the
 * backend object they are handed, so they serve this instance as they serve the stock one.
 *
 * Buffer recycling. A training step allocates the same activation and gradient sizes every step; fresh
 * ArrayBuffers cost a zero-fill and first-touch page faults each time (measured on the reference config: the
 * step took 3.5x longer than on wasm, whose heap is reused). So the outputs of the native kernels come from a
 * pool of ArrayBuffers by byte size, and go back to it when their tensor is disposed — only when that is
 * provably safe: the buffer was allocated by the pool, no other tensor was ever written with a view of it
 * (stock cpu kernels return subarray views, e.g. a contiguous slice), and it was never handed out by
 * readSync / read (the cpu backend returns its storage itself, and `dataSync()` results outlive tensors).
 * Pooled bytes are capped (BITDISTILL_POOL_MB; default ten times the largest buffer so far, between 1 GiB and a
 * quarter of the machine's memory, at most 8 GiB); beyond the cap buffers are left to the GC.
 *
 * Garbage collection. A freed ArrayBuffer returns its memory only when V8 collects its JS object, and V8's
 * heuristics do not count external memory urgently enough for multi-GB training steps: a 4-layer model of the
 * Qwen3-0.6B shape held 14.8 GB RSS with 3.3 GB of live tensors after one step. So the engine counts the bytes
 * of disposed tensors that the pool did not take and runs a full GC after every BITDISTILL_GC_MB (default
 * 1024) of them (a few tens of ms; on the reference config that is about once per several steps).
 */
import { totalmem } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as tf from '@tensorflow/tfjs';

export const ENGINE_NAME = 'native';

type Typed = Float32Array | Int32Array | Uint8Array;
type TypedCtor = Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor;

interface CpuBackendInternals {
  data: { get(id: tf.DataId): { values?: unknown } | undefined; has(id: tf.DataId): boolean };
  write(values: unknown, shape: number[], dtype: tf.DataType): tf.DataId;
  move(dataId: tf.DataId, values: unknown, shape: number[], dtype: tf.DataType, refCount: number): void;
  readSync(dataId: tf.DataId): unknown;
  read(dataId: tf.DataId): Promise<unknown>;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** Pool statistics, for tests and the bench. */
export interface PoolStats {
  pooledBytes: number;
  capBytes: number;
  hits: number;
  misses: number;
  recycled: number;
  /** Pooled buffers dropped to make room for a newer one (the longest unused first). */
  evicted: number;
  /** Full GCs the engine ran (see the header). */
  collections: number;
}

/** The engine's backend object: tfjs's cpu backend plus pooled allocation. */
export interface EngineBackend {
  /** A typed array of n elements for a new output: from the pool (contents undefined) or fresh (zeroed). */
  allocOutput(ctor: TypedCtor, n: number): Typed;
  poolStats(): PoolStats;
}

/** V8's gc(), exposed at run time (the flag takes effect for contexts created after it is set). */
function exposeGc(): (() => void) | null {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    return null;
  }
}

function gcEveryBytes(): number {
  const mb = Number(process.env['BITDISTILL_GC_MB'] ?? '1024');
  return Number.isFinite(mb) && mb > 0 ? mb * 2 ** 20 : 2 ** 30;
}

/**
 * The most the pool may hold by default: a quarter of the machine's memory, between 1 and 8 GiB.
 */
export function defaultPoolCapBytes(total = totalmem()): number {
  return Math.min(8 * 2 ** 30, Math.max(2 ** 30, Math.floor(total / 4 / 2 ** 20) * 2 ** 20));
}

/**
 * The pool's cap when BITDISTILL_POOL_MB is not set: ten times the largest buffer allocated so far, between
 * 1 GiB and defaultPoolCapBytes. At Qwen3-0.6B the tied embedding's gradient, its partial sums and the new
 * embedding are 622 MB buffers every step. Under a fixed 1 GiB cap they were dropped and re-allocated each step
 * (page faults plus a forced GC per GiB: 4-5 s of a 24 s SFT step on AMD EPYC Zen 4); under four times the
 * largest (2.4 GB) the recompute forward's smaller buffers still pushed them out before the backward needed them
 * again (1.7 GB of fresh arrays per step, two 622 MB ones among them: 15.7 s SFT steps on AMD EPYC Zen 5, 12.8 s
 * with a 4 GiB cap, peak RSS unchanged at 10.8 GiB). Under eight times (5 GB) the bf16 distill step, once the
 * head's dW was summed in place (fewer 622 MB buffers cycling through the pool), missed the pool for the tied
 * embedding's gradient sum: 1.57 s for that one Add, 0.57 s under a 6 GiB cap (same step, same peak RSS 14.71 GiB); ten times is 6.2 GB there.
 * A small model keeps the 1 GiB cap, so that variable-length evaluation batches do not fill gigabytes of pool.
 */
export function poolCapFor(largestBytes: number, total = totalmem()): number {
  return Math.min(defaultPoolCapBytes(total), Math.max(2 ** 30, 10 * largestBytes));
}

/** BITDISTILL_POOL_MB in bytes, or null (the cap then follows poolCapFor). */
function fixedPoolCapBytes(): number | null {
  const env = process.env['BITDISTILL_POOL_MB'];
  if (env === undefined) return null;
  const mb = Number(env);
  return Number.isFinite(mb) && mb >= 0 ? mb * 2 ** 20 : null;
}

/** Adds the pool to a fresh cpu backend instance (methods wrapped on the instance, the class untouched). */
function withPool(b: tf.KernelBackend): tf.KernelBackend & EngineBackend {
  const cpu = b as unknown as CpuBackendInternals;
  const free = new Map<number, ArrayBuffer[]>();
  /** Every pooled buffer, longest unused first (a Set keeps insertion order). */
  const lru = new Set<ArrayBuffer>();
  /** Buffers the pool made, by the one typed array that spans each. */
  const owner = new WeakMap<ArrayBuffer, Typed>();
  /** Pool buffers that may be seen through something else than their owner array: never recycled. */
  const pinned = new WeakSet<ArrayBuffer>();
  const fixedCap = fixedPoolCapBytes();
  let largest = 0;
  const stats: PoolStats = { pooledBytes: 0, capBytes: fixedCap ?? poolCapFor(0), hits: 0, misses: 0, recycled: 0, evicted: 0, collections: 0 };
  let allocating = false;
  const gc = exposeGc();
  const gcEvery = gcEveryBytes();
  let dropped = 0;

  /** Marks a pool buffer as seen from outside its one tensor (never recycled after that). */
  const pinIfPooled = (values: unknown): void => {
    if (!ArrayBuffer.isView(values)) return;
    const buf = values.buffer as ArrayBuffer;
    if (owner.has(buf)) pinned.add(buf);
  };

  const write = cpu.write.bind(cpu);
  cpu.write = (values, shape, dtype) => {
    // Any write of a pool buffer other than the allocation itself shares it (a view, or the same array twice).
    if (!allocating) pinIfPooled(values);
    return write(values, shape, dtype);
  };
  const move = cpu.move.bind(cpu);
  cpu.move = (dataId, values, shape, dtype, refCount) => {
    pinIfPooled(values);
    move(dataId, values, shape, dtype, refCount);
  };
  const readSync = cpu.readSync.bind(cpu);
  cpu.readSync = (dataId) => {
    pinIfPooled(cpu.data.get(dataId)?.values);
    return readSync(dataId);
  };
  cpu.read = async (dataId) => cpu.readSync(dataId);
  const disposeData = cpu.disposeData.bind(cpu);
  cpu.disposeData = (dataId, force = false) => {
    const values = cpu.data.get(dataId)?.values;
    const done = disposeData(dataId, force);
    if (done && ArrayBuffer.isView(values) && !cpu.data.has(dataId)) {
      const buf = values.buffer as ArrayBuffer;
      const poolable = owner.get(buf) === values && !pinned.has(buf) && buf.byteLength <= stats.capBytes;
      // A full pool makes room by dropping its longest-unused buffers: with variable shapes (evaluation
      // batches, prompts padded per batch) stale sizes would otherwise fill it, and every new size would be
      // allocated afresh and dropped again (a tiny distill stage dropped 28 GB that way, 609 full GCs).
      if (poolable)
        while (stats.pooledBytes + buf.byteLength > stats.capBytes && evictOldest()) {
          // each call frees the oldest pooled buffer
        }
      const recycle = poolable && stats.pooledBytes + buf.byteLength <= stats.capBytes;
      if (!recycle) drop(values.byteLength);
      if (recycle) {
        owner.delete(buf);
        let list = free.get(buf.byteLength);
        if (list === undefined) {
          list = [];
          free.set(buf.byteLength, list);
        }
        list.push(buf);
        lru.add(buf);
        stats.pooledBytes += buf.byteLength;
        stats.recycled++;
      }
    }
    return done;
  };

  /** Counts bytes left to the GC and forces a collection after every BITDISTILL_GC_MB of them. */
  function drop(bytes: number): void {
    if (gc === null) return;
    dropped += bytes;
    if (dropped >= gcEvery) {
      dropped = 0;
      stats.collections++;
      gc();
    }
  }

  /** Drops the pool's longest-unused buffer; false when the pool is empty. */
  function evictOldest(): boolean {
    const first = lru.values().next();
    if (first.done === true) return false;
    const old = first.value;
    lru.delete(old);
    const list = free.get(old.byteLength);
    const i = list?.indexOf(old) ?? -1;
    if (list !== undefined && i >= 0) list.splice(i, 1);
    stats.pooledBytes -= old.byteLength;
    stats.evicted++;
    drop(old.byteLength);
    return true;
  }

  const engine = b as tf.KernelBackend & EngineBackend;
  engine.allocOutput = (ctor, n) => {
    const bytes = n * ctor.BYTES_PER_ELEMENT;
    const buf = free.get(bytes)?.pop();
    let arr: Typed;
    if (buf !== undefined) {
      lru.delete(buf);
      stats.pooledBytes -= bytes;
      stats.hits++;
      arr = new ctor(buf, 0, n);
    } else {
      stats.misses++;
      arr = new ctor(n);
      if (bytes > largest) {
        largest = bytes;
        if (fixedCap === null) stats.capBytes = poolCapFor(largest);
      }
    }
    if (bytes > 0) owner.set(arr.buffer as ArrayBuffer, arr);
    return arr;
  };
  engine.poolStats = () => ({ ...stats });
  // The storage adapter writes the pool's arrays through this flag (see native-kernels.ts).
  (engine as unknown as { writeOwned: (v: Typed, shape: number[], dtype: tf.DataType) => tf.DataId }).writeOwned = (v, shape, dtype) => {
    allocating = true;
    try {
      return cpu.write(v, shape, dtype);
    } finally {
      allocating = false;
    }
  };
  return engine;
}

let registered = false;

/** Registers the 'native' backend and the cpu backend's kernels for it (once per process). */
export function registerNativeEngine(): void {
  if (registered) return;
  const cpuFactory = tf.findBackendFactory('cpu');
  if (cpuFactory === null || cpuFactory === undefined) throw new Error("tfjs's cpu backend is not registered (import @tensorflow/tfjs first)");
  const kernels = tf.getKernelsForBackend('cpu');
  if (kernels.length === 0) throw new Error("tfjs's cpu backend has no kernels registered");
  for (const k of kernels) {
    if (tf.getKernel(k.kernelName, ENGINE_NAME) === undefined) tf.registerKernel({ ...k, backendName: ENGINE_NAME });
  }
  tf.registerBackend(
    ENGINE_NAME,
    () => {
      const b = cpuFactory() as tf.KernelBackend & { firstUse?: boolean };
      b.firstUse = false; // the cpu backend's "install tfjs-node" banner is not for this engine
      return withPool(b);
    },
    // Below tfjs's own priorities: only initBackend chooses it, never tfjs's implicit pick.
    0,
  );
  registered = true;
}

/** The engine backend's pool statistics, or null when the engine is not the active backend. */
export function enginePoolStats(): PoolStats | null {
  if (tf.getBackend() !== ENGINE_NAME) return null;
  return (tf.backend() as unknown as EngineBackend).poolStats();
}
