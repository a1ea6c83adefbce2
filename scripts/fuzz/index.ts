/**
 * The reader fuzz campaign (issue 21): seeded mutations of real files against every reader, each case in a
 * watched worker process.
 *
 *   npm run fuzz -- [--cases N] [--targets a,b] [--seed S] [--timeout-ms MS] [--rss-mb MB] [--out FILE]
 *   npm run fuzz -- --targets gguf --case 1234[,5678]   # replay cases (BITDISTILL_FUZZ_STACK=1 adds the stack)
 *
 * Outcomes per case: a typed project error or a plausible load are good; a generic exception, an implausible load
 * ("garbage accepted"), a case slower than --timeout-ms (hang), a worker above --rss-mb resident memory (OOM) or a
 * worker that dies (crash) are defects. Prints a table per target and exits 1 when any defect was seen.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CaseReply, CaseRequest, Outcome } from './child.ts';

export type Result = Outcome | 'hang' | 'oom' | 'crash';
export const DEFECTS: readonly Result[] = ['generic', 'garbage', 'hang', 'oom', 'crash'];

export interface FuzzOptions {
  cases: number;
  targets?: readonly string[];
  seed?: number;
  /** Run only these case indices (replays), instead of 0 .. cases - 1. */
  indices?: readonly number[];
  timeoutMs?: number;
  rssMb?: number;
  onCase?: (r: CaseResult) => void;
}

export interface CaseResult {
  target: string;
  index: number;
  result: Result;
  what: string;
  detail: string;
  ms: number;
}

export interface TargetSummary {
  target: string;
  cases: number;
  counts: Record<Result, number>;
  maxMs: number;
  /** Up to 5 defects, with what was done, for the report. */
  examples: CaseResult[];
}

const CHILD = new URL('./child.ts', import.meta.url).pathname;

class Worker {
  private proc: ChildProcess | null = null;
  private names: string[] = [];
  private pending: ((r: CaseReply | { died: string }) => void) | null = null;
  private stderr = '';

  constructor(
    private readonly work: string,
    /** Targets the worker needs (all when empty). */
    private readonly wanted: readonly string[] = [],
  ) {}

