/**
 * Learning-rate schedules with linear warmup. `wsd` (warmup-stable-decay) keeps the peak LR until the last
 * `decayRatio` of training, which PAPER.md section 9 links to lower quantization error.
 */
import { SCHEDULES, type ScheduleKind } from '@bitdistill/config';
export { SCHEDULES, type ScheduleKind };

export interface ScheduleOptions {
  kind: ScheduleKind;
  peakLr: number;
  totalSteps: number;
  warmupSteps: number;
  /** wsd only: fraction of totalSteps spent decaying to 0 at the end. */
  decayRatio?: number;
}

/** LR for optimizer step `step` (0-based: the first update uses step 0). */
export function learningRate(o: ScheduleOptions, step: number): number {
  const { peakLr, totalSteps, warmupSteps } = o;
  if (warmupSteps > 0 && step < warmupSteps) return (peakLr * (step + 1)) / warmupSteps;
  if (o.kind === 'constant') return peakLr;
  const decaySteps = Math.max(1, totalSteps - warmupSteps);
  const progress = Math.min(1, (step - warmupSteps) / decaySteps);
  if (o.kind === 'linear') return peakLr * (1 - progress);
  if (o.kind === 'cosine') return peakLr * 0.5 * (1 + Math.cos(Math.PI * progress));
  const decayLen = Math.max(1, Math.round((o.decayRatio ?? 0.2) * totalSteps));
  const decayStart = totalSteps - decayLen;
  if (step < decayStart) return peakLr;
  return peakLr * Math.max(0, 1 - (step - decayStart) / decayLen);
}
