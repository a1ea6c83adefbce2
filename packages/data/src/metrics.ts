/**
 * GLUE metrics on plain arrays, as in the GLUE benchmark (and scikit-learn / scipy):
 *   accuracy   fraction of exact matches
 *   f1         binary F1 with label 1 as the positive class (MRPC: equivalent, QQP: duplicate)
 *   matthews   Matthews correlation (CoLA), multi-class form (Gorodkin 2004), equal to the binary MCC for 2 classes
 *   pearson    Pearson correlation (STS-B)
 *   spearman   Pearson correlation of the ranks, ties given their average rank (STS-B)
 * Predictions for classification are class indices; -1 (no label word generated) counts as wrong everywhere.
 * Where a metric is undefined (a constant input, no positives at all) it is 0, as scikit-learn reports it, so
 * that checkpoints stay comparable.
 */
import { ArgumentError } from '@bitdistill/core';
import { scoreRange } from './tasks.ts';
import type { MetricName, TaskSpec } from './tasks.ts';

type Values = ArrayLike<number>;

function checkPair(name: string, preds: Values, golds: Values): void {
  if (preds.length !== golds.length) {
    throw new ArgumentError(`${name}: ${preds.length} predictions for ${golds.length} gold labels`);
  }
  if (preds.length === 0) throw new ArgumentError(`${name}: no examples`);
}

export function accuracy(preds: Values, golds: Values): number {
  checkPair('accuracy', preds, golds);
  let hit = 0;
  for (let i = 0; i < preds.length; i++) if (preds[i] === golds[i]) hit++;
  return hit / preds.length;
}

/** Binary F1 of class 1: 2 TP / (2 TP + FP + FN). */
export function f1(preds: Values, golds: Values): number {
  checkPair('f1', preds, golds);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < preds.length; i++) {
    const p = preds[i] === 1;
    const g = golds[i] === 1;
    if (p && g) tp++;
    else if (p) fp++;
    else if (g) fn++;
  }
  const denom = 2 * tp + fp + fn;
  return denom === 0 ? 0 : (2 * tp) / denom;
}

/**
 * Matthews correlation from the confusion matrix: (c s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)),
 * with c correct, s samples, p_k predicted and t_k true counts of class k. A prediction outside the gold classes
 * is in s but in no p_k.
 */
export function matthews(preds: Values, golds: Values): number {
  checkPair('matthews', preds, golds);
  const t = new Map<number, number>();
  const p = new Map<number, number>();
  let c = 0;
  const s = preds.length;
  for (let i = 0; i < s; i++) {
    const g = golds[i] as number;
    t.set(g, (t.get(g) ?? 0) + 1);
  }
  for (let i = 0; i < s; i++) {
    const q = preds[i] as number;
    if (t.has(q)) p.set(q, (p.get(q) ?? 0) + 1);
    if (q === golds[i]) c++;
  }
  let pt = 0;
  let pp = 0;
  let tt = 0;
  for (const [k, tk] of t) {
    const pk = p.get(k) ?? 0;
    pt += pk * tk;
    pp += pk * pk;
    tt += tk * tk;
  }
  const denom = Math.sqrt((s * s - pp) * (s * s - tt));
  return denom === 0 ? 0 : (c * s - pt) / denom;
}

export function pearson(x: Values, y: Values): number {
  checkPair('pearson', x, y);
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i] as number;
    my += y[i] as number;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = (x[i] as number) - mx;
    const dy = (y[i] as number) - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  const denom = Math.sqrt(sxx * syy);
  return denom === 0 ? 0 : sxy / denom;
}

/** 1-based ranks; tied values share the average of the ranks they span. */
export function averageRanks(x: Values): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => (x[a] as number) - (x[b] as number));
  const ranks = new Float64Array(x.length);
  let i = 0;
  while (i < order.length) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1] as number] === x[order[i] as number]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k] as number] = rank;
    i = j + 1;
  }
  return ranks;
}

export function spearman(x: Values, y: Values): number {
  checkPair('spearman', x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

const METRIC_FNS: Record<MetricName, (preds: Values, golds: Values) => number> = {
  accuracy,
  f1,
  matthews,
  pearson,
  spearman,
};

/**
 * Every metric of the task, in the task's order (the first is the headline used to pick checkpoints).
 * `preds`: class indices (-1 for no valid answer) or, for regression, the predicted scores (NaN for no answer:
 * replaced by the middle of the score range, 2.5 for STS-B, so that one bad answer does not make the
 * correlation NaN).
 */
export function computeMetrics(task: TaskSpec, preds: Values, golds: Values): Partial<Record<MetricName, number>> {
  checkPair(`metrics for ${task.name}`, preds, golds);
  let p: Values = preds;
  if (task.kind === 'regression') {
    const [lo, hi] = scoreRange(task);
    const middle = (lo + hi) / 2;
    p = Float64Array.from({ length: preds.length }, (_, i) => {
      const v = preds[i] as number;
      return Number.isFinite(v) ? v : middle;
    });
  }
  const out: Partial<Record<MetricName, number>> = {};
  for (const m of task.metrics) out[m] = METRIC_FNS[m](p, golds);
  return out;
}
