/**
 * The SubLN epsilon an export target applies. BitDistill's students normalise attn_sub_norm / ffn_sub_norm with
 * their own epsilon (config.json bitdistill.sublnEps, from student.sublnEps: 1e-8 by default, as the official
 * code); llama.cpp's bitnet graph and transformers' BitNetForCausalLM have one epsilon for every RMSNorm,
 * rms_norm_eps (GGUF bitnet.attention.layer_norm_rms_epsilon), and apply it to the SubLN too. When the two differ
 * the exporter measures what that costs on the written file - BitDistill's runtime run twice over a fixed probe
 * text, as trained and as the target computes - and reports it (docs/interop.md has measured values).
 */
import { UnsupportedError } from '@bitdistill/core';
import type { DecoderConfig } from '@bitdistill/arch';
import { TernaryRuntime } from '@bitdistill/runtime';

/** The probe: plain English that every tokenizer the exports take encodes into a few dozen tokens. */
const PROBE_TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.';
const PROBE_MAX_TOKENS = 48;

export interface SublnEpsMismatch {
  /** The student's SubLN epsilon. */
  trained: number;
  /** What the target applies (rms_norm_eps). */
  target: number;
  /** Logit differences over every position of the probe (null when BitDistill's runtime cannot run the file). */
  maxLogitDiff: number | null;
  meanLogitDiff: number | null;
  /** Probe positions whose greedy next token differs. */
  argmaxChanged: number | null;
  positions: number;
  /** Why nothing was measured, when it was not. */
  notMeasured?: string;
}

/** Null when the target computes the student exactly (no SubLN, or the same epsilon in float32). */
export function sublnEpsMismatch(file: string, c: DecoderConfig): SublnEpsMismatch | null {
  if (c.subln === 'none' || Math.fround(c.sublnEps) === Math.fround(c.rmsNormEps)) return null;
  let asTrained: TernaryRuntime;
  try {
    asTrained = TernaryRuntime.load(file);
  } catch (e) {
    if (!(e instanceof UnsupportedError)) throw e;
    return { trained: c.sublnEps, target: c.rmsNormEps, maxLogitDiff: null, meanLogitDiff: null, argmaxChanged: null, positions: 0, notMeasured: e.message };
  }
  const tok = asTrained.tokenizer;
  const ids = tok.encode(PROBE_TEXT, { addBos: tok.bosId !== null }).slice(0, Math.min(PROBE_MAX_TOKENS, c.maxPositionEmbeddings));
  const a = asTrained.forward(ids, { allPositions: true });
  const b = TernaryRuntime.load(file, { sublnEps: c.rmsNormEps }).forward(ids, { allPositions: true });
  const V = c.vocabSize;
  let max = 0;
  let sum = 0;
  let changed = 0;
  for (let t = 0; t < ids.length; t++) {
    let ia = 0;
    let ib = 0;
    for (let i = 0; i < V; i++) {
      const x = a[t * V + i] as number;
      const y = b[t * V + i] as number;
      const d = Math.abs(x - y);
      if (d > max) max = d;
      sum += d;
      if (x > (a[t * V + ia] as number)) ia = i;
      if (y > (b[t * V + ib] as number)) ib = i;
    }
    if (ia !== ib) changed++;
  }
  return { trained: c.sublnEps, target: c.rmsNormEps, maxLogitDiff: max, meanLogitDiff: sum / (ids.length * V), argmaxChanged: changed, positions: ids.length };
}

/** The warning's text, e.g. for a logger's message. */
export function describeSublnEpsMismatch(m: SublnEpsMismatch, target: string): string {
  const what =
    m.maxLogitDiff === null
      ? `not measured (${m.notMeasured ?? "BitDistill's runtime cannot run this file"})`
      : `on a ${m.positions}-token probe the logits differ by up to ${m.maxLogitDiff.toPrecision(3)} (mean ${(m.meanLogitDiff ?? 0).toPrecision(3)}), the greedy token at ${m.argmaxChanged} of ${m.positions} positions`;
  return `the student's SubLN epsilon is ${m.trained}; ${target} applies rms_norm_eps = ${m.target} to attn_sub_norm / ffn_sub_norm: ${what}. Train with student.sublnEps=${m.target} to make them equal (docs/interop.md)`;
}
