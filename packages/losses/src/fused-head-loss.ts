/**
 * L_CE and L_LD of Stage 3 (PAPER.md §5) fused with the vocabulary projection, row chunk by row chunk, so the
 * [N, V] logits never exist: at Qwen3 scale (V = 151,936, N = 8 x 128 rows) one fp32 [N, V] tensor is 622 MB,
 * and the unfused path (logits, log-softmax, their gradients, the teacher's twins) holds several at once.
 *
 * For each chunk of r rows the student logits z = h_c W^T [r, V] (and, for logit KD, the teacher's
 * zT = hT_c WT^T) are computed, the loss terms read off, the gradient with respect to z formed at once and
 * reduced to dh_c = g W [r, C] and dW += g^T h_c [V, C] (as Liger-Kernel's fused linear cross entropy). Only
 * dh [N, C] and dW [V, C] are kept for the backward pass, which just scales them by the upstream gradient.
 * Peak: about five [r, V] blocks of one chunk (z, the teacher block, log-probabilities and the gradient block,
 * freed as soon as they are used), plus dW, dh and the [V, C] accumulation temporaries.
 *
 * The products with a transposed operand use tf.matMul's transpose flags, except on stock wasm where those are
 * slow (model/src/ops.ts matMulT): there the [r, V] / [r, C] blocks are transposed, never the [V, C] head.
 *
 * Same numbers as answerCrossEntropy and logitKd on the full logits (tested against both).
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, ShapeError, fusedOpsEnabled, shapeToString } from '@bitdistill/core';
import { checkTemperature } from './checks.ts';
import { stopGradient } from './stop-gradient.ts';

const FN = 'fusedHeadLoss';

/** Bytes of one [rows, V] fp32 block that `chunkRows: null` aims at. */
export const AUTO_CHUNK_BYTES = 64 * 1024 * 1024;

/** Rows per chunk for a vocabulary of V when none is set: floor(64 MiB / (4 V)), at least 1 (110 rows at V = 151,936). */
export function autoChunkRows(V: number): number {
  return Math.max(1, Math.floor(AUTO_CHUNK_BYTES / (4 * V)));
}

export interface FusedCeOptions {
  /** int32, N entries (any shape of size N): the target of each row; any value where `mask` is 0. */
  labels: tf.Tensor;
  /** float 0/1 (or weights), N entries: the rows that count; CE is the mean over them (divided by max(count, 1)). */
  mask: tf.Tensor;
  /** Weight of CE in `loss` (default 1). */
  weight?: number;
}

export interface FusedKdOptions {
  /** The teacher's final normed hidden rows [N, C'] (same rows as the student's); gets no gradient. */
  teacherHidden: tf.Tensor;
  /** The teacher's head [V, C'] (tied embedding or lm_head); gets no gradient. */
  teacherWeight: tf.Tensor;
  /** float 0/1 (or weights), N entries: the rows distilled (batchmean over them, divided by max(count, 1)). */
  mask: tf.Tensor;
  temperature: number;
  /** Weight of the KD term in `loss` (lambdaLogit; default 1). */
  weight?: number;
}

export interface FusedHeadLossOptions {
  ce?: FusedCeOptions;
  kd?: FusedKdOptions;
  /** Rows per chunk; null / undefined = autoChunkRows(V). */
  chunkRows?: number | null;
}

export interface FusedHeadLossResult {
  /** ceWeight * ce + kdWeight * logitKd: the term to differentiate (gradient to `hidden` and `weight`). */
  loss: tf.Scalar;
  /** answerCrossEntropy of the logits hidden W^T; a value only (no gradient: differentiate `loss`). */
  ce: tf.Scalar | null;
  /** logitKd(teacher logits, student logits); a value only (no gradient: differentiate `loss`). */
  logitKd: tf.Scalar | null;
}

/** The host-side plan of one call: which rows are computed, their per-row factors. */
interface Plan {
  N: number;
  V: number;
  C: number;
  /** Rows with a non-zero CE or KD mask, ascending; the others add nothing to the loss or the gradients. */
  active: Int32Array;
  chunk: number;
  ce: { labels: Int32Array; mask: Float32Array; count: number; weight: number } | null;
  kd: { mask: Float32Array; count: number; weight: number; tau: number; hidden: tf.Tensor2D; head: tf.Tensor2D } | null;
}

