/**
 * `npm run bench -- train [--rounds N] [--steps N] [--stock-steps N] [--warmup N] [--retries N] [--max-load F] [--out DIR]`
 * (`npm run bench -- train --shape qwen3-0.6b ...`: a real model shape, see train-shape.ts;
 * `npm run bench -- train --backend webgpu [--shape ...]`: WebGPU next to the CPU engine, see train-webgpu.ts)
 *
 * Tokens/s of one training step (forward + backward + AdamW) of a ternary student with SubLN and fake
 * quantization on, for the reference config of MACHINE.md (vocab 4096, d_model 256, 4 layers, 4 heads, ffn 688,
 * seq 128, batch 8 = 1,024 tokens per step), measured in one run for
 *   (a) stock tfjs wasm (BITDISTILL_NATIVE=0: the addon is not loaded, so nothing is replaced),
 *   (b) the previous default, wasm + the native kernels of @bitdistill/kernels-cpu (`--backend wasm`), and
 *   (c) the default backend (initBackend('auto'): the native CPU engine, docs/engine.md), and
 *   (d) the same with optim.gradPrecision: bf16 (the BitLinear backward on AVX512_BF16; skipped without it),
 *       also for the distillation step and the tiny run;
 * next to the fp32 GEMM GFLOP/s of the project's kernel and of numpy (OpenBLAS as installed, env untouched) on
 * the same shapes, the implied CPU MFU = 6 x parameters x tokens/s / numpy's 2-thread GEMM FLOP/s, peak RSS,
 * the tensor count per step, and a tf.profile breakdown (top 10 kernels) of one step on the default backend.
 *
 * Each backend runs in its own child process (own peak RSS, own kernel registry); --rounds N alternates N
 * stock / default pairs and reports the median round (the machine's speed drifts by 10-20% over minutes on a
 * shared host, so one pair can mislead). A phase during which other processes used more than --max-load of
 * the CPUs (from /proc/stat) is rerun up to --retries times and the least disturbed attempt is kept; every
 * attempt's load is recorded.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice, type BackendInfo } from '@bitdistill/backend';
import { bf16GradAvailable, initKernels, matmulF32, nativeStatus, setGradPrecision, setThreads, type GradPrecision } from '@bitdistill/kernels-cpu/engine';
import { fusedHeadLoss } from '@bitdistill/losses';
import { initDecoder } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { AdamW } from '@bitdistill/trainer';
import { cpuInfo } from './machine.ts';
import { REFERENCE_SHAPE, TINY_SHAPE, runPairChild, runShapeChild } from './train-shape.ts';

/** The reference config of MACHINE.md as a llama config.json. */
export const CONFIG = {
  model_type: 'llama',
  vocab_size: 4096,
  hidden_size: 256,
  intermediate_size: 688,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: 'silu',
};
const BATCH = 8;
const SEQ = 128;
const STUDENT = { subln: 'allnorm', weightQuant: 'absmean' } as const;
const OPTIM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
const LR = 1e-4;

/** [m, k, n, transA, transB]: 1024^3 plus the products of one training step (forward, dx, dW). */
const GEMM_SHAPES: [number, number, number, boolean, boolean][] = [
  [1024, 1024, 1024, false, false],
  [2048, 2048, 2048, false, false],
  [1024, 256, 688, false, false],
  [1024, 688, 256, false, false],
  [256, 1024, 688, true, false],
  [1024, 256, 4096, false, false],
  [256, 1024, 4096, true, false],
];

interface Options {
  rounds: number;
  steps: number;
  stockSteps: number;
  warmup: number;
  retries: number;
  maxLoad: number;
  out: string;
  /** Time the bundled tiny run (the four stages of configs/sst2-tiny.yaml) too; --no-tiny skips it. */
  tiny: boolean;
}

function parseArgs(args: string[]): Options {
  const o: Options = { rounds: 3, steps: 9, stockSteps: 5, warmup: 2, retries: 2, maxLoad: 0.1, out: 'bench/results', tiny: true };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = Number(args[i + 1]);
    if (a === '--no-tiny') {
      o.tiny = false;
      continue;
    }
    if (a === '--rounds') o.rounds = v;
    else if (a === '--steps') o.steps = v;
    else if (a === '--stock-steps') o.stockSteps = v;
    else if (a === '--warmup') o.warmup = v;
    else if (a === '--retries') o.retries = v;
    else if (a === '--max-load') o.maxLoad = v;
    else if (a === '--out') o.out = String(args[i + 1]);
    else throw new Error(`train bench: unknown option ${a}; options: --rounds N, --steps N (>= 5), --stock-steps N (>= 5), --warmup N, --retries N, --max-load F, --out DIR, --no-tiny`);
    i++;
  }
  if (!(o.rounds >= 1 && o.steps >= 5 && o.stockSteps >= 5 && o.warmup >= 1 && o.retries >= 0)) {
    throw new Error('train bench: need --rounds >= 1, --steps >= 5, --stock-steps >= 5, --warmup >= 1, --retries >= 0');
  }
  return o;
}

/**
 * The bundled tiny run as README's first command runs it (`bitdistill train --config configs/sst2-tiny.yaml`, all
 * four stages, default backend), into a temporary folder: its wall time and the per-stage summary it writes.
 */