  async start(): Promise<string[]> {
    this.stderr = '';
    const proc = fork(CHILD, [this.work, this.wanted.join(',')], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=2048'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    proc.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    this.proc = proc;
    const ready = await new Promise<string[]>((resolve, reject) => {
      proc.once('message', (m) => {
        const msg = m as { ready?: string[]; badSeeds?: string[] };
        if (msg.badSeeds !== undefined) reject(new Error(`fuzz seeds that do not load unmutated:\n  ${msg.badSeeds.join('\n  ')}`));
        else resolve(msg.ready ?? []);
      });
      proc.once('exit', (code, sig) => reject(new Error(`fuzz worker did not start (exit ${code ?? sig}): ${this.stderr}`)));
    });
    proc.removeAllListeners('exit');
    proc.on('message', (m) => this.settle(m as CaseReply));
    proc.on('exit', (code, sig) => this.settle({ died: `exit ${code ?? ''}${sig ?? ''}: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}` }));
    this.names = ready;
    return ready;
  }

  private settle(r: CaseReply | { died: string }): void {
    const p = this.pending;
    this.pending = null;
    p?.(r);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Run one case, killing the worker when it takes longer than timeoutMs or its RSS passes rssMb. */
  async run(req: CaseRequest, timeoutMs: number, rssMb: number): Promise<CaseResult> {
    if (this.proc === null) await this.start();
    const proc = this.proc as ChildProcess;
    const t0 = performance.now();
    let verdict: Result | null = null;
    const watch = setInterval(() => {
      // Memory first: a case that is still allocating when its time runs out is an OOM, not a hang.
      if (rssOf(proc.pid) > rssMb * 1024 * 1024) verdict = 'oom';
      else if (performance.now() - t0 > timeoutMs) verdict = 'hang';
      if (verdict !== null) proc.kill('SIGKILL');
    }, 50);
    const reply = await new Promise<CaseReply | { died: string }>((resolve) => {
      this.pending = resolve;
      proc.send(req);
    });
    clearInterval(watch);
    const ms = performance.now() - t0;
    if ('died' in reply) {
      this.proc = null;
      return {
        target: req.target,
        index: req.index,
        result: verdict ?? (/heap out of memory|Allocation failed/i.test(reply.died) ? 'oom' : 'crash'),
        what: '',
        detail: reply.died.slice(0, 300),
        ms,
      };
    }
    return { target: reply.target, index: reply.index, result: reply.outcome, what: reply.what, detail: reply.detail, ms: reply.ms };
  }

  targets(): string[] {
    return this.names;
  }

  stop(): void {
    this.proc?.send('exit');
    this.proc = null;
  }
}

function rssOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

export async function runFuzz(o: FuzzOptions): Promise<TargetSummary[]> {
  const work = mkdtempSync(join(tmpdir(), 'bitdistill-fuzz-'));
  const worker = new Worker(work, o.targets ?? []);
  try {
    const all = await worker.start();
    const names = o.targets ?? all;
    for (const n of names) if (!all.includes(n)) throw new Error(`unknown fuzz target '${n}' (targets: ${all.join(', ')})`);
    const out: TargetSummary[] = [];
    for (const target of names) {
      const counts = Object.fromEntries(['typed', 'plausible', ...DEFECTS].map((k) => [k, 0])) as Record<Result, number>;
      const s: TargetSummary = { target, cases: 0, counts, maxMs: 0, examples: [] };
      const indices = o.indices ?? Array.from({ length: o.cases }, (_, i) => i);
      for (const index of indices) {
        const r = await worker.run({ target, index, seed: o.seed ?? 1 }, o.timeoutMs ?? 5000, o.rssMb ?? 3072);
        s.cases++;
        s.counts[r.result]++;
        s.maxMs = Math.max(s.maxMs, r.ms);
        if (DEFECTS.includes(r.result) && s.examples.length < 5) s.examples.push(r);
        o.onCase?.(r);
      }
      out.push(s);
    }
    return out;
  } finally {
    worker.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

export function formatTable(rows: readonly TargetSummary[]): string {
  const head = ['reader', 'cases', 'typed error', 'plausible load', 'generic exception', 'garbage accepted', 'hang', 'OOM', 'crash', 'max ms'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const c = r.counts;
    lines.push(`| ${[r.target, r.cases, c.typed, c.plausible, c.generic, c.garbage, c.hang, c.oom, c.crash, Math.round(r.maxMs)].join(' | ')} |`);
  }
  return lines.join('\n');
}

async function cli(): Promise<void> {
  const args = process.argv.slice(2);
  const get = (k: string): string | undefined => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const num = (k: string, d: number): number => {
    const v = get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${k} must be a non-negative integer, got '${v}'`);
    return n;
  };
  const only = get('--case');
  const t0 = performance.now();
  let done = 0;
  const rows = await runFuzz({
    cases: num('--cases', 200),
    targets: get('--targets')?.split(','),
    seed: num('--seed', 1),
    indices:
      only === undefined
        ? undefined
        : only.split(',').map((v) => {
            const n = Number(v);
            if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--case takes case numbers (0, 1, ...; several with commas), got '${v}'`);
            return n;
          }),
    timeoutMs: num('--timeout-ms', 5000),
    rssMb: num('--rss-mb', 3072),
    onCase: (r) => {
      done++;
      if (DEFECTS.includes(r.result) || only !== undefined) console.log(`${r.result.toUpperCase()} ${r.target} case ${r.index}: ${r.what} -> ${r.detail}`);
      else if (process.stderr.isTTY && done % 50 === 0) process.stderr.write(`\r${r.target} ${r.index + 1}`);
    },
  });
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  const table = formatTable(rows);
  const text = `${table}\n\nseed ${num('--seed', 1)}, ${((performance.now() - t0) / 1000).toFixed(0)} s on ${cpu}\n`;
  console.log(`\n${text}`);
  for (const r of rows) for (const e of r.examples) console.log(`  ${e.result} ${e.target} #${e.index}: ${e.what} -> ${e.detail}`);
  const out = get('--out');
  if (out !== undefined) writeFileSync(out, `\`npm run fuzz -- ${args.join(' ')}\`\n\n${text}`);
  const defects = rows.reduce((n, r) => n + DEFECTS.reduce((m, d) => m + r.counts[d], 0), 0);
  process.exitCode = defects > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1]) await cli();