/**
 * Answer CE and/or logit KD of the logits `hidden` [N, C] x `weight` [V, C]^T, computed in row chunks with a
 * hand-written backward (see the file comment). `hidden` is the model's final normed hidden rows (after
 * model.norm), `weight` its head. At least one of `ce`, `kd` must be given.
 *
 * The gradient is formed during the forward pass only when the tape is recording (inside tf.grads /
 * tf.variableGrads); otherwise this is a plain chunked loss evaluation.
 */
export function fusedHeadLoss(hidden: tf.Tensor, weight: tf.Tensor, options: FusedHeadLossOptions): FusedHeadLossResult {
  const plan = makePlan(hidden, weight, options);
  const h = hidden as tf.Tensor2D;
  const w = weight as tf.Tensor2D;
  let packed: tf.Tensor1D;
  if (!tf.engine().isTapeOn()) {
    packed = tf.tidy(() => runChunks(plan, h, w, false).values);
  } else {
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [x, wt, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
      const { values, dh, dW } = runChunks(plan, x, wt, true);
      save([dh as tf.Tensor, dW as tf.Tensor]);
      return {
        value: values,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sdh, sdW] = saved as [tf.Tensor, tf.Tensor];
          // Only `loss` (entry 0) carries gradient; ce and logitKd are values (stopGradient below).
          const g = tf.reshape(tf.slice(dy, [0], [1]), []);
          const out = [tf.mul(sdh, g), tf.mul(sdW, g)];
          // Release the saved [V, C] now rather than when the whole backward pass ends (disposing twice is a no-op).
          sdh.dispose();
          sdW.dispose();
          return out;
        },
      };
    });
    packed = op(h, w) as tf.Tensor1D;
  }
  const at = (i: number) => tf.reshape(tf.slice(packed, [i], [1]), []) as tf.Scalar;
  const result: FusedHeadLossResult = {
    loss: at(0),
    ce: plan.ce !== null ? stopGradient(at(1)) : null,
    logitKd: plan.kd !== null ? stopGradient(at(2)) : null,
  };
  packed.dispose();
  return result;
}

/**
 * The chunk loop. Returns [loss, ce, logitKd] (absent terms 0) and, with `grad`, dh [N, C] and dW [V, C] of
 * `loss`. Every [r, V] block is disposed as soon as it has been used.
 */
