/**
 * `UnsortedSegmentSum` for the wasm backend, which lacks it (MACHINE.md). It is the gradient of `tf.gather`,
 * i.e. of the embedding lookup, so training any model on wasm needs it.
 *
 * out[segmentIds[i], j] += x[i, j] for x of shape [N, ...rest]; ids outside [0, numSegments) are dropped
 * (as TensorFlow does).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { shapeSize } from '@bitdistill/core';

/** out[segmentIds[i], :] += x[i, :] over rows of `rowSize`; `out` must start zeroed. Plain loops. */
export function segmentSumInto(out: Float32Array, x: Float32Array, rowSize: number, segmentIds: Int32Array, numSegments: number): Float32Array {
  for (let i = 0; i < segmentIds.length; i++) {
    const s = segmentIds[i] as number;
    if (s < 0 || s >= numSegments) continue;
    const src = i * rowSize;
    const dst = s * rowSize;
    for (let j = 0; j < rowSize; j++) out[dst + j] = (out[dst + j] as number) + (x[src + j] as number);
  }
  return out;
}

/** Reference twin (also the kernel's body): plain loops over typed arrays. */
export function unsortedSegmentSumRef(x: Float32Array, rowSize: number, segmentIds: Int32Array, numSegments: number): Float32Array {
  return segmentSumInto(new Float32Array(numSegments * rowSize), x, rowSize, segmentIds, numSegments);
}

export function registerWasmSegmentSum(): void {
  if (tf.getKernel('UnsortedSegmentSum', 'wasm') !== undefined) return;
  tf.registerKernel({
    kernelName: 'UnsortedSegmentSum',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const wasm = backend as BackendWasm;
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (attrs as { numSegments: number }).numSegments;
      if (x.dtype !== 'float32') throw new Error(`UnsortedSegmentSum (wasm): only float32 is supported, got ${x.dtype}`);
      const idsShape = segmentIds.shape;
      const rest = x.shape.slice(idsShape.length);
      const rowSize = shapeSize(rest);
      const out = wasm.makeOutput([numSegments, ...rest], 'float32');
      // Views are taken after makeOutput: allocating can grow the heap and detach older views.
      const xs = wasm.typedArrayFromHeap(x) as Float32Array;
      const ids = wasm.typedArrayFromHeap(segmentIds) as Int32Array;
      const o = wasm.typedArrayFromHeap(out) as Float32Array;
      o.fill(0);
      segmentSumInto(o, xs, rowSize, ids, numSegments);
      return out;
    },
  });
}
