/**
 * `npm run bench -- train --backend webgpu [--shape reference|qwen3-0.6b|...] [--kinds sft,distill] [--steps N] [--warmup N] [--recompute] [--out DIR]`
 *
 * Training-step tokens/s on WebGPU next to the CPU engine in the same run (issue 14): the steps of
 * train-shape.ts (a teacher-SFT step and a distill step, batch 8 x 128; default shape: the reference config of
 * MACHINE.md), each kind on each backend in its own process, WebGPU first, then the native CPU engine.
 * Reported: median tokens/s of each, their ratio, the adapter (vendor, architecture, description, limits) and
 * the CPU. A software adapter (lavapipe, SwiftShader) runs on the same CPU cores: its figure is labelled as
 * such and says nothing about a GPU. A shape over the adapter's buffer limits fails in the WebGPU child with
 * E_DEVICE_LIMIT; that is reported, and the CPU run of that kind skipped (no ratio to form).
 *
 * The machine is shared: each run records the share of the CPUs other processes used meanwhile (/proc/stat
 * minus the child's own CPU time), and a run above --max-load (default 0.1) is repeated up to --retries times
 * (default 1), the least disturbed kept. lavapipe runs on the same cores as everything else.
 *
 * WebGPU runs asynchronously: a step's kernels are queued and run when the loss or the gradient norm is read
 * back, so the per-phase split train-shape.ts prints (forward + backward, grad norm, AdamW) puts most of a
 * WebGPU step under "grad norm"; the step time is what counts. The first step compiles the shaders (seconds):
 * it is a warm-up step.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { lookForAdapter, type BackendChoice, type WebGpuAdapterInfo } from '@bitdistill/backend';
import { KINDS, REFERENCE_SHAPE, shapeChildArgs, type ChildResult, type Kind } from './train-shape.ts';
import { machineBusySeconds } from './train.ts';
import { cpuInfo } from './machine.ts';

interface Options {
  shape: string;
  kinds: Kind[];
  steps: number;
  warmup: number;
  recompute: boolean;
  out: string;
  retries: number;
  maxLoad: number;
}

const BATCH = 8;
const SEQ = 128;

function parse(args: string[]): Options {
  const o: Options = { shape: REFERENCE_SHAPE, kinds: [...KINDS], steps: 3, warmup: 1, recompute: false, out: 'bench/results', retries: 1, maxLoad: 0.1 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = args[i + 1];
    if (a === '--recompute') {
      o.recompute = true;
      continue;
    }
    if (a === '--backend') {
      if (v !== 'webgpu') throw new Error(`train bench: --backend ${String(v)}: the train bench measures the CPU backends itself; --backend takes webgpu`);
    } else if (a === '--shape') o.shape = String(v);
    else if (a === '--kinds') o.kinds = String(v).split(',') as Kind[];
    else if (a === '--steps') o.steps = Number(v);
    else if (a === '--warmup') o.warmup = Number(v);
    else if (a === '--out') o.out = String(v);
    else if (a === '--retries') o.retries = Number(v);
    else if (a === '--max-load') o.maxLoad = Number(v);
    else
      throw new Error(
        `train --backend webgpu bench: unknown option ${a}; options: --shape NAME, --kinds sft,distill, --steps N, --warmup N, --recompute, --retries N, --max-load F, --out DIR`,
      );
    i++;
  }
  if (!(o.steps >= 1 && o.warmup >= 1 && o.retries >= 0) || o.kinds.some((k) => !(KINDS as readonly string[]).includes(k))) {
    throw new Error(`train --backend webgpu bench: need --steps >= 1, --warmup >= 1 (shader compilation), --kinds from ${KINDS.join(',')}`);
  }
  return o;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

type Run =
  | { ok: true; result: ChildResult; tokensPerSecond: number; stepSeconds: number; otherProcessesCpuFraction: number; attemptLoads: number[] }
  | { ok: false; error: string };

/** CPU seconds of this process's waited-for children (/proc/self/stat cutime + cstime). */
function childrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd on
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** One kind on one backend in its own process (its progress lines to stderr, Dawn's warnings dropped), rerun while others load the machine. */
function run(kind: Kind, o: Options, backend: BackendChoice): Run {
  let best: Run | null = null;
  const loads: number[] = [];
  for (let attempt = 0; attempt <= o.retries; attempt++) {
    console.error(`${kind} on ${backend}: ${o.steps} step(s) after ${o.warmup} warm-up`);
    const [busy0, own0, t0] = [machineBusySeconds(), childrenCpuSeconds(), performance.now()];
    const r = spawnSync(process.execPath, shapeChildArgs(kind, o, backend), { encoding: 'utf8', maxBuffer: 64 << 20 });
    const wall = (performance.now() - t0) / 1000;
    const other = Math.max(0, (machineBusySeconds() - busy0 - (childrenCpuSeconds() - own0)) / (wall * cpus().length));
    const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.includes('artificially reduced'));
    if (r.status !== 0) {
      const error = lines.find((l) => /^\w*Error: /.test(l)) ?? lines.pop() ?? `exit ${r.status}, signal ${r.signal}`;
      console.error(`${kind} on ${backend} failed: ${error}`);
      return { ok: false, error };
    }
    for (const l of lines) console.error(`  ${l}`);
    loads.push(other);
    console.error(`  other processes used ${(100 * other).toFixed(1)}% of the CPUs${other > o.maxLoad && attempt < o.retries ? ' (busy: again)' : ''}`);
    const result = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildResult;
    const stepSeconds = median(result.stepMs) / 1000;
    if (best === null || (best.ok && other < best.otherProcessesCpuFraction)) {
      best = { ok: true, result, tokensPerSecond: (BATCH * SEQ) / stepSeconds, stepSeconds, otherProcessesCpuFraction: other, attemptLoads: [] };
    }
    if (other <= o.maxLoad) break;
  }
  if (best === null) throw new Error('train --backend webgpu bench: no attempt ran');
  return best.ok ? { ...best, attemptLoads: loads } : best;
}

