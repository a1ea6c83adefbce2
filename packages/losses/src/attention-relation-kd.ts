/**
 * L_AD of Stage 3 (PAPER.md §5): MiniLMv2-style multi-head attention-relation distillation at one layer.
 * Q, K and V ([B, H, T, d], key/value heads not expanded) are regrouped into `relationHeads` relation heads,
 * and the student's row-wise relation distributions are pulled towards the teacher's.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, ShapeError, fusedOpsEnabled, shapeToString } from '@bitdistill/core';
import { checkRank } from './checks.ts';

const FN = 'attentionRelationKd';

export const RELATIONS = ['cosine', 'scaled'] as const;
/** `cosine`: L2-normalised A A^T, as the official code; `scaled`: A A^T / sqrt(D), as the paper writes it. */
export type Relation = (typeof RELATIONS)[number];

/** One attention layer's captured projections, each [B, H, T, d] (Q and K after their norms and RoPE, V raw). */
export interface QKV {
  q: tf.Tensor;
  k: tf.Tensor;
  v: tf.Tensor;
}

export interface AttentionRelationKdOptions {
  relationHeads: number;
  relation: Relation;
  /**
   * Batch elements per chunk (the loss and its gradient are formed chunk by chunk, see below); null / undefined
   * = auto: [chunk, R, T, T] blocks of at most 64 MiB.
   */
  batchChunk?: number | null;
}

/** Floors of the official code: the L2 norm (as F.normalize) and the relation probabilities. */
const NORM_EPS = 1e-12;
const PROB_FLOOR = 1e-8;

const PARTS = ['q', 'k', 'v'] as const;

/** Bytes of one [chunk, R, T, T] fp32 block that `batchChunk: null` aims at. */
const AUTO_BLOCK_BYTES = 64 * 1024 * 1024;

/** Batch elements per chunk when none is set: floor(64 MiB / (4 R T^2)), at least 1. */
export function autoBatchChunk(relationHeads: number, T: number): number {
  return Math.max(1, Math.floor(AUTO_BLOCK_BYTES / (4 * relationHeads * T * T)));
}

/**
 * For each of q, k, v: concatenate heads ([B, T, H*d]), re-split into `relationHeads` heads of size
 * D = H*d / relationHeads, relation = A A^T per head ([B, R, T, T]), row softmax, clamp at 1e-8, and
 * KL(teacher || student) per row, averaged over the B * R * T rows. The three terms are summed and divided by
 * `relationHeads` (the official code divides by layers * relationHeads; we distil one layer).
 * No causal and no padding mask, as the official code. Teacher and student may split H*d differently
 * (teacher q [B, 4, T, 8], student q [B, 2, T, 16]); the teacher side gets no gradient.
 *
 * Memory: written with tf autograd this kept about 50 [B, R, T, T] fp32 tensors alive through the backward
 * pass (measured: 0.9 GB at Qwen3-0.6B's B = 8, T = 128, R = 32; it grows with T^2: 13 GB at T = 512). Here the
 * loss runs over chunks of batch elements inside a tf.customGrad whose forward also forms the gradient with
 * respect to the student's q, k, v (the relation rows of different batch elements are independent), so only a
 * handful of [chunk, R, T, T] blocks exist at a time and only dq, dk, dv ([B, H, T, d]) are kept for backward.
 */
export function attentionRelationKd(teacher: QKV, student: QKV, options: AttentionRelationKdOptions): tf.Scalar {
  const { relationHeads, relation } = options;
  checkOptions(relationHeads, relation);
  checkShapes(teacher, student, relationHeads);
  const [B, , T] = student.q.shape as [number, number, number, number];
  const chunk = options.batchChunk ?? autoBatchChunk(relationHeads, T);
  if (!Number.isInteger(chunk) || chunk < 1) {
    throw new ArgumentError(`${FN}: batchChunk must be an integer >= 1 (or null for auto), got ${chunk}`, {
      hint: `auto gives ${autoBatchChunk(relationHeads, T)}`,
    });
  }
  const R = relationHeads;
  const inputs = [teacher.q, teacher.k, teacher.v, student.q, student.k, student.v];
  const fused = fusedOpsEnabled() && inputs.every((t) => t.dtype === 'float32') && tf.getKernel(RELATION_KD_KERNEL, tf.getBackend()) !== undefined;
  const run = (grad: boolean, xs: tf.Tensor[]) =>
    fused ? relationKdFused(xs, R, relation, grad) : relationKdChunks(xs.slice(0, 3), xs.slice(3, 6), R, relation, Math.min(chunk, B), grad);
  if (!tf.engine().isTapeOn()) return tf.tidy(() => run(false, inputs).loss);
  // Only the student's q, k, v are the op's inputs: the teacher's enter as constants (as in fusedHeadLoss; no
  // gradient path, so the backward forms no zero gradients for them).
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xs = args.slice(0, 3) as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const { loss, grads } = run(true, [...inputs.slice(0, 3), ...xs]);
    save(grads);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        // The student dx scaled by the upstream gradient.
        const out = saved.map((g) => tf.mul(g, dy));
        for (const g of saved) g.dispose(); // release now rather than when the whole backward pass ends
        return out;
      },
    };
  });
  return op(...inputs.slice(3)) as tf.Scalar;
}