function tinyRun(overrides: string[] = []): { command: string; seconds: number; summary: unknown } {
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-tiny-'));
  const args = ['packages/cli/bin/bitdistill.js', 'train', '--config', 'configs/sst2-tiny.yaml', '--resume', 'none', `outputDir=${dir}`, ...overrides, '--log-level', 'warn'];
  console.error(`tiny run: node ${args.join(' ')}`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'inherit'] });
  const seconds = (performance.now() - t0) / 1000;
  try {
    if (r.status !== 0) throw new Error(`train bench: the tiny run failed (exit ${r.status})`);
    const summaryPath = join(dir, 'sst2-tiny', 'summary.json');
    const summary: unknown = existsSync(summaryPath) ? JSON.parse(readFileSync(summaryPath, 'utf8')) : null;
    return { command: `npx bitdistill train --config configs/sst2-tiny.yaml${overrides.map((x) => ` ${x}`).join('')} (into a temporary outputDir)`, seconds, summary };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Busy CPU seconds of the whole machine so far (/proc/stat), or NaN off Linux. */
export function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / 100;
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Child: one backend, timed steps and (default backend) a profile

interface KernelTime {
  kernel: string;
  ms: number;
  calls: number;
  share: number;
}

interface ChildResult {
  backend: BackendInfo;
  parameters: number;
  tokensPerStep: number;
  stepMs: number[];
  losses: number[];
  tensorsAfterStep: number[];
  peakRssBytes: number;
  cpuSeconds: number;
  profile: { stepMs: number; kernelMs: number; byKernel: KernelTime[]; byKernelAndShape: KernelTime[] } | null;
}

async function child(args: string[]): Promise<void> {
  const steps = Number(args[0]);
  const warmup = Number(args[1]);
  const profile = args[2] === 'profile';
  const backend = await initBackend((args[3] ?? 'auto') as BackendChoice);
  if (args[4] === 'bf16' && !setGradPrecision('bf16')) throw new Error('train bench: the bf16 child needs AVX512_BF16 and the native kernels');
  const model = initDecoder(CONFIG, 1);
  prepareStudent(model, STUDENT);
  const V = CONFIG.vocab_size;
  // Fixed pseudo-random tokens; labels are the next token, every position counts (a plain LM loss).
  const tokens = Int32Array.from({ length: BATCH * (SEQ + 1) }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 0) % V);
  const idsArr = new Int32Array(BATCH * SEQ);
  const labelsArr = new Int32Array(BATCH * SEQ);
  for (let b = 0; b < BATCH; b++) {
    for (let t = 0; t < SEQ; t++) {
      idsArr[b * SEQ + t] = tokens[b * (SEQ + 1) + t] as number;
      labelsArr[b * SEQ + t] = tokens[b * (SEQ + 1) + t + 1] as number;
    }
  }
  const ids = tf.tensor2d(idsArr, [BATCH, SEQ], 'int32');
  const labels = tf.tensor2d(labelsArr, [BATCH, SEQ], 'int32');
  const mask = tf.ones([BATCH, SEQ]);
  const optimizer = new AdamW(OPTIM);
  const names = new Map([...model.params].map(([name, v]) => [v.name, name]));
  const vars = [...model.params.values()];

  const step = (): number =>
    tf.tidy(() => {
      // The trainer's loss of a plain LM step (continual pre-training: CE at every position, the head in row
      // chunks through losses' fusedHeadLoss), on every backend alike; measured against the unfused form
      // (answerCrossEntropy of the full logits) on this machine, stock wasm took the same time either way.
      const { value, grads } = tf.variableGrads(() => fusedHeadLoss(model.forward(ids, { output: 'hidden' }).hidden, model.headWeight(), { ce: { labels, mask } }).loss, vars);
      const byName: Record<string, tf.Tensor> = {};
      for (const [vn, g] of Object.entries(grads)) byName[names.get(vn) as string] = g;
      optimizer.apply(model.params, byName, LR);
      return value.dataSync()[0] as number;
    });

  for (let i = 0; i < warmup; i++) step();
  const stepMs: number[] = [];
  const losses: number[] = [];
  const tensorsAfterStep: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    losses.push(step());
    stepMs.push(performance.now() - t0);
    tensorsAfterStep.push(tf.memory().numTensors);
  }

  let prof: ChildResult['profile'] = null;
  if (profile) {
    // The first profiled step grows the wasm heap (tf.profile keeps every kernel's outputs until it returns),
    // and first-touch page faults would be charged to whichever kernels allocate then: report the second.
    let info: Awaited<ReturnType<typeof tf.profile>> | null = null;
    let profStepMs = 0;
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      info = await tf.profile(() => {
        step();
        return [] as tf.Tensor[];
      });
      profStepMs = performance.now() - t0;
    }
    if (info === null) throw new Error('train bench: no profile');
    const kernels = info.kernels;
    const agg = (key: (k: (typeof kernels)[number]) => string): Map<string, { ms: number; calls: number }> => {
      const m = new Map<string, { ms: number; calls: number }>();
      for (const k of kernels) {
        // Composite ops (customGrad 'forward', 'logSoftmax__op') also appear; their kernels are counted on their own.
        if (tf.getKernel(k.name, backend.name) === undefined) continue;
        const e = m.get(key(k)) ?? { ms: 0, calls: 0 };
        e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
        e.calls += 1;
        m.set(key(k), e);
      }
      return m;
    };
    const byName = agg((k) => k.name);
    const total = [...byName.values()].reduce((s, e) => s + e.ms, 0);
    const top = (m: Map<string, { ms: number; calls: number }>): KernelTime[] =>
      [...m]
        .sort((a, b) => b[1].ms - a[1].ms)
        .slice(0, 10)
        .map(([kernel, e]) => ({ kernel, ms: e.ms, calls: e.calls, share: e.ms / total }));
    prof = {
      stepMs: profStepMs,
      kernelMs: total,
      byKernel: top(byName),
      byKernelAndShape: top(agg((k) => `${k.name} ${k.inputShapes.map((s) => `[${s.join(',')}]`).join(' ')}`)),
    };
  }
  const usage = process.cpuUsage(); // since the process started: module loading counts as its load too
  const result: ChildResult = {
    backend,
    parameters: model.numParameters(),
    tokensPerStep: BATCH * SEQ,
    stepMs,
    losses,
    tensorsAfterStep,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    cpuSeconds: (usage.user + usage.system) / 1e6,
    profile: prof,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// Parent

interface Attempt<T> {
  result: T;
  otherProcessesCpuFraction: number;
  wallSeconds: number;
}

/**
 * Runs fn (which reports its own CPU seconds) until other processes used at most maxLoad of the CPUs during
 * it, at most 1 + retries times; returns the least disturbed attempt and every attempt's load.
 */
function measured<T>(what: string, o: Options, fn: () => { result: T; ownCpuSeconds: number }): { best: Attempt<T>; loads: number[] } {
  const attempts: Attempt<T>[] = [];
  for (let i = 0; i <= o.retries; i++) {
    const busy0 = machineBusySeconds();
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    const { result, ownCpuSeconds } = fn();
    const wall = (performance.now() - t0) / 1000;
    const selfCpu = process.cpuUsage(self0);
    const other = (machineBusySeconds() - busy0 - ownCpuSeconds - (selfCpu.user + selfCpu.system) / 1e6) / (wall * cpus().length);
    attempts.push({ result, otherProcessesCpuFraction: Math.max(0, other), wallSeconds: wall });
    console.error(`${what}: other processes used ${(100 * Math.max(0, other)).toFixed(1)}% of the CPUs${other > o.maxLoad && i < o.retries ? ' (busy: again)' : ''}`);
    if (!(other > o.maxLoad)) break;
  }
  const best = attempts.reduce((a, b) => (b.otherProcessesCpuFraction < a.otherProcessesCpuFraction ? b : a));
  return { best, loads: attempts.map((a) => a.otherProcessesCpuFraction) };
}

function runChild(kind: 'stock' | 'previous' | 'unfused' | 'default' | 'bf16', steps: number, warmup: number): { result: ChildResult; ownCpuSeconds: number } {
  const env = { ...process.env };
  if (kind === 'stock') env['BITDISTILL_NATIVE'] = '0';
  if (kind === 'unfused') env['BITDISTILL_FUSED'] = '0';
  const backend = kind === 'default' || kind === 'unfused' || kind === 'bf16' ? 'auto' : 'wasm';
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench/index.ts', 'train', '--child', String(steps), String(warmup), kind === 'default' ? 'profile' : '', backend, kind === 'bf16' ? 'bf16' : 'fp32'], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`train bench: the ${kind} child failed (exit ${r.status}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const result = JSON.parse(line) as ChildResult;
  return { result, ownCpuSeconds: result.cpuSeconds };
}

interface GemmPoint {
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  threads: number;
  gflops: number;
}

/** Median GFLOP/s of the project's matmulF32 over >= 7 runs of >= 50 ms each. */
function projectGemm(): { result: GemmPoint[]; ownCpuSeconds: number } {
  const out: GemmPoint[] = [];
  const threadsDefault = nativeStatus().threads;
  for (const [m, k, n, transA, transB] of GEMM_SHAPES) {
    const a = Float32Array.from({ length: m * k }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const b = Float32Array.from({ length: k * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
    const c = new Float32Array(m * n);
    for (const threads of m === 1024 && k === 1024 && n === 1024 ? [1, 2] : [2]) {
      setThreads(threads);
      const one = (): void => {
        matmulF32(a, b, m, k, n, { transA, transB }, c);
      };
      for (let i = 0; i < 3; i++) one();
      let t = performance.now();
      one();
      const reps = Math.max(1, Math.ceil(50 / Math.max(performance.now() - t, 1e-3)));
      const per: number[] = [];
      for (let r = 0; r < 7; r++) {
        t = performance.now();
        for (let i = 0; i < reps; i++) one();
        per.push((performance.now() - t) / reps);
      }
      out.push({ m, k, n, transA, transB, threads, gflops: (2 * m * k * n) / median(per) / 1e6 });
    }
  }
  setThreads(threadsDefault);
  // In-process: measured() already counts this process's CPU time.
  return { result: out, ownCpuSeconds: 0 };
}

// numpy on the same shapes: median of 7 runs of >= 50 ms; 1 thread through OpenBLAS's own setter when the
// library exposes it; run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (numpyGemm).
const NUMPY_SNIPPET = String.raw`
import ctypes, glob, json, os, sys, time, resource
import numpy as np
shapes = json.loads(sys.argv[1])
setter = None; core = None
for lib in glob.glob(os.path.join(os.path.dirname(np.__file__), '..', 'numpy.libs', '*openblas*')) + glob.glob(os.path.join(os.path.dirname(np.__file__), '.libs', '*openblas*')):
    try:
        h = ctypes.CDLL(lib)
    except OSError:
        continue
    for name in ['scipy_openblas_set_num_threads64_', 'openblas_set_num_threads64_', 'openblas_set_num_threads']:
        if hasattr(h, name): setter = getattr(h, name); break
    for name in ['scipy_openblas_get_corename64_', 'openblas_get_corename64_', 'openblas_get_corename']:
        if hasattr(h, name):
            f = getattr(h, name); f.restype = ctypes.c_char_p; core = f().decode(); break
def run(m, k, n, ta, tb):
    a = np.random.rand(k, m).astype(np.float32) if ta else np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(n, k).astype(np.float32) if tb else np.random.rand(k, n).astype(np.float32)
    op = lambda: (a.T if ta else a) @ (b.T if tb else b)
    for _ in range(3): op()
    t = time.perf_counter(); op(); one = time.perf_counter() - t
    reps = max(1, int(0.05 / max(one, 1e-6)) + 1)
    per = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(reps): op()
        per.append((time.perf_counter() - t) / reps)
    per.sort()
    return 2 * m * k * n / per[3] / 1e9
out = []
for (m, k, n, ta, tb) in shapes:
    for th in ([1, 2] if m == k == n == 1024 else [2]):
        if setter is None and th == 1: continue
        if setter is not None: setter(th)
        out.append(dict(m=m, k=k, n=n, transA=ta, transB=tb, threads=th, gflops=run(m, k, n, ta, tb)))
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(numpy=np.__version__, openblasCore=core, env={k: v for k, v in os.environ.items() if k.startswith('OPENBLAS')}, points=out, cpuSeconds=u.ru_utime + u.ru_stime)))
`;

interface NumpyResult {
  numpy: string;
  openblasCore: string | null;
  env: Record<string, string>;
  points: GemmPoint[];
  cpuSeconds: number;
}

function numpyGemm(): { result: NumpyResult | null; ownCpuSeconds: number } {
  // The environment's OpenBLAS throttle (OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE) is lifted for this one
  // command (MACHINE.md), so numpy runs its best kernel; the core it ran is recorded.
  const env = { ...process.env };
  delete env['OPENBLAS_CORETYPE'];
  delete env['OPENBLAS_L2_SIZE'];
  const r = spawnSync('python3', ['-c', NUMPY_SNIPPET, JSON.stringify(GEMM_SHAPES)], { encoding: 'utf8', env });
  if (r.status !== 0 || r.error !== undefined) {
    console.error(`numpy GEMM not measured: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}`);
    return { result: null, ownCpuSeconds: 0 };
  }
  const result = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as NumpyResult;
  return { result, ownCpuSeconds: result.cpuSeconds };
}

/** Per shape and thread count, the point with the most GFLOP/s over several measurements. */
function bestPoints(lists: GemmPoint[][]): GemmPoint[] {
  const best = new Map<string, GemmPoint>();
  for (const p of lists.flat()) {
    const key = `${p.m} ${p.k} ${p.n} ${p.transA} ${p.transB} ${p.threads}`;
    const q = best.get(key);
    if (q === undefined || p.gflops > q.gflops) best.set(key, p);
  }
  return [...best.values()];
}

const gflopsAt = (points: GemmPoint[] | undefined, size: number, threads: number): number | null =>
  points?.find((p) => p.m === size && p.k === size && p.n === size && p.threads === threads)?.gflops ?? null;

export async function main(argv: string[]): Promise<void> {
  const childMode = argv[0] === '--shape-child' || argv[0] === '--pair-child';
  if (!childMode && argv.includes('--backend')) {
    await (await import('./train-webgpu.ts')).webgpuMain(argv);
    return;
  }
  if (childMode || argv.includes('--shape')) {
    await (await import('./train-shape.ts')).shapeMain(argv);
    return;
  }
  if (argv[0] === '--child') {
    await child(argv.slice(1));
    return;
  }
  const o = parseArgs(argv);
  tf.enableProdMode();
  const status = initKernels({});
  const cpu = cpuInfo();
  const load0 = loadavg()[0] ?? 0;
  console.error(`train bench: ${cpu.name}, ${cpus().length} CPUs, kernels ${status.native ? `${status.isa} x${status.threads}` : `not native (${status.reason})`}, load ${load0.toFixed(2)}`);

  const tps = (r: ChildResult): number => r.tokensPerStep / (median(r.stepMs) / 1000);
  type Phase = ReturnType<typeof measured<ChildResult>>;
  const withBf16 = bf16GradAvailable();
  const rounds: { stock: Phase; prev: Phase; unfused: Phase; dflt: Phase; bf16: Phase | null }[] = [];
  const gemmRounds: ReturnType<typeof measured<GemmPoint[]>>[] = [];
  const numpyRounds: ReturnType<typeof measured<NumpyResult | null>>[] = [];
  for (let i = 0; i < o.rounds; i++) {
    gemmRounds.push(measured(`round ${i + 1}: project GEMM`, o, projectGemm));
    numpyRounds.push(measured(`round ${i + 1}: numpy GEMM`, o, numpyGemm));
    const stockRound = measured(`round ${i + 1}: stock wasm`, o, () => runChild('stock', o.stockSteps, 1));
    const prevRound = measured(`round ${i + 1}: previous default (wasm + native kernels)`, o, () => runChild('previous', o.steps, o.warmup));
    const unfusedRound = measured(`round ${i + 1}: default backend without the fused ops`, o, () => runChild('unfused', o.steps, o.warmup));
    const dfltRound = measured(`round ${i + 1}: default backend`, o, () => runChild('default', o.steps, o.warmup));
    const bf16Round = withBf16 ? measured(`round ${i + 1}: default backend, bf16 BitLinear backward`, o, () => runChild('bf16', o.steps, o.warmup)) : null;
    console.error(
      `round ${i + 1}: default ${tps(dfltRound.best.result).toFixed(0)} tokens/s, unfused ${tps(unfusedRound.best.result).toFixed(0)}, previous ${tps(prevRound.best.result).toFixed(0)}, stock wasm ${tps(stockRound.best.result).toFixed(0)} tokens/s`,
    );
    rounds.push({ stock: stockRound, prev: prevRound, unfused: unfusedRound, dflt: dfltRound, bf16: bf16Round });
  }
  // The median round by the default backend's speed (its profile and RSS come with it).
  const byDefault = [...rounds].sort((x, y) => tps(x.dflt.best.result) - tps(y.dflt.best.result));
  const mid = byDefault[(byDefault.length - 1) >> 1] as (typeof rounds)[number];
  const stock = mid.stock;
  const prev = mid.prev;
  const dflt = mid.dflt;
  const pv = prev.best.result;
  const uf = mid.unfused.best.result;
  const s = stock.best.result;
  const d = dflt.best.result;
  // bf16 has its own median round: the round that is the median for the default backend need not be the bf16
  // series' median (one run measured bf16 at 7474 / 5933 / 7087 tokens/s and reported the 5933). Its speed-up over
  // stock wasm is the median of the per-round ratios (each against the stock step of the same round).
  const bf16Rounds = rounds.filter((r) => r.bf16 !== null).sort((x, y) => tps((x.bf16 as Phase).best.result) - tps((y.bf16 as Phase).best.result));
  const midBf16 = bf16Rounds[(bf16Rounds.length - 1) >> 1];
  const b16 = midBf16?.bf16?.best.result ?? null;
  const bf16VsStock = median(rounds.filter((r) => r.bf16 !== null).map((r) => tps((r.bf16 as Phase).best.result) / tps(r.stock.best.result)));
  // GEMM ceilings: the best of the rounds for each shape (a ceiling is what the machine can do; a slow moment
  // on a shared host would otherwise inflate the MFU), the same rule for the project's kernel and for numpy.
  const gemm = { best: { result: bestPoints(gemmRounds.map((g) => g.best.result)), otherProcessesCpuFraction: Math.max(...gemmRounds.map((g) => g.best.otherProcessesCpuFraction)) }, loads: gemmRounds.flatMap((g) => g.loads) };
  const numpyResults = numpyRounds.map((n) => n.best.result).filter((r): r is NumpyResult => r !== null);
  const numpyFirst = numpyResults[0];
  const numpy = {
    best: {
      result: numpyFirst === undefined ? null : { ...numpyFirst, points: bestPoints(numpyResults.map((r) => r.points)) },
      otherProcessesCpuFraction: Math.max(...numpyRounds.map((n) => n.best.otherProcessesCpuFraction)),
    },
    loads: numpyRounds.flatMap((n) => n.loads),
  };
  const projectGflops = gflopsAt(gemm.best.result, 1024, 2);
  const numpyGflops = gflopsAt(numpy.best.result?.points, 1024, 2);
  // The MFU basis: the best 2-thread fp32 GEMM measured in this run, the project's or numpy's, 1024^3 or 2048^3.
  const candidates: { who: string; size: number; gflops: number }[] = [];
  for (const size of [1024, 2048]) {
    const pg = gflopsAt(gemm.best.result, size, 2);
    const ng = gflopsAt(numpy.best.result?.points, size, 2);
    if (pg !== null) candidates.push({ who: 'project GEMM', size, gflops: pg });
    if (ng !== null) candidates.push({ who: `numpy (OpenBLAS ${numpy.best.result?.openblasCore ?? '?'}, OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset)`, size, gflops: ng });
  }
  const basis = candidates.reduce<(typeof candidates)[number] | null>((a, b) => (a === null || b.gflops > a.gflops ? b : a), null);
  const ceiling = basis?.gflops ?? null;
  // FLOPs per token: 6 x the parameters that take part in a GEMM (the untied embedding is a gather, not counted;
  // lm_head is), plus attention's QK^T and AV over all T x T positions (as computed): 12 x layers x T x d_model.
  const embeddingParams = CONFIG.tie_word_embeddings ? 0 : CONFIG.vocab_size * CONFIG.hidden_size;
  const attentionFlopsPerToken = 12 * CONFIG.num_hidden_layers * SEQ * CONFIG.hidden_size;
  const flopsPerToken = 6 * (d.parameters - embeddingParams) + attentionFlopsPerToken;
  // Teacher-SFT and distillation steps (train-shape.ts's children): the reference shape, and the tiny config's
  // model at its batch (stories260K, 16 x 64), measured two ways in every round (the order alternating), the
  // median of the rounds' medians reported: each kind in its own process (as a stage runs), and both kinds in one
  // process in alternating blocks of steps (pairChild), so that they see the same phase of this VM's drifting
  // speed (per-process medians of one tiny step moved 18.7-25.8 ms within minutes). The two can differ: in one
  // process the kinds also share the JavaScript heap's garbage collection and the compiled code.
  const pairs = (shape: string, gradPrecision: GradPrecision, steps: number, warmup: number) => {
    const teacher: number[] = [];
    const distill: number[] = [];
    const teacherIl: number[] = [];
    const distillIl: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const kinds = r % 2 === 0 ? (['sft', 'distill'] as const) : (['distill', 'sft'] as const);
      for (const kind of kinds) {
        const ms = median(runShapeChild(kind, { shape, steps, warmup, recompute: false, gradPrecision }).stepMs);
        (kind === 'sft' ? teacher : distill).push(ms);
      }
      const [sft, dis] = runPairChild({ shape, steps, warmup, gradPrecision, first: kinds[0] });
      teacherIl.push(median(sft.stepMs));
      distillIl.push(median(dis.stepMs));
    }
    return {
      teacherMs: median(teacher),
      distillMs: median(distill),
      ratio: median(distill) / median(teacher),
      rounds: teacher.map((t, i) => ({ teacherMs: t, distillMs: distill[i] as number })),
      interleaved: {
        teacherMs: median(teacherIl),
        distillMs: median(distillIl),
        ratio: median(distillIl) / median(teacherIl),
        rounds: teacherIl.map((t, i) => ({ teacherMs: t, distillMs: distillIl[i] as number })),
      },
    };
  };
  const refPair = pairs(REFERENCE_SHAPE, 'fp32', o.steps, o.warmup);
  // bf16 also moves the dense teacher's backward products: the like-for-like ratio takes the bf16 teacher step.
  const refPairBf16 = withBf16 ? pairs(REFERENCE_SHAPE, 'bf16', o.steps, o.warmup) : null;
  const tinyPair = o.tiny ? pairs(TINY_SHAPE, 'fp32', Math.max(30, o.steps), 5) : null;
  const tiny = o.tiny ? tinyRun() : null;
  const [tinyTeacherMs, tinyDistillMs] = tinyPair === null ? [null, null] : [tinyPair.teacherMs, tinyPair.distillMs];
  const tinyStage = (name: string): number | null =>
    (tiny?.summary as { stages?: { stage: string; seconds: number }[] } | undefined)?.stages?.find((x) => x.stage === name)?.seconds ?? null;
  const tinyTeacherS = tinyStage('teacher');
  const tinyDistillS = tinyStage('distill');
  const tinyBf16 = o.tiny && withBf16 ? tinyRun(['optim.gradPrecision=bf16']) : null;
  const date = new Date();
  const day = date.toISOString().slice(0, 10);
  const command = `npm run bench -- train${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`;
  const result = {
    bench: 'train',
    date: date.toISOString(),
    command,
    config: { ...CONFIG, batch: BATCH, seq: SEQ, tokensPerStep: BATCH * SEQ, student: STUDENT, optimizer: { name: 'AdamW', lr: LR, ...OPTIM }, loss: 'CE at every position (plain LM loss) through fusedHeadLoss, as the continual-pretrain stage', parameters: d.parameters },
    machine: {
      cpuModel: cpu.name,
      cpuFlags: cpu.flags,
      cpus: cpus().length,
      memTotalBytes: totalmem(),
      node: process.version,
      kernelsIsa: status.isa,
      kernelsThreads: status.threads,
      loadAverage1mAtStart: load0,
      otherProcessesCpuFraction: {
        projectGemm: gemm.best.otherProcessesCpuFraction,
        numpyGemm: numpy.best.otherProcessesCpuFraction,
        stockWasm: stock.best.otherProcessesCpuFraction,
        previous: prev.best.otherProcessesCpuFraction,
        default: dflt.best.otherProcessesCpuFraction,
      },
      attemptLoads: { projectGemm: gemm.loads, numpyGemm: numpy.loads, stockWasm: stock.loads, previous: prev.loads, default: dflt.loads },
    },
    method:
      `median step time of ${o.steps} (default, previous) / ${o.stockSteps} (stock) steps after ${o.warmup} / 1 warm-up step(s), each backend in its own process; ` +
      `${o.rounds} alternating round(s), the median round (by the default backend) reported; ` +
      'a step = forward + backward (CE at every position through fusedHeadLoss of @bitdistill/losses, the continual-pretrain stage loss) + AdamW in tf.tidy, loss read back; GEMM: median of 7 runs of >= 50 ms, measured in every round, best round per shape; ' +
      `a phase with other processes above ${(100 * o.maxLoad).toFixed(0)}% of the CPUs is rerun (up to ${o.retries} times) and the least disturbed attempt kept`,
    tokensPerSecond: { default: tps(d), previous: tps(pv), stockWasm: tps(s), unfused: tps(uf) },
    speedupVsUnfused: tps(d) / tps(uf),
    speedupVsStockWasm: tps(d) / tps(s),
    speedupVsPrevious: tps(d) / tps(pv),
    // optim.gradPrecision: bf16 (the student's BitLinear backward products on AVX512_BF16; everything else as default)
    bf16: b16 === null ? null : {
      tokensPerSecond: tps(b16),
      stepMs: median(b16.stepMs),
      speedupVsStockWasm: bf16VsStock,
      speedupVsDefault: median(rounds.filter((r) => r.bf16 !== null).map((r) => tps((r.bf16 as Phase).best.result) / tps(r.dflt.best.result))),
      cpuMfu: ceiling === null ? null : (flopsPerToken * tps(b16)) / (ceiling * 1e9),
      distillStepMs: refPairBf16?.distillMs ?? null,
      teacherStepMs: refPairBf16?.teacherMs ?? null,
      distillOverTeacher: refPairBf16?.ratio ?? null,
      distillOverFp32Teacher: refPairBf16 === null ? null : refPairBf16.distillMs / refPair.teacherMs,
      stepRounds: refPairBf16?.rounds ?? null,
      tinyRunSeconds: tinyBf16?.seconds ?? null,
      tinyRun: tinyBf16,
      rounds: rounds.map((r) => (r.bf16 === null ? null : tps(r.bf16.best.result))),
    },
    rounds: rounds.map((r) => ({
      tokensPerSecond: { default: tps(r.dflt.best.result), previous: tps(r.prev.best.result), stockWasm: tps(r.stock.best.result) },
      speedupVsStockWasm: tps(r.dflt.best.result) / tps(r.stock.best.result),
      speedupVsPrevious: tps(r.dflt.best.result) / tps(r.prev.best.result),
      otherProcessesCpuFraction: { default: r.dflt.best.otherProcessesCpuFraction, previous: r.prev.best.otherProcessesCpuFraction, stockWasm: r.stock.best.otherProcessesCpuFraction },
    })),
    stepMs: {
      default: median(d.stepMs),
      previous: median(pv.stepMs),
      stockWasm: median(s.stepMs),
      unfused: median(uf.stepMs),
      defaultAll: d.stepMs,
      previousAll: pv.stepMs,
      stockWasmAll: s.stepMs,
      // A teacher-SFT step (full-precision model, answer-token CE) and a distillation step (teacher forward + ternary
      // student forward/backward, CE + logit KD + attention-relation KD), default engine, batch 8 x 128.
      teacher: refPair.teacherMs,
      distill: refPair.distillMs,
      distillOverTeacher: refPair.ratio,
      teacherDistillRounds: refPair.rounds,
      tinyRounds: tinyPair?.rounds ?? null,
      // The same pairs with both kinds in one process, alternating blocks of steps (one VM phase for both).
      interleaved: { reference: refPair.interleaved, tiny: tinyPair?.interleaved ?? null },
      // The tiny config (configs/sst2-tiny.yaml's model and batch): steps alone, and the tiny run's stage seconds.
      tinyTeacher: tinyTeacherMs ?? null,
      tinyDistill: tinyDistillMs ?? null,
      tinyDistillOverTeacher: tinyTeacherMs == null || tinyDistillMs == null ? null : tinyDistillMs / tinyTeacherMs,
      tinyStageSecondsDistillOverTeacher: tinyTeacherS === null || tinyDistillS === null ? null : tinyDistillS / tinyTeacherS,
    },
    gemmGflops: {
      project: projectGflops,
      projectOneThread: gflopsAt(gemm.best.result, 1024, 1),
      numpy: numpyGflops,
      numpyOneThread: gflopsAt(numpy.best.result?.points, 1024, 1),
      projectVsNumpy: projectGflops !== null && numpyGflops !== null ? projectGflops / numpyGflops : null,
      best: ceiling,
      shapes: { project: gemm.best.result, numpy: numpy.best.result?.points ?? null },
      numpyInfo: numpy.best.result === null ? null : { version: numpy.best.result.numpy, openblasCore: numpy.best.result.openblasCore, env: numpy.best.result.env },
    },
    cpuMfu: ceiling === null ? null : (flopsPerToken * tps(d)) / (ceiling * 1e9),
    cpuMfuBasis: basis === null ? 'n/a' : `${basis.who} ${basis.size}^3, 2 threads: ${basis.gflops.toFixed(1)} GFLOP/s (the best 2-thread fp32 GEMM of this run)`,
    flopsPerToken,
    flopsCounted: `6 x ${(d.parameters - embeddingParams).toLocaleString('en-US')} parameters (all but the untied embedding, a gather) + attention 12 x layers x T x d_model = ${flopsPerToken.toLocaleString('en-US')} per token`,
    tinyRunSeconds: tiny?.seconds ?? null,
    tinyRun: tiny,
    peakRssBytes: d.peakRssBytes,
    peakRssBytesPrevious: pv.peakRssBytes,
    peakRssBytesStockWasm: s.peakRssBytes,
    tensorsAfterStep: {
      default: d.tensorsAfterStep,
      previous: pv.tensorsAfterStep,
      stockWasm: s.tensorsAfterStep,
      flat: [d, pv, s].every((x) => new Set(x.tensorsAfterStep).size === 1),
    },
    losses: { default: d.losses, previous: pv.losses, stockWasm: s.losses },
    backend: { default: d.backend, previous: pv.backend, stockWasm: s.backend },
    profile: d.profile,
  };
  mkdirSync(o.out, { recursive: true });
  const json = `${JSON.stringify(result, null, 2)}\n`;
  writeFileSync(join(o.out, `train-${day}.json`), json);
  writeFileSync(join(o.out, 'train-latest.json'), json);
  writeFileSync(join(o.out, `train-${day}.md`), markdown(result));
  console.error(
    `default ${tps(d).toFixed(0)} tokens/s, previous ${tps(pv).toFixed(0)} (x${(tps(d) / tps(pv)).toFixed(2)}), stock wasm ${tps(s).toFixed(0)} tokens/s (x${(tps(d) / tps(s)).toFixed(1)}); GEMM project ${projectGflops?.toFixed(0)} / numpy ${numpyGflops?.toFixed(0) ?? 'n/a'} GFLOP/s; CPU MFU ${result.cpuMfu?.toFixed(3) ?? 'n/a'}`,
  );
  console.error(`wrote ${join(o.out, `train-${day}.json`)}, .md and train-latest.json`);
}

type Result = {
  date: string;
  command: string;
  config: { parameters: number; tokensPerStep: number };
  machine: { cpuModel: string; cpuFlags: string[]; cpus: number; kernelsIsa: string; kernelsThreads: number; loadAverage1mAtStart: number; otherProcessesCpuFraction: Record<string, number> };
  method: string;
  tokensPerSecond: { default: number; previous: number; stockWasm: number; unfused: number };
  speedupVsStockWasm: number;
  speedupVsPrevious: number;
  speedupVsUnfused: number;
  flopsCounted: string;
  tinyRunSeconds: number | null;
  bf16: {
    tokensPerSecond: number;
    stepMs: number;
    speedupVsStockWasm: number;
    speedupVsDefault: number;
    cpuMfu: number | null;
    distillStepMs: number | null;
    teacherStepMs: number | null;
    distillOverTeacher: number | null;
    distillOverFp32Teacher: number | null;
    stepRounds: { teacherMs: number; distillMs: number }[] | null;
    tinyRunSeconds: number | null;
    rounds: (number | null)[];
  } | null;
  rounds: { tokensPerSecond: { default: number; previous: number; stockWasm: number }; speedupVsStockWasm: number }[];
  stepMs: {
    default: number;
    previous: number;
    stockWasm: number;
    unfused: number;
    teacher: number;
    distill: number;
    distillOverTeacher: number;
    teacherDistillRounds: { teacherMs: number; distillMs: number }[];
    tinyRounds: { teacherMs: number; distillMs: number }[] | null;
    interleaved: {
      reference: { teacherMs: number; distillMs: number; ratio: number; rounds: { teacherMs: number; distillMs: number }[] };
      tiny: { teacherMs: number; distillMs: number; ratio: number; rounds: { teacherMs: number; distillMs: number }[] } | null;
    };
    tinyTeacher: number | null;
    tinyDistill: number | null;
    tinyDistillOverTeacher: number | null;
    tinyStageSecondsDistillOverTeacher: number | null;
  };
  gemmGflops: { project: number | null; projectOneThread: number | null; numpy: number | null; numpyOneThread: number | null; shapes: { project: GemmPoint[]; numpy: GemmPoint[] | null }; numpyInfo: { openblasCore: string | null; env: Record<string, string> } | null };
  cpuMfu: number | null;
  cpuMfuBasis: string;
  peakRssBytes: number;
  peakRssBytesPrevious: number;
  peakRssBytesStockWasm: number;
  tensorsAfterStep: { flat: boolean };
  backend: { default: BackendInfo; previous: BackendInfo; stockWasm: BackendInfo };
  profile: ChildResult['profile'];
};

/** Per-round teacher / distill step times, "t / d, ..." in ms. */
function pairRounds(rounds: { teacherMs: number; distillMs: number }[]): string {
  return rounds.map((x) => `${x.teacherMs.toFixed(1)} / ${x.distillMs.toFixed(1)}`).join(', ');
}

function markdown(r: Result): string {
  const f = (v: number | null, d = 1): string => (v === null ? 'n/a' : v.toFixed(d));
  const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;
  const np = r.gemmGflops.shapes.numpy;
  const shapeRows = r.gemmGflops.shapes.project.map((p) => {
    const q = np?.find((x) => x.m === p.m && x.k === p.k && x.n === p.n && x.transA === p.transA && x.transB === p.transB && x.threads === p.threads);
    return `| ${p.m}x${p.k}x${p.n}${p.transA ? ' (A^T)' : ''}${p.transB ? ' (B^T)' : ''} | ${p.threads} | ${f(p.gflops)} | ${f(q?.gflops ?? null)} | ${q === undefined ? 'n/a' : pct(p.gflops / q.gflops)} |`;
  });
  const prof = r.profile;
  const lines = [
    `# Training-step benchmark, ${r.date.slice(0, 10)}`,
    '',
    `Command: \`${r.command}\`  `,
    `CPU: ${r.machine.cpuModel} (${r.machine.cpuFlags.join(' ')}), ${r.machine.cpus} CPUs, Node ${process.version}; kernels-cpu ISA **${r.machine.kernelsIsa}**, ${r.machine.kernelsThreads} threads  `,
    `Load: average ${r.machine.loadAverage1mAtStart.toFixed(2)} at start; other processes used ${Object.entries(r.machine.otherProcessesCpuFraction)
      .map(([k, v]) => `${pct(v)} (${k})`)
      .join(', ')} of the CPUs  `,
    `Model: the reference config of MACHINE.md (vocab 4096, d_model 256, 4 layers, 4 heads, ffn 688, seq 128, batch 8; ${r.config.parameters.toLocaleString('en-US')} parameters with the SubLN gains), ternary student (absmean, int8 activations, SubLN allnorm), AdamW  `,
    `Method: ${r.method}`,
    '',
    '## Result',
    '',
    '| | default backend (native engine, fused ops) | previous default (wasm + native kernels) | stock wasm |',
    '|---|---:|---:|---:|',
    `| provider | ${r.backend.default.provider} | ${r.backend.previous.provider} | ${r.backend.stockWasm.provider} |`,
    `| tokens/s | **${f(r.tokensPerSecond.default, 0)}** | ${f(r.tokensPerSecond.previous, 0)} | ${f(r.tokensPerSecond.stockWasm, 0)} |`,
    `| step (median) | ${f(r.stepMs.default)} ms | ${f(r.stepMs.previous)} ms | ${f(r.stepMs.stockWasm)} ms |`,
    `| peak RSS | ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB | ${(r.peakRssBytesPrevious / 2 ** 20).toFixed(0)} MiB | ${(r.peakRssBytesStockWasm / 2 ** 20).toFixed(0)} MiB |`,
    '',
    `Speed-up over the previous default in this run: **x${f(r.speedupVsPrevious, 2)}**; over stock wasm: x${f(r.speedupVsStockWasm)}. Tensor count flat across steps: ${r.tensorsAfterStep.flat ? 'yes' : '**no**'}.  `,
    `Rounds (default / previous / stock tokens/s): ${r.rounds.map((x) => `${f(x.tokensPerSecond.default, 0)} / ${f(x.tokensPerSecond.previous, 0)} / ${f(x.tokensPerSecond.stockWasm, 0)}`).join(', ')}.  `,
    `Without the fused training ops (BITDISTILL_FUSED=0, same engine): ${f(r.tokensPerSecond.unfused, 0)} tokens/s (${f(r.stepMs.unfused)} ms); the fused ops: x${f(r.speedupVsUnfused, 2)}.  `,
    `CPU MFU = FLOPs per token x tokens/s / the best GEMM (${r.cpuMfuBasis}) = **${f(r.cpuMfu, 3)}**; FLOPs counted: ${r.flopsCounted}. The student's BitLinear forward products (a third of its GEMM FLOPs) run on the int8 GEMM (vpdpbusd on avx512vnni / amx: int8 codes x ternary codes, exact in int32), whose rate is not bounded by this fp32 basis; the backward products are fp32.`,
    '',
    `Teacher-SFT step ${f(r.stepMs.teacher)} ms, distillation step ${f(r.stepMs.distill)} ms (**x${f(r.stepMs.distillOverTeacher, 2)}**), default engine, batch 8 x 128; medians of ${r.stepMs.teacherDistillRounds.length} rounds (teacher / distill ms: ${pairRounds(r.stepMs.teacherDistillRounds)}).  `,
    `Tiny config (stories260K, batch 16 x 64, \`npm run bench -- train --shape stories260K\`'s children): teacher-SFT step ${f(r.stepMs.tinyTeacher)} ms, distillation step ${f(r.stepMs.tinyDistill)} ms (**x${f(r.stepMs.tinyDistillOverTeacher, 2)}**; rounds ${r.stepMs.tinyRounds === null ? 'n/a' : pairRounds(r.stepMs.tinyRounds)}); in the tiny run's stage seconds (with data preparation, checkpoints and the dev evaluation): x${f(r.stepMs.tinyStageSecondsDistillOverTeacher, 2)}.  `,
    `The same pairs with both kinds in one process, alternating blocks of 5 steps (the first of each block not timed), so that both see the same phase of this VM's drifting speed: reference x${f(r.stepMs.interleaved.reference.ratio, 2)} (${pairRounds(r.stepMs.interleaved.reference.rounds)})${r.stepMs.interleaved.tiny === null ? '' : `, tiny x${f(r.stepMs.interleaved.tiny.ratio, 2)} (${pairRounds(r.stepMs.interleaved.tiny.rounds)})`}.  `,
    `Bundled tiny run (\`npx bitdistill train --config configs/sst2-tiny.yaml\`, four stages): ${r.tinyRunSeconds === null ? 'not run (--no-tiny)' : `**${f(r.tinyRunSeconds)} s**`}.`,
    '',
    ...(r.bf16 === null
      ? ['With `optim.gradPrecision: bf16`: not measured (this CPU has no AVX512_BF16).']
      : [
          `With \`optim.gradPrecision: bf16\` (backward products on AVX512_BF16: the student's BitLinear with the gradient operand rounded to bf16 and the codes exact, the head's and dense linears' dx / dW with both operands rounded; fp32 sums; forward passes and attention as above): **${f(r.bf16.tokensPerSecond, 0)} tokens/s** (${f(r.bf16.stepMs)} ms; the median of its own rounds), x${f(r.bf16.speedupVsDefault, 2)} the fp32 default and **x${f(r.bf16.speedupVsStockWasm)} stock wasm** (fp32; medians of the per-round ratios) in this run; MFU on the same fp32 basis ${f(r.bf16.cpuMfu, 3)}. Rounds: ${r.bf16.rounds.map((x) => f(x, 0)).join(', ')} tokens/s.  `,
          `Distillation step with it ${f(r.bf16.distillStepMs)} ms, teacher-SFT step with it ${f(r.bf16.teacherStepMs)} ms: **x${f(r.bf16.distillOverTeacher, 2)}** (x${f(r.bf16.distillOverFp32Teacher, 2)} the fp32 teacher step; rounds ${r.bf16.stepRounds === null ? 'n/a' : pairRounds(r.bf16.stepRounds)}); tiny run with \`optim.gradPrecision=bf16\`: ${r.bf16.tinyRunSeconds === null ? 'not run' : `${f(r.bf16.tinyRunSeconds)} s`}.`,
        ]),
    '',
    '## fp32 GEMM (GFLOP/s)',
    '',
    `numpy: ${r.gemmGflops.numpyInfo === null ? 'not available' : `OpenBLAS core ${r.gemmGflops.numpyInfo.openblasCore ?? '?'}, env ${JSON.stringify(r.gemmGflops.numpyInfo.env)}`}`,
    '',
    '| m x k x n | threads | project | numpy | project / numpy |',
    '|---|---:|---:|---:|---:|',
    ...shapeRows,
    '',
  ];
  if (prof !== null) {
    lines.push(
      '## Profile of one step, default backend (tf.profile, top 10)',
      '',
      `Profiled step ${f(prof.stepMs)} ms, of which kernels ${f(prof.kernelMs)} ms; the rest is tfjs engine and JavaScript (autograd bookkeeping, op dispatch, tidy).`,
      '',
      '| kernel | ms | calls | share of kernel time |',
      '|---|---:|---:|---:|',
      ...prof.byKernel.map((k) => `| ${k.kernel} | ${f(k.ms)} | ${k.calls} | ${pct(k.share)} |`),
      '',
      '| kernel and input shapes | ms | calls | share |',
      '|---|---:|---:|---:|',
      ...prof.byKernelAndShape.map((k) => `| ${k.kernel} | ${f(k.ms)} | ${k.calls} | ${pct(k.share)} |`),
      '',
    );
  }
  return lines.join('\n');
}
