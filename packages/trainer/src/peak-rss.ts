/**
 * Peak resident memory per stage. Linux keeps the process's high-water mark in /proc/self/status (VmHWM) and
 * lets a process reset it to the current RSS by writing "5" to /proc/self/clear_refs; run.ts resets it when a
 * stage starts, so the peak read when the stage ends is that stage's own. Where the reset is refused (or off
 * Linux) the peak is the process's (getrusage maxRSS) and says so (`scope: 'process'`).
 */
import { readFileSync, writeFileSync } from 'node:fs';

const MiB = 2 ** 20;

export interface RssReading {
  /** High-water mark since the last reset (or process start), bytes. */
  peakBytes: number;
  /** Current RSS, bytes. */
  rssBytes: number;
}

/** VmHWM / VmRSS from /proc/self/status; getrusage / memoryUsage elsewhere. */
export function readRss(): RssReading {
  try {
    const s = readFileSync('/proc/self/status', 'utf8');
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(s);
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(s);
    if (hwm !== null && rss !== null) return { peakBytes: Number(hwm[1]) * 1024, rssBytes: Number(rss[1]) * 1024 };
  } catch {
    // not Linux
  }
  return { peakBytes: process.resourceUsage().maxRSS * 1024, rssBytes: process.memoryUsage().rss };
}

/** The largest peak seen before any reset: what the process as a whole reached. */
let processPeakBytes = 0;
/** Whether the high-water mark was reset at the start of the current stage. */
let resetForStage = false;

/** Call when a stage starts: remembers the process peak so far and resets the high-water mark if Linux allows it. */
export function startStagePeak(): boolean {
  processPeakBytes = Math.max(processPeakBytes, readRss().peakBytes);
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    resetForStage = true;
  } catch {
    resetForStage = false;
  }
  return resetForStage;
}

export interface StagePeak {
  /** The stage's own peak RSS (since startStagePeak), or the process's when the reset was not possible. */
  peakRssMiB: number;
  /** The process's peak RSS so far (every stage run in this process, and loading before them). */
  processPeakRssMiB: number;
  /** RSS now, at the stage's end. */
  rssMiB: number;
  scope: 'stage' | 'process';
}

/** Call when a stage ends. */
export function readStagePeak(): StagePeak {
  const r = readRss();
  processPeakBytes = Math.max(processPeakBytes, r.peakBytes);
  const round = (b: number) => Math.round(b / MiB);
  const scope = resetForStage ? 'stage' : 'process';
  resetForStage = false;
  return {
    peakRssMiB: round(scope === 'stage' ? r.peakBytes : processPeakBytes),
    processPeakRssMiB: round(processPeakBytes),
    rssMiB: round(r.rssBytes),
    scope,
  };
}