function runChunks(plan: Plan, h: tf.Tensor2D, w: tf.Tensor2D, grad: boolean): { values: tf.Tensor1D; dh: tf.Tensor2D | null; dW: tf.Tensor2D | null } {
  const { N, V, C, active, chunk, ce, kd } = plan;
  const fused = fusedOpsEnabled() && h.dtype === 'float32' && w.dtype === 'float32' && tf.getKernel(HEAD_LOSS_KERNEL, tf.getBackend()) !== undefined;
  let ceSum: tf.Scalar = tf.scalar(0);
  let klSum: tf.Scalar = tf.scalar(0);
  let dW: tf.Tensor2D | null = null;
  const dhParts: tf.Tensor2D[] = [];
  const drop = (...ts: tf.Tensor[]) => {
    for (const t of ts) t.dispose();
  };

  for (let start = 0; start < active.length; start += chunk) {
    const idx = active.subarray(start, Math.min(start + chunk, active.length));
    const r = idx.length;
    // Live [r, V] blocks are listed after each step: at most five at a time.
    const out: tf.Tensor[] = tf.tidy(() => {
      if (fused) return fusedChunk(plan, idx, h, w, grad, dW);
      const rows = tf.tensor1d(idx, 'int32');
      const hc = tf.gather(h, rows) as tf.Tensor2D; // [r, C]
      // The teacher first, while nothing else of the chunk exists.
      const logPT = kd === null ? null : logSoftmaxOf(logitsBlock(tf.gather(kd.hidden, rows) as tf.Tensor2D, kd.head), kd.tau); // [logPT]
      const z = logitsBlock(hc, w); // [logPT, z]
      // Softmax is shift-invariant: every term below reads the row-max-shifted logits.
      const sh = tf.sub(z, tf.max(z, -1, true)) as tf.Tensor2D; // [logPT, z, sh]
      drop(z); // [logPT, sh]
      let g: tf.Tensor2D | null = null; // d loss / d z of these rows
      let ceChunk: tf.Scalar = tf.scalar(0);
      let klChunk: tf.Scalar = tf.scalar(0);

      if (ce !== null) {
        const { mask: m, labels } = ceRows(ce, idx);
        const scatterAt = new Int32Array(2 * r);
        const flat = new Int32Array(r);
        for (let i = 0; i < r; i++) {
          const y = labels[i] as number;
          flat[i] = i * V + y;
          scatterAt[2 * i] = i;
          scatterAt[2 * i + 1] = y;
        }
        const e = tf.exp(sh); // [logPT, sh, e]
        const sum = tf.sum(e, -1, true); // [r, 1]
        // -log softmax at the label: log(sum) - shifted label logit
        const picked = tf.sub(tf.gather(tf.reshape(sh, [r * V]), tf.tensor1d(flat, 'int32')), tf.reshape(tf.log(sum), [r]));
        ceChunk = tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(m)))) as tf.Scalar;
        if (grad) {
          // (softmax - onehot) * mask * weight / count
          const scale = m.map((x) => (x * ce.weight) / ce.count);
          const gp = tf.mul(e, tf.div(tf.tensor2d(scale, [r, 1]), sum)); // [logPT, sh, e, gp]
          drop(e); // [logPT, sh, gp]
          const hot = tf.scatterND(tf.tensor2d(scatterAt, [r, 2], 'int32'), tf.tensor1d(scale), [r, V]); // [logPT, sh, gp, hot]
          g = tf.sub(gp, hot) as tf.Tensor2D; // [logPT, sh, gp, hot, g]
          drop(gp, hot); // [logPT, sh, g]
        } else {
          drop(e);
        }
      }

      if (kd !== null && logPT !== null) {
        const m = kdRows(kd, idx);
        const logPS = logSoftmaxOf(sh, kd.tau); // [logPT, g, logPS] (sh consumed)
        const pT = tf.exp(logPT); // [logPT, g, logPS, pT]
        const d = tf.sub(logPT, logPS); // [logPT, g, logPS, pT, d]
        drop(logPT); // [g, logPS, pT, d]
        const prod = tf.mul(pT, d); // [g, logPS, pT, d, prod]
        drop(d); // [g, logPS, pT, prod]
        const kl = tf.sum(prod, -1); // [r]
        drop(prod); // [g, logPS, pT]
        klChunk = tf.sum(tf.mul(kl, tf.tensor1d(m))) as tf.Scalar;
        if (grad) {
          // tau * (p_s - p_t) * mask * weight / count  (d/dz of tau^2 KL(p_t || softmax(z / tau)))
          const scale = tf.tensor2d(
            m.map((x) => (x * kd.weight * kd.tau) / kd.count),
            [r, 1],
          );
          const pS = tf.exp(logPS); // [g, logPS, pT, pS]
          drop(logPS); // [g, pT, pS]
          const diff = tf.sub(pS, pT); // [g, pT, pS, diff]
          drop(pS, pT); // [g, diff]
          const gk = tf.mul(diff, scale) as tf.Tensor2D; // [g, diff, gk]
          drop(diff); // [g, gk]
          if (g === null) g = gk;
          else {
            const total = tf.add(g, gk) as tf.Tensor2D; // [g, gk, total]
            drop(g, gk);
            g = total; // [g]
          }
        } else {
          drop(logPS, pT);
        }
      } else {
        drop(sh);
      }

      if (!grad || g === null) return [ceChunk, klChunk];
      const dWc = productTA(g, hc, dW); // [V, C]: the chunks' sum so far plus this one's
      const dhc = gradProduct(g as tf.Tensor2D, w); // [r, C]
      drop(g);
      return [ceChunk, klChunk, dhc, dWc];
    });
    const [ceChunk, klChunk, dhc, dWc] = out as [tf.Scalar, tf.Scalar, tf.Tensor2D | undefined, tf.Tensor2D | undefined];
    const nextCe = tf.add(ceSum, ceChunk) as tf.Scalar;
    const nextKl = tf.add(klSum, klChunk) as tf.Scalar;
    drop(ceSum, klSum, ceChunk, klChunk);
    ceSum = nextCe;
    klSum = nextKl;
    if (dWc !== undefined) {
      // dWc is the running sum (it may share the previous sum's storage: that handle is dropped here).
      if (dW !== null) drop(dW);
      dW = dWc;
    }
    if (dhc !== undefined) dhParts.push(dhc);
  }

  const done = dW;
  const [values, dh, dWout] = tf.tidy(() => {
    const ceVal = ce !== null ? tf.div(ceSum, ce.count) : tf.scalar(0);
    const kdVal = kd !== null ? tf.mul(tf.div(klSum, kd.count), kd.tau * kd.tau) : tf.scalar(0);
    const total = tf.add(tf.mul(ceVal, ce?.weight ?? 0), tf.mul(kdVal, kd?.weight ?? 0));
    const values = tf.stack([total, ceVal, kdVal]) as tf.Tensor1D;
    drop(ceSum, klSum);
    if (!grad) return [values];
    let dh: tf.Tensor2D;
    if (dhParts.length === 0) dh = tf.zeros([N, C]);
    else {
      const dense = dhParts.length === 1 ? (dhParts[0] as tf.Tensor2D) : (tf.concat(dhParts, 0) as tf.Tensor2D); // [active, C]
      // Inactive rows get zero gradient: scatter the active rows' gradient back to their places.
      dh = active.length === N ? dense : (tf.scatterND(tf.tensor2d(active, [active.length, 1], 'int32'), dense, [N, C]) as tf.Tensor2D);
    }
    return [values, dh, done ?? tf.zeros([V, C])];
  });
  return { values: values as tf.Tensor1D, dh: (dh as tf.Tensor2D | undefined) ?? null, dW: (dWout as tf.Tensor2D | undefined) ?? null };
}

