/**
 * Per-kernel wall time without tf.profile (which keeps every kernel's outputs alive until it returns: out of
 * memory at real size). Wraps every kernel registered for a synchronous backend (the native engine) with a
 * timer keyed by kernel name and input shapes; the rest of a step's time is tfjs dispatch, autograd and
 * JavaScript. Used by the train benches (BITDISTILL_KERNEL_TIMES=1).
 */
import * as tf from '@tensorflow/tfjs';

export interface KernelTimes {
  kernel: string;
  ms: number;
  calls: number;
}

export interface KernelTimer {
  /** Start (or restart) counting. */
  reset(): void;
  /** Totals since reset, slowest first: by kernel, and by kernel and input shapes. */
  report(top?: number): { totalMs: number; byKernel: KernelTimes[]; byKernelAndShape: KernelTimes[] };
}

export function timeKernels(backend: string): KernelTimer {
  const byKernel = new Map<string, { ms: number; calls: number }>();
  const byShape = new Map<string, { ms: number; calls: number }>();
  const add = (m: Map<string, { ms: number; calls: number }>, key: string, ms: number): void => {
    const e = m.get(key) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls += 1;
    m.set(key, e);
  };
  for (const k of tf.getKernelsForBackend(backend)) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: ((args: { inputs: Record<string, tf.TensorInfo | undefined> }) => {
        const t0 = performance.now();
        const out = (inner as (a: unknown) => unknown)(args);
        const ms = performance.now() - t0;
        add(byKernel, k.kernelName, ms);
        const shapes = Object.values(args.inputs)
          .filter((t): t is tf.TensorInfo => t !== undefined)
          .map((t) => `[${t.shape.join(',')}]`)
          .join(' ');
        add(byShape, `${k.kernelName} ${shapes}`, ms);
        return out;
      }) as unknown as tf.KernelFunc,
    });
  }
  const list = (m: Map<string, { ms: number; calls: number }>, top: number): KernelTimes[] =>
    [...m]
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, top)
      .map(([kernel, e]) => ({ kernel, ms: e.ms, calls: e.calls }));
  return {
    reset() {
      byKernel.clear();
      byShape.clear();
    },
    report(top = 15) {
      const totalMs = [...byKernel.values()].reduce((s, e) => s + e.ms, 0);
      return { totalMs, byKernel: list(byKernel, top), byKernelAndShape: list(byShape, top) };
    },
  };
}
