/**
 * Post-training quantization of a full-precision decoder (issue 22, part 3): the seven projections of every layer
 * are replaced, in place, by their RTN or GPTQ quantization (ptq.ts), dequantized to float32. Embeddings, norms and
 * lm_head stay as they are. GPTQ's inputs are captured from outside the model, as every quantization here is: the
 * layer's projections get a LinearFn that adds X^T X of its input to that projection's Hessian, then computes the
 * dense product.
 *
 * GPTQ runs layer by layer (the reference's order): layer l's Hessians come from a pass over the calibration set
 * in which layers 0..l-1 are already quantized, so each layer corrects for the error that reaches it; within a
 * layer every projection sees the activations of that layer at full precision (the reference's default, not its
 * --true-sequential). That is L passes over the calibration set instead of one.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, silentLogger, type Logger } from '@bitdistill/core';
import { PROJECTIONS, projectionName, projectionShape, type Projection } from '@bitdistill/arch';
import { denseLinear, matMulT, type Decoder, type LinearFn } from '@bitdistill/model';
import { gptqQuantize, hessianError, relativeWeightError, rtnQuantize, type PtqGrid, type PtqMethod } from './ptq.ts';

export interface QuantizeDecoderOptions extends PtqGrid {
  method: PtqMethod;
  /** GPTQ's calibration text: packed sequences of equal length (their first L tokens are run; the last is a target only). */
  calibration?: readonly Int32Array[];
  /** Calibration sequences per forward pass (default 8). */
  batchSize?: number;
  logger?: Logger;
}

export interface ProjectionPtq {
  name: string;
  /** [out, in] */
  shape: [number, number];
  /** ||W - Q||_F / ||W||_F */
  weightRelErr: number;
  /**
   * GPTQ only: the layer's output error on its calibration inputs relative to its output,
   * tr((W - Q) H (W - Q)^T) / tr(W H W^T) with H = 2 X^T X / n (what GPTQ minimises); null for RTN.
   */
  outputRelErr: number | null;
}

/** X^T X of each projection input of layer l over the calibration set (layers before l as they are now), / n * 2. */
function layerHessians(model: Decoder, l: number, calibration: readonly Int32Array[], batchSize: number): Map<Projection, Float64Array> {
  const c = model.config;
  const hessians = new Map<Projection, Float64Array>();
  // q, k and v read the same tensor (likewise gate and up): its X^T X is computed once and added to each.
  let last: { id: number; xtx: Float32Array } | null = null;
  const saved = new Map<string, LinearFn | undefined>();
  for (const proj of PROJECTIONS) {
    const base = projectionName(l, proj);
    const cols = projectionShape(c, proj)[1];
    const h = new Float64Array(cols * cols);
    hessians.set(proj, h);
    saved.set(base, model.linears.get(base));
    const capture: LinearFn = (x, w) => {
      let xtx = last !== null && last.id === x.id ? last.xtx : null;
      if (xtx === null) {
        const t = matMulT(x, x, true, false); // [in, in]
        xtx = t.dataSync() as Float32Array;
        t.dispose();
        last = { id: x.id, xtx };
      }
      for (let i = 0; i < h.length; i++) h[i] = (h[i] as number) + (xtx[i] as number);
      return denseLinear(x, w);
    };
    model.linears.set(base, capture);
  }
  const L = (calibration[0]?.length ?? 1) - 1;
  try {
    for (let b0 = 0; b0 < calibration.length; b0 += batchSize) {
      const part = calibration.slice(b0, b0 + batchSize);
      const ids = new Int32Array(part.length * L);
      part.forEach((s, b) => ids.set(s.subarray(0, L), b * L));
      tf.tidy(() => {
        model.forward(tf.tensor2d(ids, [part.length, L], 'int32'), { output: 'hidden' });
      });
    }
  } finally {
    for (const [base, fn] of saved) {
      if (fn === undefined) model.linears.delete(base);
      else model.linears.set(base, fn);
    }
  }
  const n = calibration.length * L;
  for (const h of hessians.values()) for (let i = 0; i < h.length; i++) h[i] = ((h[i] as number) * 2) / n;
  return hessians;
}

/** Quantizes model's projections in place; returns one record per projection, in layer and PROJECTIONS order. */
export function quantizeDecoder(model: Decoder, o: QuantizeDecoderOptions): ProjectionPtq[] {
  const logger = o.logger ?? silentLogger;
  const c = model.config;
  const batchSize = o.batchSize ?? 8;
  const calibration = o.calibration ?? [];
  if (o.method === 'gptq') {
    const L = (calibration[0]?.length ?? 0) - 1;
    if (L < 1 || calibration.some((s) => s.length !== L + 1))
      throw new ArgumentError('quantizeDecoder: GPTQ needs calibration sequences of equal length (two tokens or more)', {
        hint: 'pass calibration text (bitdistill quantize reads it from --corpus), or use --method rtn',
      });
  }
  const out: ProjectionPtq[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const t0 = performance.now();
    const hessians = o.method === 'gptq' ? layerHessians(model, l, calibration, batchSize) : null;
    for (const proj of PROJECTIONS) {
      const name = `${projectionName(l, proj)}.weight`;
      const [rows, cols] = projectionShape(c, proj);
      const v = model.param(name);
      const w = v.dataSync() as Float32Array;
      const h = hessians?.get(proj) ?? null;
      const q = h === null ? rtnQuantize(w, rows, cols, o) : gptqQuantize(w, rows, cols, h, o);
      const outputRelErr = h === null ? null : hessianError(w, q, rows, cols, h) / hessianError(w, new Float32Array(w.length), rows, cols, h);
      const weightRelErr = relativeWeightError(w, q);
      const qt = tf.tensor2d(q, [rows, cols]);
      v.assign(qt);
      qt.dispose();
      out.push({ name, shape: [rows, cols], weightRelErr, outputRelErr });
      logger.debug({ name, weightRelErr, outputRelErr }, 'quantized');
    }
    logger.info({ layer: l, method: o.method, seconds: Number(((performance.now() - t0) / 1000).toFixed(2)) }, 'layer quantized');
  }
  return out;
}