/**
 * The fused form (packages/backend registers it on the native engine): one native pass per part, per (batch,
 * relation head) in scratch, so no [B, R, T, T] tensor exists at all; the op-by-op chunks below are its twin.
 */
export const RELATION_KD_KERNEL = 'BitDistillRelationKd';

function relationKdFused(xs: tf.Tensor[], R: number, relation: Relation, grad: boolean): { loss: tf.Scalar; grads: tf.Tensor[] } {
  const [tq, tk, tv, sq, sk, sv] = xs as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
  const outs = tf.engine().runKernel(RELATION_KD_KERNEL, { tq, tk, tv, sq, sk, sv }, { relationHeads: R, cosine: relation === 'cosine', grad }) as tf.Tensor[];
  return { loss: outs[0] as tf.Scalar, grads: outs.slice(1) };
}

/**
 * The loss over batch chunks and, with `grad`, its gradient with respect to the student's q, k, v. Every
 * [b, R, T, T] block is disposed as soon as it has been used.
 */
function relationKdChunks(
  teacher: tf.Tensor[],
  student: tf.Tensor[],
  R: number,
  relation: Relation,
  chunk: number,
  grad: boolean,
): { loss: tf.Scalar; grads: tf.Tensor[] } {
  const [B, , T] = student[0]!.shape as [number, number, number, number];
  const rows = B * R * T; // the batchmean of every part: B * R * T relation rows
  let total: tf.Scalar = tf.scalar(0);
  const parts: tf.Tensor[][] = [[], [], []];
  for (let b0 = 0; b0 < B; b0 += chunk) {
    const bc = Math.min(chunk, B - b0);
    for (let p = 0; p < 3; p++) {
      const out = tf.tidy(() => {
        const cut = (x: tf.Tensor) => (bc === B ? x : tf.slice(x, [b0, 0, 0, 0], [bc, -1, -1, -1]));
        const logPT = relationLogProbs(cut(teacher[p]!), R, relation); // [b, R, T, T]
        const xs = cut(student[p]!);
        const a = regroup(xs, R); // [b, R, T, D]
        const D = a.shape[3] as number;
        let an = a; // the rows whose products are the relation: a / |a| (cosine) or a
        let norm: tf.Tensor | null = null;
        let big: tf.Tensor | null = null; // |a|^2 >= eps^2: where the norm's gradient passes
        if (relation === 'cosine') {
          const ss = tf.sum(tf.square(a), -1, true);
          norm = tf.sqrt(tf.maximum(ss, NORM_EPS * NORM_EPS));
          big = tf.cast(tf.greaterEqual(ss, NORM_EPS * NORM_EPS), 'float32');
          an = tf.div(a, norm);
        }
        // [b, R, T, T] blocks: each nested tidy leaves one, and the ones used up are disposed at once.
        const prob = tf.tidy(() => tf.softmax(relation === 'cosine' ? tf.matMul(an, an, false, true) : tf.div(tf.matMul(a, a, false, true), Math.sqrt(D)))); // [logPT, prob]
        const clamped = tf.maximum(prob, PROB_FLOOR); // [logPT, prob, clamped]
        const kl = tf.tidy(() => {
          const pT = tf.exp(logPT);
          return tf.div(tf.sum(tf.mul(pT, tf.sub(logPT, tf.log(clamped)))), rows * R) as tf.Scalar;
        });
        if (!grad) return [kl];
        // d kl / d prob = -pT / (rows R) / clamped where prob >= floor (tf.maximum passes the gradient there)
        const gP = tf.tidy(() => tf.where(tf.greaterEqual(prob, PROB_FLOOR), tf.div(tf.mul(tf.exp(logPT), -1 / (rows * R)), clamped), tf.zerosLike(prob))); // [logPT, prob, clamped, gP]
        tf.dispose([logPT, clamped]); // [prob, gP]
        // softmax backward: dS = P * (gP - sum(gP * P)); S symmetric in an: d an = (dS + dS^T) an
        const dS = tf.tidy(() => tf.mul(prob, tf.sub(gP, tf.sum(tf.mul(gP, prob), -1, true)))); // [prob, gP, dS]
        tf.dispose([prob, gP]); // [dS]
        const dSym = tf.add(dS, tf.transpose(dS, [0, 1, 3, 2])); // [dS, dS^T, dSym]
        dS.dispose(); // [dS^T, dSym] until the tidy ends
        let da: tf.Tensor;
        if (relation === 'cosine') {
          const dan = tf.matMul(dSym, an);
          // an = a / n, n = sqrt(max(|a|^2, eps^2)): da = (dan - an (an . dan) [|a|^2 >= eps^2]) / n
          da = tf.div(tf.sub(dan, tf.mul(an, tf.mul(tf.sum(tf.mul(an, dan), -1, true), big as tf.Tensor))), norm as tf.Tensor);
        } else {
          da = tf.div(tf.matMul(dSym, a), Math.sqrt(D));
        }
        return [kl, ungroup(da, xs.shape as [number, number, number, number])];
      });
      const next = tf.add(total, out[0] as tf.Tensor) as tf.Scalar;
      tf.dispose([total, out[0] as tf.Tensor]);
      total = next;
      if (grad) parts[p]!.push(out[1] as tf.Tensor);
    }
  }
  const loss = total;
  if (!grad) return { loss, grads: [] };
  const grads = parts.map((ps) => {
    if (ps.length === 1) return ps[0] as tf.Tensor;
    const g = tf.concat(ps, 0);
    tf.dispose(ps);
    return g;
  });
  return { loss, grads };
}

