/**
 * tfjs-free reference twins of the three losses: plain loops in float64, written straight from PAPER.md §5,
 * so the tfjs versions can be tested against an independent computation. Inputs are trusted (no checks).
 */
import type { Relation } from './attention-relation-kd.ts';

/** A row-major array with its shape. */
export interface RefTensor {
  data: ArrayLike<number>;
  shape: readonly number[];
}

function dims(t: RefTensor, n: number): number[] {
  return Array.from({ length: n }, (_, i) => t.shape[i] as number);
}

/** log softmax of `row` / temperature, in float64. */
function logSoftmax(row: ArrayLike<number>, start: number, len: number, temperature = 1): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < len; i++) max = Math.max(max, (row[start + i] as number) / temperature);
  let sum = 0;
  for (let i = 0; i < len; i++) sum += Math.exp((row[start + i] as number) / temperature - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) out[i] = (row[start + i] as number) / temperature - lse;
  return out;
}

/** Twin of answerCrossEntropy: logits [B, T, V], labels [B, T], answerMask [B, T]. */
export function answerCrossEntropyRef(logits: RefTensor, labels: RefTensor, answerMask: RefTensor): number {
  const [B, T, V] = dims(logits, 3) as [number, number, number];
  let sum = 0;
  let count = 0;
  for (let n = 0; n < B * T; n++) {
    const m = answerMask.data[n] as number;
    if (m === 0) continue;
    const lp = logSoftmax(logits.data, n * V, V);
    sum -= m * (lp[labels.data[n] as number] as number);
    count += m;
  }
  return sum / Math.max(count, 1);
}

/** Twin of logitKd: teacher/student logits [B, T, V], mask [B, T]. */
export function logitKdRef(teacherLogits: RefTensor, studentLogits: RefTensor, mask: RefTensor, temperature: number): number {
  const [B, T, V] = dims(teacherLogits, 3) as [number, number, number];
  let sum = 0;
  let count = 0;
  for (let n = 0; n < B * T; n++) {
    const m = mask.data[n] as number;
    if (m === 0) continue;
    const lt = logSoftmax(teacherLogits.data, n * V, V, temperature);
    const ls = logSoftmax(studentLogits.data, n * V, V, temperature);
    let kl = 0;
    for (let i = 0; i < V; i++) kl += Math.exp(lt[i] as number) * ((lt[i] as number) - (ls[i] as number));
    sum += m * kl;
    count += m;
  }
  return (sum / Math.max(count, 1)) * temperature * temperature;
}

export interface RefQKV {
  q: RefTensor;
  k: RefTensor;
  v: RefTensor;
}

/** Clamped row-softmax relation of x [B, H, T, d] regrouped into R heads: probabilities [B, R, T, T]. */
function relationProbs(x: RefTensor, R: number, relation: Relation): { probs: Float64Array; rows: number; T: number } {
  const [B, H, T, d] = dims(x, 4) as [number, number, number, number];
  const D = (H * d) / R;
  // a[b, r, t, i] = x[b, h, t, j] with r * D + i = h * d + j: heads concatenated, then re-split.
  const a = new Float64Array(B * R * T * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < H * d; c++) {
        const h = Math.floor(c / d);
        const r = Math.floor(c / D);
        a[((b * R + r) * T + t) * D + (c % D)] = x.data[((b * H + h) * T + t) * d + (c % d)] as number;
      }
    }
  }
  if (relation === 'cosine') {
    for (let v = 0; v < B * R * T; v++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += (a[v * D + i] as number) ** 2;
      const norm = Math.max(Math.sqrt(ss), 1e-12);
      for (let i = 0; i < D; i++) a[v * D + i] = (a[v * D + i] as number) / norm;
    }
  }
  const scale = relation === 'scaled' ? 1 / Math.sqrt(D) : 1;
  const rows = B * R * T;
  const probs = new Float64Array(rows * T);
  const scores = new Float64Array(T);
  for (let br = 0; br < B * R; br++) {
    for (let t = 0; t < T; t++) {
      for (let s = 0; s < T; s++) {
        let dot = 0;
        for (let i = 0; i < D; i++) dot += (a[(br * T + t) * D + i] as number) * (a[(br * T + s) * D + i] as number);
        scores[s] = dot * scale;
      }
      const lp = logSoftmax(scores, 0, T);
      for (let s = 0; s < T; s++) probs[(br * T + t) * T + s] = Math.max(Math.exp(lp[s] as number), 1e-8);
    }
  }
  return { probs, rows, T };
}

/** Twin of attentionRelationKd: each of q, k, v is [B, H, T, d]. */
export function attentionRelationKdRef(teacher: RefQKV, student: RefQKV, options: { relationHeads: number; relation: Relation }): number {
  const { relationHeads, relation } = options;
  let total = 0;
  for (const p of ['q', 'k', 'v'] as const) {
    const pt = relationProbs(teacher[p], relationHeads, relation);
    const ps = relationProbs(student[p], relationHeads, relation);
    let kl = 0;
    for (let i = 0; i < pt.probs.length; i++) {
      const t = pt.probs[i] as number;
      kl += t * (Math.log(t) - Math.log(ps.probs[i] as number));
    }
    total += kl / pt.rows;
  }
  return total / relationHeads;
}
