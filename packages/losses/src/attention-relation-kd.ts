/**
 * L_AD of Stage 3 (PAPER.md §5): MiniLMv2-style multi-head attention-relation distillation at one layer.
 * Q, K and V ([B, H, T, d], key/value heads not expanded) are regrouped into `relationHeads` relation heads,
 * and the student's row-wise relation distributions are pulled towards the teacher's.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, ShapeError, shapeToString } from '@bitdistill/core';
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
}

/** Floors of the official code: the L2 norm (as F.normalize) and the relation probabilities. */
const NORM_EPS = 1e-12;
const PROB_FLOOR = 1e-8;

const PARTS = ['q', 'k', 'v'] as const;

/**
 * For each of q, k, v: concatenate heads ([B, T, H*d]), re-split into `relationHeads` heads of size
 * D = H*d / relationHeads, relation = A A^T per head ([B, R, T, T]), row softmax, clamp at 1e-8, and
 * KL(teacher || student) per row, averaged over the B * R * T rows. The three terms are summed and divided by
 * `relationHeads` (the official code divides by layers * relationHeads; we distil one layer).
 * No causal and no padding mask, as the official code. Teacher and student may split H*d differently
 * (teacher q [B, 4, T, 8], student q [B, 2, T, 16]); the teacher side gets no gradient.
 */
export function attentionRelationKd(teacher: QKV, student: QKV, options: AttentionRelationKdOptions): tf.Scalar {
  const { relationHeads, relation } = options;
  checkOptions(relationHeads, relation);
  checkShapes(teacher, student, relationHeads);

  return tf.tidy(() => {
    let total: tf.Tensor = tf.scalar(0);
    for (const p of PARTS) {
      const logPT = teacherRelationLogProbs(teacher[p], relationHeads, relation); // [B, R, T, T]
      const logPS = relationLogProbs(student[p], relationHeads, relation);
      const rows = logPT.size / (logPT.shape[3] as number);
      const kl = tf.sum(tf.mul(tf.exp(logPT), tf.sub(logPT, logPS))); // summed over every row
      total = tf.add(total, tf.div(kl, rows));
    }
    return tf.div(total, relationHeads) as tf.Scalar;
  });
}

/**
 * relationLogProbs of the teacher, with zero gradient (as stopGradient) and computed inside a custom gradient's
 * forward, which tfjs does not record: none of its [B, R, T, T] intermediates is kept for the backward pass.
 */
function teacherRelationLogProbs(x: tf.Tensor, R: number, relation: Relation): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return { value: relationLogProbs(input, R, relation), gradFunc: () => [tf.zerosLike(input)] };
  });
  return f(x);
}

/** log of the clamped row-softmax of the relation of `x` [B, H, T, d] regrouped into R heads: [B, R, T, T]. */
function relationLogProbs(x: tf.Tensor, R: number, relation: Relation): tf.Tensor {
  const [B, H, T, d] = x.shape as [number, number, number, number];
  const D = (H * d) / R;
  let a = tf.transpose(tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, T, R, D]), [0, 2, 1, 3]); // [B, R, T, D]
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
    for (const [side, t] of [['teacher', teacher[p]], ['student', student[p]]] as const) {
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
