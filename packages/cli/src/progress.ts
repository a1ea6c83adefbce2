/**
 * Progress display for long work: a bar on a TTY (step, loss, lr, tokens/s, ETA), nothing extra otherwise
 * (the periodic log lines carry the same numbers).
 */
import cliProgress from 'cli-progress';

export interface StepProgress {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  etaSeconds: number;
}

export class ProgressBar {
  private bar: cliProgress.SingleBar | null = null;
  private readonly enabled: boolean;

  constructor(enabled = process.stderr.isTTY === true) {
    this.enabled = enabled;
  }

  start(label: string, total: number, start = 0): void {
    if (!this.enabled) return;
    this.stop();
    this.bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {value}/{total} | loss {loss} | lr {lr} | {tps} tok/s | ETA {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, start, { loss: '-', lr: '-', tps: '-' });
  }

  update(p: StepProgress): void {
    this.bar?.update(p.step, { loss: p.loss.toFixed(4), lr: p.lr.toExponential(2), tps: Math.round(p.tokensPerSecond) });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