/** The CE mask and labels of a chunk's rows (label 0 where the row has no CE term). */
function ceRows(ce: NonNullable<Plan['ce']>, idx: Int32Array): { mask: Float32Array; labels: Int32Array } {
  const mask = new Float32Array(idx.length);
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const n = idx[i] as number;
    mask[i] = ce.mask[n] as number;
    labels[i] = mask[i] !== 0 ? (ce.labels[n] as number) : 0;
  }
  return { mask, labels };
}

/** The KD mask of a chunk's rows. */
function kdRows(kd: NonNullable<Plan['kd']>, idx: Int32Array): Float32Array {
  return Float32Array.from(idx, (n) => kd.mask[n] as number);
}

/** The native engine's kernel for the elementwise part of a chunk (packages/backend, kernels-cpu headLossF32). */
export const HEAD_LOSS_KERNEL = 'BitDistillHeadLoss';

/**
 * One chunk on the fused kernel: the logit blocks by matmul as above, then CE and KD sums and the gradient block
 * g = d loss / d z in one native pass per row, then dh_c = g W and dW_c = g^T h_c. Live [r, V] blocks: the
 * teacher's and the student's logits and g. Returns [ceChunk, klChunk] (+ [dh_c, dW_c] with grad).
 */
function fusedChunk(plan: Plan, idx: Int32Array, h: tf.Tensor2D, w: tf.Tensor2D, grad: boolean, dWsum: tf.Tensor2D | null): tf.Tensor[] {
  const { ce, kd } = plan;
  const hc = chunkRows(h, idx);
  const inputs: tf.NamedTensorMap = {};
  if (kd !== null) {
    inputs['zt'] = logitsBlock(chunkRows(kd.hidden, idx), kd.head);
    inputs['kdMask'] = tf.tensor1d(kdRows(kd, idx));
  }
  inputs['zs'] = logitsBlock(hc, w);
  if (ce !== null) {
    const { mask, labels } = ceRows(ce, idx);
    inputs['labels'] = tf.tensor1d(labels, 'int32');
    inputs['ceMask'] = tf.tensor1d(mask);
  }
  const attrs = { ceGrad: ce === null ? 0 : ce.weight / ce.count, kdGrad: kd === null ? 0 : (kd.weight * kd.tau) / kd.count, tau: kd?.tau ?? 1, grad };
  const [sums, g] = tf.engine().runKernel(HEAD_LOSS_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  for (const t of Object.values(inputs)) t.dispose();
  const s = sums as tf.Tensor1D;
  const ceChunk = tf.reshape(tf.slice(s, [0], [1]), []);
  const klChunk = tf.reshape(tf.slice(s, [1], [1]), []);
  if (!grad || g === undefined) return [ceChunk, klChunk];
  const dWc = productTA(g as tf.Tensor2D, hc, dWsum); // [V, C]: the sum over the chunks so far
  const dhc = gradProduct(g as tf.Tensor2D, w); // [r, C]
  g.dispose();
  return [ceChunk, klChunk, dhc, dWc];
}

/**
 * Rows idx of x: x itself when idx is every row in order (a chunk covering the whole batch, every position
 * active: the tiny config's head loss), else a gather.
 */
function chunkRows(x: tf.Tensor2D, idx: Int32Array): tf.Tensor2D {
  const all = idx.length === x.shape[0] && idx[0] === 0 && idx[idx.length - 1] === idx.length - 1;
  return all ? x : (tf.gather(x, tf.tensor1d(idx, 'int32')) as tf.Tensor2D);
}

/**
 * log softmax(x / tau) over the last axis, disposing `x`: at most two blocks of x's size at a time (tf.logSoftmax
 * holds four: its input, the shifted copy, a cast of it and the exponentials).
 */
function logSoftmaxOf(x: tf.Tensor2D, tau: number): tf.Tensor2D {
  return tf.tidy(() => {
    const a = tau === 1 ? x : tf.div(x, tau);
    if (a !== x) x.dispose();
    const b = tf.sub(a, tf.max(a, -1, true));
    a.dispose();
    const e = tf.exp(b);
    const lse = tf.log(tf.sum(e, -1, true));
    e.dispose();
    return tf.sub(b, lse) as tf.Tensor2D;
  });
}

/**
 * Whether tf.matMul's transpose flags run at full speed: everywhere but stock wasm (a copy of @bitdistill/model's
 * transposeFlagsFast, which this package does not depend on: the native kernels register BitDistillRmsNorm
 * together with their BatchMatMul).
 */
function transposeFlagsFast(): boolean {
  const b = tf.getBackend();
  return b !== 'wasm' || tf.getKernel('BitDistillRmsNorm', b) !== undefined;
}

/** z = x W^T [r, V]; without fast flags (W x^T)^T, transposing the [r, C] rows and the [V, r] block, not W. */
function logitsBlock(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  if (transposeFlagsFast()) return tf.matMul(x, w, false, true);
  return tf.tidy(() => {
    const zt = tf.matMul(w, tf.transpose(x)); // [V, r]
    const z = tf.transpose(zt) as tf.Tensor2D;
    zt.dispose();
    return z;
  });
}

/** The engine's kernel for a product of a backward pass (packages/backend; model's GRAD_MATMUL_KERNEL): bf16 operands under optim.gradPrecision bf16. */
const GRAD_MATMUL_KERNEL = 'BitDistillGradMatMul';

/**
 * g @ w (+ sum), a backward product: on GRAD_MATMUL_KERNEL where the backend registers it (which adds into sum's
 * own storage when nothing else holds it), else tf ops. With sum, the caller drops its sum handle afterwards.
 */
function gradProduct(g: tf.Tensor2D, w: tf.Tensor2D, transA = false, sum: tf.Tensor2D | null = null): tf.Tensor2D {
  if (tf.getKernel(GRAD_MATMUL_KERNEL, tf.getBackend()) === undefined) {
    return sum === null ? tf.matMul(g, w, transA, false) : tf.tidy(() => tf.add(sum, tf.matMul(g, w, transA, false)) as tf.Tensor2D);
  }
  const inputs: tf.NamedTensorMap = sum === null ? { a: g, b: w } : { a: g, b: w, c: sum };
  return tf.engine().runKernel(GRAD_MATMUL_KERNEL, inputs, { transposeA: transA, transposeB: false } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** g^T h (+ sum): [r, V]^T [r, C] -> [V, C]. */
function productTA(g: tf.Tensor2D, h: tf.Tensor2D, sum: tf.Tensor2D | null = null): tf.Tensor2D {
  if (transposeFlagsFast()) return gradProduct(g, h, true, sum);
  return tf.tidy(() => gradProduct(tf.transpose(g) as tf.Tensor2D, h, false, sum));
}

function makePlan(hidden: tf.Tensor, weight: tf.Tensor, options: FusedHeadLossOptions): Plan {
  const { ce, kd } = options;
  if (ce === undefined && kd === undefined) throw new ArgumentError(`${FN}: give ce, kd or both`, { hint: 'nothing to compute' });
  if (hidden.rank !== 2)
    throw new ShapeError(`${FN}: hidden must be [N, C] (rank 2), got ${shapeToString(hidden.shape)}`, {
      hint: "Decoder.forward(ids, { output: 'hidden' }) gives these rows",
    });
  if (weight.rank !== 2 || weight.shape[1] !== hidden.shape[1]) {
    throw new ShapeError(
      `${FN}: weight must be [V, C] with C = ${hidden.shape[1]} (hidden ${shapeToString(hidden.shape)}), got ${shapeToString(weight.shape)}`,
      {
        hint: 'pass the head in the Hugging Face layout [vocab, hidden] (tied embedding or lm_head)',
      },
    );
  }
  for (const [name, t] of [
    ['hidden', hidden],
    ['weight', weight],
  ] as const) {
    if (t.dtype !== 'float32') throw new ArgumentError(`${FN}: ${name} must be float32, got ${t.dtype}`);
  }
  const [N, C] = hidden.shape as [number, number];
  const V = weight.shape[0] as number;
  const chunkRows = options.chunkRows ?? autoChunkRows(V);
  if (!Number.isInteger(chunkRows) || chunkRows < 1) {
    throw new ArgumentError(`${FN}: chunkRows must be an integer >= 1 (or null for auto), got ${chunkRows}`, {
      hint: `auto gives ${autoChunkRows(V)} rows at V = ${V}`,
    });
  }
  const sizeN = (name: string, t: tf.Tensor) => {
    if (t.size !== N)
      throw new ShapeError(`${FN}: ${name} has ${t.size} entries ${shapeToString(t.shape)}, expected one per row of hidden: N = ${N}`, {
        hint: 'flatten [B, T] masks and labels in the same row order as hidden',
      });
  };

  let cePlan: Plan['ce'] = null;
  if (ce !== undefined) {
    sizeN('ce.labels', ce.labels);
    sizeN('ce.mask', ce.mask);
    if (ce.labels.dtype !== 'int32')
      throw new ArgumentError(`${FN}: ce.labels must be int32, got ${ce.labels.dtype}`, { hint: "build them with tf.tensor(ids, shape, 'int32')" });
    const labels = Int32Array.from(ce.labels.dataSync());
    const mask = Float32Array.from(ce.mask.dataSync());
    let count = 0;
    for (let n = 0; n < N; n++) {
      const m = mask[n] as number;
      if (m === 0) continue;
      const y = labels[n] as number;
      if (y < 0 || y >= V) {
        throw new ArgumentError(`${FN}: ce.labels[${n}] = ${y} is outside [0, V) = [0, ${V}) at a row the mask keeps`, {
          hint: 'the tokenizer and the model disagree on the vocabulary, or the mask marks a padding position',
        });
      }
      count += m;
    }
    cePlan = { labels, mask, count: Math.max(count, 1), weight: ce.weight ?? 1 };
  }

  let kdPlan: Plan['kd'] = null;
  if (kd !== undefined) {
    checkTemperature(FN, kd.temperature);
    sizeN('kd.mask', kd.mask);
    const th = kd.teacherHidden;
    const tw = kd.teacherWeight;
    if (th.rank !== 2 || th.shape[0] !== N || tw.rank !== 2 || tw.shape[0] !== V || tw.shape[1] !== th.shape[1]) {
      throw new ShapeError(
        `${FN}: kd.teacherHidden ${shapeToString(th.shape)} and kd.teacherWeight ${shapeToString(tw.shape)} must be [N, C'] and [V, C'] with N = ${N}, V = ${V}`,
        { hint: 'teacher and student must see the same rows and share the vocabulary' },
      );
    }
    const mask = Float32Array.from(kd.mask.dataSync());
    let count = 0;
    for (let n = 0; n < N; n++) count += mask[n] as number;
    kdPlan = { mask, count: Math.max(count, 1), weight: kd.weight ?? 1, tau: kd.temperature, hidden: th as tf.Tensor2D, head: tw as tf.Tensor2D };
  }

  const act: number[] = [];
  for (let n = 0; n < N; n++) {
    if ((cePlan !== null && cePlan.mask[n] !== 0) || (kdPlan !== null && kdPlan.mask[n] !== 0)) act.push(n);
  }
  return { N, V, C, active: Int32Array.from(act), chunk: chunkRows, ce: cePlan, kd: kdPlan };
}