/** x [B, H, T, d] -> heads concatenated and re-split into R heads: [B, R, T, D], D = H*d / R. */
function regroup(x: tf.Tensor, R: number): tf.Tensor {
  const [B, H, T, d] = x.shape as [number, number, number, number];
  return tf.transpose(tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, T, R, (H * d) / R]), [0, 2, 1, 3]);
}

/** The inverse of regroup: [B, R, T, D] -> [B, H, T, d] of `shape`. */
function ungroup(a: tf.Tensor, shape: [number, number, number, number]): tf.Tensor {
  const [B, H, T, d] = shape;
  return tf.transpose(tf.reshape(tf.transpose(a, [0, 2, 1, 3]), [B, T, H, d]), [0, 2, 1, 3]);
}

/** log of the clamped row-softmax of the relation of `x` [B, H, T, d] regrouped into R heads: [B, R, T, T]. */
function relationLogProbs(x: tf.Tensor, R: number, relation: Relation): tf.Tensor {
  return tf.tidy(() => {
    const [, H, , d] = x.shape as [number, number, number, number];
    const D = (H * d) / R;
    let a = regroup(x, R); // [B, R, T, D]
    let scores: tf.Tensor;
    if (relation === 'cosine') {
      // sqrt(max(|a|^2, eps^2)) == max(|a|, eps) in value, but keeps the gradient finite at a zero vector.
      const norm = tf.sqrt(tf.maximum(tf.sum(tf.square(a), -1, true), NORM_EPS * NORM_EPS));
      a = tf.div(a, norm);
      scores = tf.matMul(a, a, false, true);
    } else {
      scores = tf.div(tf.matMul(a, a, false, true), Math.sqrt(D));
    }
    return tf.log(tf.maximum(tf.softmax(scores), PROB_FLOOR));
  });
}

function checkOptions(relationHeads: number, relation: string): void {
  if (!Number.isInteger(relationHeads) || relationHeads < 1) {
    throw new ArgumentError(`${FN}: relationHeads must be an integer >= 1, got ${relationHeads}`, {
      hint: 'the official code uses relationHeads = 32',
    });
  }
  if (!(RELATIONS as readonly string[]).includes(relation)) {
    throw new ArgumentError(`${FN}: unknown relation '${relation}'`, { hint: `use one of ${RELATIONS.join(', ')}` });
  }
}

function checkShapes(teacher: QKV, student: QKV, relationHeads: number): void {
  const first = teacher.q.shape;
  const widths: number[] = [];
  for (const p of PARTS) {
    for (const [side, t] of [
      ['teacher', teacher[p]],
      ['student', student[p]],
    ] as const) {
      checkRank(FN, `${side}.${p}`, t.shape, '[B, H, T, d]');
      if (t.shape[0] !== first[0] || t.shape[2] !== first[2]) {
        throw new ShapeError(
          `${FN}: ${side}.${p} ${shapeToString(t.shape)} does not share B and T with teacher.q ${shapeToString(first)}: ` +
            `expected [${first[0]}, *, ${first[2]}, *]`,
          { hint: 'teacher and student must be captured on the same batch; q, k and v are [B, H, T, d]' },
        );
      }
    }
    const ts = teacher[p].shape;
    const ss = student[p].shape;
    const tw = (ts[1] as number) * (ts[3] as number);
    const sw = (ss[1] as number) * (ss[3] as number);
    if (tw !== sw) {
      throw new ShapeError(
        `${FN}: teacher.${p} ${shapeToString(ts)} has H*d = ${tw} but student.${p} ${shapeToString(ss)} has H*d = ${sw}; they must be equal`,
        { hint: 'distil a layer whose concatenated head width is the same in teacher and student' },
      );
    }
    widths.push(tw);
  }
  PARTS.forEach((p, i) => {
    const w = widths[i] as number;
    if (w % relationHeads !== 0) {
      const fit = divisors(widths.reduce(gcd));
      throw new ShapeError(
        `${FN}: relationHeads = ${relationHeads} does not divide H*d = ${w} of ${p} (teacher.${p} ${shapeToString(teacher[p].shape)}); ` +
          `relationHeads that fit q, k and v: ${fit.join(', ')}`,
        { hint: 'set relationHeads to one of the values listed' },
      );
    }
  });
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (n % i === 0) out.push(i);
  return out;
}
