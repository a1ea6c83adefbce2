/**
 * Low-bit float training GEMMs (issue 22): a projection whose matmuls see fake-quantized operands - forward
 * y = q_f(x) q_f(W)^T, backward dx = q_b(dy) q_f(W) and dW = q_b(dy)^T q_f(x) - in FP8 (E4M3 / E5M2, one float32
 * scale per tensor mapping its largest |value| onto the format's largest), FP4 E2M1 (likewise) or NVFP4 (blocks
 * of 16 along each row with E4M3 block scales under a float32 tensor scale; a row's last partial block is a short
 * block). The weights themselves stay float32 (the master copy); only what the GEMMs read is rounded, as in
 * FP8 / FP4 training recipes. The rounding reads tensor values on the CPU (dataSync): a CPU-engine feature.
 */
import * as tf from '@tensorflow/tfjs';
import { PROJECTIONS, projectionName } from '@bitdistill/arch';
import { GEMM_FORMATS, type GemmFormat } from '@bitdistill/config';
import { ArgumentError } from '@bitdistill/core';
import { matMulT, type Decoder, type LinearFn } from '@bitdistill/model';
import { LOWBIT_FORMATS, fakeQuantLowBit, fakeQuantNvfp4, lowBitTensorScale } from './lowbit.ts';

export { GEMM_FORMATS, type GemmFormat };

/** Row-major [rows, cols] values fake-quantized in `format` (a copy; 'none' returns the input). */
export function fakeQuantGemmOperand(x: Float32Array, rows: number, cols: number, format: GemmFormat): Float32Array {
  if (x.length !== rows * cols) throw new ArgumentError(`fakeQuantGemmOperand: ${x.length} values do not form [${rows}, ${cols}]`);
  switch (format) {
    case 'none':
      return x;
    case 'fp8-e4m3':
    case 'fp8-e5m2':
    case 'fp4-e2m1': {
      const fmt = LOWBIT_FORMATS[format === 'fp8-e4m3' ? 'e4m3' : format === 'fp8-e5m2' ? 'e5m2' : 'e2m1'];
      return fakeQuantLowBit(x, fmt, lowBitTensorScale(x, fmt));
    }
    case 'nvfp4': {
      // Rows padded with zeros to whole 16-value blocks: a zero changes neither a block's nor the tensor's max.
      const padded = Math.ceil(cols / 16) * 16;
      if (padded === cols) return fakeQuantNvfp4(x);
      const buf = new Float32Array(rows * padded);
      for (let r = 0; r < rows; r++) buf.set(x.subarray(r * cols, (r + 1) * cols), r * padded);
      const q = fakeQuantNvfp4(buf);
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) out.set(q.subarray(r * padded, r * padded + cols), r * cols);
      return out;
    }
    default:
      throw new ArgumentError(`unknown GEMM format '${String(format)}'`, { hint: `use one of ${GEMM_FORMATS.join(', ')}` });
  }
}

/** The operand as the GEMM reads it: `t` itself for 'none' (no copy), else a new rounded tensor. */
export function quantTensor(t: tf.Tensor2D, format: GemmFormat): tf.Tensor2D {
  if (format === 'none') return t;
  const [rows, cols] = t.shape;
  return tf.tensor2d(fakeQuantGemmOperand(t.dataSync() as Float32Array, rows, cols, format), [rows, cols]);
}

/** Throws on a format name outside GEMM_FORMATS. */
export function checkGemmFormats(formats: { forward: GemmFormat; backward: GemmFormat }): void {
  for (const f of [formats.forward, formats.backward]) {
    if (!(GEMM_FORMATS as readonly string[]).includes(f))
      throw new ArgumentError(`unknown GEMM format '${String(f)}'`, { hint: `use one of ${GEMM_FORMATS.join(', ')}` });
  }
}

/** The projection y = x W^T with low-bit operands: `forward` rounds x and W, `backward` rounds dy. */
export function lowBitLinear(formats: { forward: GemmFormat; backward: GemmFormat }): LinearFn {
  checkGemmFormats(formats);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const xq = quantTensor(x, formats.forward);
    const wq = quantTensor(w, formats.forward);
    save([xq, wq]);
    return {
      value: matMulT(xq, wq, false, true),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dyq = quantTensor(dy as tf.Tensor2D, formats.backward);
        const grads = [tf.matMul(dyq, sw), matMulT(dyq, sx, true, false)];
        if (dyq !== dy) dyq.dispose();
        return grads;
      },
    };
  }) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;
  return Object.assign((x: tf.Tensor2D, w: tf.Tensor2D) => op(x, w), {});
}

/**
 * Puts low-bit GEMMs on every projection of a full-precision decoder (the seven per layer); a projection that
 * already has its own op (a ternary student's bitLinear) is an error: low-bit floats are for full-precision
 * training. Returns the number of projections changed.
 */
export function applyLowBitGemm(model: Decoder, formats: { forward: GemmFormat; backward: GemmFormat }): number {
  if (formats.forward === 'none' && formats.backward === 'none') return 0;
  const fn = lowBitLinear(formats);
  let n = 0;
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const pr of PROJECTIONS) {
      const base = projectionName(l, pr);
      if (model.linears.has(base)) {
        throw new ArgumentError(`${base} already has its own op (a ternary student?); low-bit GEMMs apply to full-precision stages`, {
          hint: 'list only full-precision stages (pretrain, teacher) in lowbitGemm.stages',
        });
      }
      model.linears.set(base, fn);
      n++;
    }
  }
  return n;
}
