// The fuzz campaign's worker process (forked by scripts/fuzz/index.ts): builds the targets once, then runs the
// cases the parent sends one at a time and answers each with its outcome. The parent times every case and kills
// this process on a hang, a crash or runaway memory, then forks a new one for the next case.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng, isBitDistillError } from '@bitdistill/core';
import { mutate } from './mutate.ts';
import { Garbage, makeTargets, type Target } from './targets.ts';

export type Outcome = 'typed' | 'plausible' | 'generic' | 'garbage';

export interface CaseRequest {
  target: string;
  index: number;
  seed: number;
}

export interface CaseReply {
  target: string;
  index: number;
  outcome: Outcome;
  /** The mutation, and for errors the message (first line, shortened). */
  what: string;
  detail: string;
  ms: number;
}

/** The rng of case `index` of `target`: a pure function of the campaign seed, the target name and the index. */
export function caseRng(seed: number, target: string, index: number): Rng {
  let h = seed >>> 0;
  for (const c of target) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return new Rng((h ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
}

async function runCase(t: Target, req: CaseRequest, work: string): Promise<CaseReply> {
  const rng = caseRng(req.seed, req.target, req.index);
  const seed = t.seeds[rng.int(t.seeds.length)] as NonNullable<Target['seeds'][number]>;
  const total = seed.files.reduce((a, f) => a + f.weight, 0);
  let r = rng.next() * total;
  const victim = seed.files.find((f) => (r -= f.weight) < 0) ?? (seed.files[0] as NonNullable<(typeof seed.files)[number]>);
  const m = mutate(rng, victim.bytes, victim.kind);
  const dir = join(work, 'case');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of seed.files) writeFileSync(join(dir, f.rel), f === victim ? m.bytes : f.bytes);
  const what = `${seed.label}: ${victim.rel}: ${m.what}`;
  const t0 = performance.now();
  let outcome: Outcome = 'plausible';
  let detail = '';
  try {
    await t.run(join(dir, seed.entry));
  } catch (e) {
    outcome = e instanceof Garbage ? 'garbage' : isBitDistillError(e) ? 'typed' : 'generic';
    detail = `${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`.split('\n')[0]?.slice(0, 300) ?? '';
    // BITDISTILL_FUZZ_STACK=1 (with --case) shows where a defect comes from.
    if (process.env['BITDISTILL_FUZZ_STACK'] === '1' && e instanceof Error) detail += `\n${e.stack ?? ''}`;
  }
  return { target: req.target, index: req.index, outcome, what, detail, ms: performance.now() - t0 };
}

/**
 * Every seed, unmutated, must load plausibly: a target whose reader refuses its own seeds would report nothing
 * but typed errors and prove nothing. Returns the failures.
 */
async function checkSeeds(targets: Iterable<Target>, work: string): Promise<string[]> {
  const bad: string[] = [];
  for (const t of targets) {
    if (t.name.startsWith('selftest-') && t.name !== 'selftest-badseed') continue;
    for (const seed of t.seeds) {
      const dir = join(work, 'seed-check');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      for (const f of seed.files) writeFileSync(join(dir, f.rel), f.bytes);
      try {
        await t.run(join(dir, seed.entry));
      } catch (e) {
        bad.push(`${t.name} seed '${seed.label}' does not load: ${e instanceof Error ? e.message : String(e)}`.slice(0, 400));
      }
    }
  }
  return bad;
}

async function main(): Promise<void> {
  const work = process.argv[2] as string;
  const only = process.argv[3] === undefined || process.argv[3] === '' ? undefined : process.argv[3].split(',');
  const targets = new Map((await makeTargets(join(work, 'seeds'), only)).map((t) => [t.name, t]));
  const bad = await checkSeeds(targets.values(), work);
  if (bad.length > 0) {
    process.send?.({ badSeeds: bad }, () => process.exit(1));
    return;
  }
  process.on('message', (req: CaseRequest | 'exit') => {
    if (req === 'exit') process.exit(0);
    const t = targets.get(req.target);
    if (t === undefined) {
      process.send?.({ target: req.target, index: req.index, outcome: 'generic', what: '', detail: `unknown target ${req.target}`, ms: 0 } satisfies CaseReply);
      return;
    }
    void runCase(t, req, work).then((reply) => process.send?.(reply));
  });
  process.send?.({ ready: [...targets.keys()] });
}

if (process.send !== undefined) await main();