export async function webgpuMain(argv: string[]): Promise<void> {
  const o = parse(argv);
  const cpuModel = cpuInfo().name;
  console.error(`train --backend webgpu, shape ${o.shape}: ${cpuModel}, ${cpus().length} CPUs`);
  const rows: { kind: Kind; webgpu: Run; cpu: Run | null; ratio: number | null }[] = [];
  // The adapter as a child process sees it (also when every WebGPU run fails), then as the runs report it.
  const look = lookForAdapter();
  let adapter: WebGpuAdapterInfo | null = null;
  if (look.found) {
    const { found: _found, ...info } = look;
    adapter = info;
  }
  if (!look.found) console.error(`no WebGPU adapter: ${look.reason}`);
  for (const kind of o.kinds) {
    const gpu = run(kind, o, 'webgpu');
    if (gpu.ok) adapter = gpu.result.backend.webgpu;
    const cpu = gpu.ok ? run(kind, o, 'native') : null;
    const ratio = gpu.ok && cpu?.ok === true ? gpu.tokensPerSecond / cpu.tokensPerSecond : null;
    rows.push({ kind, webgpu: gpu, cpu, ratio });
  }
  const software = adapter?.software ?? null;
  const record = (x: Run) =>
    x.ok
      ? {
          tokensPerSecond: x.tokensPerSecond,
          stepSeconds: x.stepSeconds,
          stepMs: x.result.stepMs,
          losses: x.result.losses,
          backend: x.result.backend.provider,
          otherProcessesCpuFraction: x.otherProcessesCpuFraction,
          attemptLoads: x.attemptLoads,
        }
      : { error: x.error };
  const date = new Date();
  const day = date.toISOString().slice(0, 10);
  const command = `npm run bench -- train ${argv.join(' ')}`;
  const result = {
    bench: 'train-webgpu',
    date: date.toISOString(),
    command,
    shape: o.shape,
    batch: BATCH,
    seq: SEQ,
    recompute: o.recompute,
    machine: { cpuModel, cpus: cpus().length, memTotalBytes: totalmem(), node: process.version },
    adapter,
    softwareAdapter: software,
    method:
      `median of ${o.steps} step(s) after ${o.warmup} warm-up step(s) (shader compilation), each kind and backend in its own process, webgpu then the native CPU engine; ` +
      `a run during which other processes used more than ${(100 * o.maxLoad).toFixed(0)}% of the CPUs is repeated (up to ${o.retries} times), the least disturbed kept`,
    rows: rows.map((r) => ({
      kind: r.kind,
      webgpu: record(r.webgpu),
      cpu: r.cpu === null ? null : record(r.cpu),
      webgpuOverCpu: r.ratio,
    })),
  };
  mkdirSync(o.out, { recursive: true });
  const base = join(o.out, `train-webgpu-${o.shape}${o.recompute ? '-recompute' : ''}-${day}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const f = (v: number, d = 1): string => v.toFixed(d);
  const cell = (r: Run | null): string =>
    r === null ? 'not run' : r.ok ? `${f(r.tokensPerSecond)} (${f(r.stepSeconds, 2)} s/step; others used ${f(100 * r.otherProcessesCpuFraction, 0)}% of the CPUs)` : `failed: ${r.error}`;
  const label =
    software === true
      ? ' **(software adapter: a CPU implementation of Vulkan on the same cores; not a GPU figure)**'
      : software === false
        ? ' (hardware GPU)'
        : '';
  const md = [
    `# Training steps on WebGPU vs the CPU engine, ${o.shape} shape, ${day}`,
    '',
    `Command: \`${command}\`  `,
    `CPU: ${cpuModel}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}  `,
    `Adapter: ${adapter === null ? 'none used' : `${adapter.description} (vendor ${adapter.vendor}, architecture ${adapter.architecture}; maxBufferSize ${adapter.limits.maxBufferSize}, maxStorageBufferBindingSize ${adapter.limits.maxStorageBufferBindingSize})`}${label}  `,
    `Model: ${o.shape === REFERENCE_SHAPE ? 'the reference config of MACHINE.md' : `configs/arch/${o.shape}.json`} (random weights), batch ${BATCH} x ${SEQ} tokens${o.recompute ? ', activation recomputation on' : ''}; ${result.method}`,
    '',
    '| step | webgpu tokens/s | CPU engine tokens/s | webgpu / CPU |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.kind} | ${cell(r.webgpu)} | ${cell(r.cpu)} | ${r.ratio === null ? '-' : `x${f(r.ratio, 2)}`} |`),
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  console.error(md);
  console.error(`wrote ${base}.json and .md`);
}
