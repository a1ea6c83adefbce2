/**
 * `npm run bench -- train --shape qwen3-0.6b [--steps N] [--warmup N] [--kinds sft,distill] [--recompute] [--grad-precision bf16] [--out DIR]`
 *
 * Training steps of a real model shape (configs/arch/<shape>.json, randomly initialised: speed and memory do
 * not depend on the values) on the default backend, batch 8 x 128 tokens, each kind in its own process:
 *   sft      a teacher-SFT step as the teacher stage runs it: full-precision model, answer-token CE through
 *            the vocabulary projection at the answer rows only (one per sequence), AdamW.
 *   distill  a distillation step as the distill stage runs it: ternary student with SubLN (absmean, int8
 *            activations), frozen full-precision teacher forward off the gradient tape, CE + lambda * logit KD
 *            at every position (fused, row-chunked vocabulary projection) + gamma * attention-relation KD at
 *            the distillation layer, AdamW.
 * Reported: median step time, tokens/s, peak RSS (VmHWM of the child), and the GEMM-bound ceiling of an SFT
 * step: (6 x non-embedding parameters x tokens + attention FLOPs) / the best 2-thread fp32 GEMM rate measured
 * in the same run over this shape's products (the project's GEMM, and numpy with OPENBLAS_CORETYPE and
 * OPENBLAS_L2_SIZE unset for that one command, MACHINE.md; the faster of the two).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { enginePoolStats, initBackend, type BackendChoice, type BackendInfo } from '@bitdistill/backend';
import { initKernels, matmulF32, setGradPrecision, type GradPrecision } from '@bitdistill/kernels-cpu/engine';
import { answerCrossEntropy, attentionRelationKd, fusedHeadLoss, untaped } from '@bitdistill/losses';
import { parseDecoderConfig } from '@bitdistill/arch';
import { initDecoder, type Decoder } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { AdamW, clipScale } from '@bitdistill/trainer';
import { timeKernels } from './kernel-timer.ts';
import { CONFIG as REFERENCE_CONFIG } from './train.ts';
import { cpuInfo } from './machine.ts';

/** `--shape reference`: the reference config of the train bench (train.ts), for its teacher / distill steps. */
export const REFERENCE_SHAPE = 'reference';

/** Batch x sequence of a step: 8 x 128 by default; the stories260K shape takes the tiny config's 16 x 64. */
let BATCH = 8;
let SEQ = 128;
/** `--shape stories260K`: the bundled tiny model (models/stories260K/config.json) at configs/sst2-tiny.yaml's batch. */
export const TINY_SHAPE = 'stories260K';
const TINY = { batch: 16, seq: 64, relationHeads: 8 };
const OPTIM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
const DISTILL = { lambdaLogit: 10, gammaAttn: 1e5, temperature: 5, relationHeads: 32 };
export const KINDS = ['sft', 'distill'] as const;
export type Kind = (typeof KINDS)[number];

interface Options {
  shape: string;
  steps: number;
  warmup: number;
  kinds: Kind[];
  recompute: boolean;
  /** optim.gradPrecision: the backward products (the student's BitLinear, the dense linears', the head's) in bf16. */
  gradPrecision: GradPrecision;
  out: string;
}

function parse(args: string[]): Options {
  const o: Options = { shape: '', steps: 3, warmup: 1, kinds: [...KINDS], recompute: false, gradPrecision: 'fp32', out: 'bench/results' };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = args[i + 1];
    if (a === '--recompute') {
      o.recompute = true;
      continue;
    }
    if (a === '--shape') o.shape = String(v);
    else if (a === '--steps') o.steps = Number(v);
    else if (a === '--warmup') o.warmup = Number(v);
    else if (a === '--kinds') o.kinds = String(v).split(',') as Kind[];
    else if (a === '--out') o.out = String(v);
    else if (a === '--grad-precision' && (v === 'fp32' || v === 'bf16')) o.gradPrecision = v;
    else throw new Error(`train --shape bench: unknown option ${a} ${v ?? ''}; options: --shape NAME, --steps N, --warmup N, --kinds sft,distill, --recompute, --grad-precision fp32|bf16, --out DIR`);
    i++;
  }
  if (!(o.steps >= 1 && o.warmup >= 0) || o.kinds.some((k) => !(KINDS as readonly string[]).includes(k))) {
    throw new Error(`train --shape bench: need --steps >= 1, --warmup >= 0, --kinds from ${KINDS.join(',')}`);
  }
  return o;
}

function archPath(shape: string): string {
  if (shape === TINY_SHAPE) return join('models', 'stories260K', 'config.json');
  return join('configs', 'arch', `${shape}.json`);
}

/** The step's batch x sequence for a shape (the tiny model trains at its config's batch). */
function useShapeBatch(shape: string): void {
  [BATCH, SEQ] = shape === TINY_SHAPE ? [TINY.batch, TINY.seq] : [8, 128];
}

function readArch(shape: string): Record<string, unknown> {
  useShapeBatch(shape);
  if (shape === REFERENCE_SHAPE) return { ...REFERENCE_CONFIG };
  try {
    return JSON.parse(readFileSync(archPath(shape), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`train --shape ${shape}: cannot read ${archPath(shape)} (${(e as Error).message}); the shapes are the files of configs/arch, ${REFERENCE_SHAPE} and ${TINY_SHAPE}`);
  }
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function vmHwmBytes(): number {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m === null ? process.resourceUsage().maxRSS * 1024 : Number(m[1]) * 1024;
}

// ---------------------------------------------------------------------------------------------------------
// Child: one kind, timed steps

export interface ChildResult {
  kind: Kind;
  backend: BackendInfo;
  parameters: number;
  stepMs: number[];
  /** Per timed step: forward + backward (variableGrads), the gradient-norm pass, the AdamW update. */
  phaseMs: { grads: number[]; norm: number[]; update: number[] };
  losses: number[];
  peakRssBytes: number;
  initSeconds: number;
}

function tokens(V: number, salt: number): Int32Array {
  return Int32Array.from({ length: BATCH * SEQ }, (_, i) => (Math.imul(i + 1 + salt, 2654435761) >>> 0) % V);
}

interface Stepper {
  step: () => Promise<number>;
  phases: { grads: number[]; norm: number[]; update: number[] };
  parameters: number;
  initSeconds: number;
}

/** One kind's model(s), batch and optimizer, and its training step. */
function makeStepper(kind: Kind, shape: string, recompute: boolean): Stepper {
  const arch = readArch(shape);
  const t0 = performance.now();
  const model = initDecoder(arch, 1);
  model.recompute = recompute;
  let teacher: Decoder | null = null;
  if (kind === 'distill') {
    prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
    teacher = initDecoder(arch, 2);
    for (const p of teacher.params.values()) p.trainable = false;
  }
  const initSeconds = (performance.now() - t0) / 1000;
  const V = model.config.vocabSize;
  const N = BATCH * SEQ;
  const ids = tf.tensor2d(tokens(V, 0), [BATCH, SEQ], 'int32');
  const next = tf.tensor1d(tokens(V, 1), 'int32');
  // SFT: one answer token per sequence (the last position), as a GLUE label word.
  const answerRows = tf.tensor1d(Int32Array.from({ length: BATCH }, (_, b) => b * SEQ + SEQ - 1), 'int32');
  const answerLabels = tf.tensor2d(Int32Array.from({ length: BATCH }, (_, b) => (b * 7919) % V), [1, BATCH], 'int32');
  const answerMaskRows = tf.ones([1, BATCH]);
  const answerMaskAll = tf.tensor1d(Float32Array.from({ length: N }, (_, i) => (i % SEQ === SEQ - 1 ? 1 : 0)));
  const validAll = tf.ones([N]);
  const opt = new AdamW(OPTIM);
  const names = new Map([...model.params].map(([name, v]) => [v.name, name]));
  const trainable = new Map([...model.params].filter(([, v]) => v.trainable));
  const vars = [...trainable.values()];
  const layer = Math.min(model.config.numLayers - 1, Math.floor((model.config.numLayers * 22) / 28));

  const lossFn = (): tf.Scalar => {
    if (kind === 'sft') return answerCrossEntropy(model.forward(ids, { logitRows: answerRows }).logits, answerLabels, answerMaskRows);
    const t = teacher as Decoder;
    const [tHidden, tq, tk, tv] = untaped(() => {
      const o = t.forward(ids, { output: 'hidden', captureLayers: [layer] });
      const c = o.captured.get(layer);
      if (c === undefined) throw new Error('no capture');
      return [o.hidden, c.q, c.k, c.v];
    });
    const s = model.forward(ids, { output: 'hidden', captureLayers: [layer] });
    const head = fusedHeadLoss(s.hidden, model.headWeight(), {
      ce: { labels: next, mask: answerMaskAll },
      kd: { teacherHidden: tHidden, teacherWeight: t.headWeight(), mask: validAll, temperature: DISTILL.temperature, weight: DISTILL.lambdaLogit },
    });
    const sc = s.captured.get(layer);
    if (sc === undefined) throw new Error('no capture');
    const ad = attentionRelationKd({ q: tq as tf.Tensor4D, k: tk as tf.Tensor4D, v: tv as tf.Tensor4D }, sc, { relationHeads: shape === TINY_SHAPE ? TINY.relationHeads : DISTILL.relationHeads, relation: 'cosine' });
    return tf.add(head.loss, tf.mul(ad, DISTILL.gammaAttn)) as tf.Scalar;
  };

  const phases: { grads: number[]; norm: number[]; update: number[] } = { grads: [], norm: [], update: [] };
  const step = async (): Promise<number> => {
    const t0 = performance.now();
    const { value, grads } = tf.variableGrads(lossFn, vars);
    const t1 = performance.now();
    const byName: Record<string, tf.Tensor> = {};
    for (const [vn, g] of Object.entries(grads)) byName[names.get(vn) as string] = g;
    const { scale } = await clipScale(byName, 1, 1);
    const t2 = performance.now();
    opt.apply(trainable, byName, 1e-5, scale);
    phases.grads.push(t1 - t0);
    phases.norm.push(t2 - t1);
    phases.update.push(performance.now() - t2);
    tf.dispose(Object.values(grads));
    const loss = (await value.data())[0] as number;
    value.dispose();
    return loss;
  };
  return { step, phases, parameters: model.numParameters(), initSeconds };
}

async function child(kind: Kind, shape: string, steps: number, warmup: number, recompute: boolean, choice: BackendChoice, precision: GradPrecision): Promise<void> {
  const backend = await initBackend(choice);
  if (precision === 'bf16' && !setGradPrecision('bf16')) throw new Error('train --shape bench: --grad-precision bf16 needs AVX512_BF16 and the native kernels');
  const { step, phases, parameters, initSeconds } = makeStepper(kind, shape, recompute);

  const timer = process.env['BITDISTILL_KERNEL_TIMES'] === '1' ? timeKernels(backend.name) : null;
  for (let i = 0; i < warmup; i++) {
    const w0 = performance.now();
    timer?.reset();
    await step();
    if (timer !== null) {
      const r = timer.report(25);
      console.error(`${kind}: kernels ${(r.totalMs / 1000).toFixed(2)} s of the ${((performance.now() - w0) / 1000).toFixed(2)} s step`);
      for (const k of [...r.byKernel, ...r.byKernelAndShape]) console.error(`  ${k.kernel.padEnd(90)} ${k.ms.toFixed(1).padStart(9)} ms ${String(k.calls).padStart(6)} calls`);
    }
    console.error(`${kind}: warm-up step ${((performance.now() - w0) / 1000).toFixed(1)} s`);
  }
  for (const k of Object.keys(phases) as (keyof typeof phases)[]) phases[k] = [];
  const stepMs: number[] = [];
  const losses: number[] = [];
  timer?.reset();
  const pool0 = timer === null ? null : enginePoolStats();
  for (let i = 0; i < steps; i++) {
    const s0 = performance.now();
    losses.push(await step());
    stepMs.push(performance.now() - s0);
    console.error(
      `${kind}: step ${i + 1}/${steps} ${((stepMs[i] as number) / 1000).toFixed(1)} s (forward+backward ${((phases.grads[i] as number) / 1000).toFixed(1)}, grad norm ${((phases.norm[i] as number) / 1000).toFixed(1)}, AdamW ${((phases.update[i] as number) / 1000).toFixed(1)}), loss ${losses[i]}`,
    );
  }
  if (timer !== null) {
    // Single-step kernel times are noisy on these VMs: the per-step mean over the timed steps.
    const r = timer.report(40);
    console.error(`${kind}: kernels ${(r.totalMs / steps).toFixed(2)} ms a step (mean of the ${steps} timed steps)`);
    const pool1 = enginePoolStats();
    if (pool0 !== null && pool1 !== null) {
      const per = (k: 'hits' | 'misses' | 'evicted' | 'collections') => ((pool1[k] - pool0[k]) / steps).toFixed(1);
      console.error(`${kind}: engine pool per step: ${per('hits')} hits, ${per('misses')} misses, ${per('evicted')} evicted, ${per('collections')} forced GCs; cap ${(pool1.capBytes / 2 ** 30).toFixed(2)} GiB`);
    }
    for (const k of r.byKernelAndShape) console.error(`  ${k.kernel.padEnd(90)} ${(k.ms / steps).toFixed(3).padStart(9)} ms ${(k.calls / steps).toFixed(0).padStart(6)} calls`);
  }
  const result: ChildResult = { kind, backend, parameters, stepMs, phaseMs: phases, losses, peakRssBytes: vmHwmBytes(), initSeconds };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Steps per block of the interleaved pair; the first step of each block is not counted (caches warm to its kind). */
const PAIR_BLOCK = 5;

/**
 * The teacher-SFT and distillation steps in one process, in alternating blocks of PAIR_BLOCK steps (`first`
 * starts), for their ratio: this VM's speed drifts by 10-20% over tens of seconds, so steps measured in separate
 * processes minutes apart compare two machine phases (the tiny pair's per-process medians moved 18.7-25.8 ms for
 * the same step); blocks a fraction of a second apart see the same phase. The first step of each block is
 * dropped, so neither kind is timed on caches the other just filled. Prints [sft result, distill result].
 */
async function pairChild(shape: string, steps: number, warmup: number, choice: BackendChoice, precision: GradPrecision, first: Kind): Promise<void> {
  const backend = await initBackend(choice);
  if (precision === 'bf16' && !setGradPrecision('bf16')) throw new Error('train --shape bench: --grad-precision bf16 needs AVX512_BF16 and the native kernels');
  const order: Kind[] = first === 'sft' ? ['sft', 'distill'] : ['distill', 'sft'];
  const run = new Map(order.map((k) => [k, { s: makeStepper(k, shape, false), stepMs: [] as number[], losses: [] as number[] }]));
  for (const k of order) for (let i = 0; i < warmup; i++) await (run.get(k) as { s: Stepper }).s.step();
  for (const k of order) for (const key of ['grads', 'norm', 'update'] as const) (run.get(k) as { s: Stepper }).s.phases[key] = [];
  const perBlock = PAIR_BLOCK - 1;
  while ((run.get(order[0] as Kind)?.stepMs.length ?? 0) < steps) {
    for (const k of order) {
      const r = run.get(k) as { s: Stepper; stepMs: number[]; losses: number[] };
      await r.s.step(); // this kind's caches back
      for (const key of ['grads', 'norm', 'update'] as const) r.s.phases[key].pop();
      for (let i = 0; i < perBlock && r.stepMs.length < steps; i++) {
        const s0 = performance.now();
        r.losses.push(await r.s.step());
        r.stepMs.push(performance.now() - s0);
      }
    }
  }
  const out = KINDS.map((k) => {
    const r = run.get(k) as { s: Stepper; stepMs: number[]; losses: number[] };
    return { kind: k, backend, parameters: r.s.parameters, stepMs: r.stepMs, phaseMs: r.s.phases, losses: r.losses, peakRssBytes: vmHwmBytes(), initSeconds: r.s.initSeconds } satisfies ChildResult;
  });
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/**
 * A teacher-SFT / distillation pair of `shape` measured in one process (pairChild): the two results.
 */
export function runPairChild(o: { shape: string; steps: number; warmup: number; gradPrecision?: GradPrecision; first: Kind }): [ChildResult, ChildResult] {
  const args = ['--import', 'tsx', 'scripts/bench/index.ts', 'train', '--pair-child', o.shape, String(o.steps), String(o.warmup), 'auto', o.gradPrecision ?? 'fp32', o.first];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`train --shape bench: the pair child failed (exit ${r.status}, signal ${r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as [ChildResult, ChildResult];
}

// ---------------------------------------------------------------------------------------------------------
// Parent

interface GemmPoint {
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  gflops: number;
}

/** The fp32 products of one training step of this shape: forward x W^T, dx = dy W, dW = dy^T x. */
function stepGemmShapes(cfg: ReturnType<typeof parseDecoderConfig>): [number, number, number, boolean, boolean][] {
  const N = BATCH * SEQ;
  const C = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const q = cfg.numHeads * cfg.headDim;
  return [
    [N, C, I, false, true], // gate/up forward
    [N, I, C, false, true], // down forward
    [N, C, q, false, true], // q forward
    [N, I, C, false, false], // gate/up dx
    [I, N, C, true, false], // gate/up dW
  ];
}

function projectGemm(shapes: [number, number, number, boolean, boolean][]): GemmPoint[] {
  return shapes.map(([m, k, n, transA, transB]) => {
    const a = Float32Array.from({ length: m * k }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const b = Float32Array.from({ length: k * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
    const c = new Float32Array(m * n);
    const one = (): void => {
      matmulF32(a, b, m, k, n, { transA, transB }, c);
    };
    for (let i = 0; i < 3; i++) one();
    const per: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t = performance.now();
      one();
      per.push(performance.now() - t);
    }
    return { m, k, n, transA, transB, gflops: (2 * m * k * n) / median(per) / 1e6 };
  });
}

// threadpoolctl is not installed here (and PyPI is unreachable): the OpenBLAS core is read from the library
// numpy loaded, through its own openblas_get_corename, as threadpoolctl does.
const NUMPY = String.raw`
import ctypes, glob, json, os, sys, time
import numpy as np
info = None
for lib in glob.glob(os.path.join(os.path.dirname(np.__file__), '..', 'numpy.libs', '*openblas*')) + glob.glob(os.path.join(os.path.dirname(np.__file__), '.libs', '*openblas*')):
    try:
        h = ctypes.CDLL(lib)
    except OSError:
        continue
    for name in ['scipy_openblas_get_corename64_', 'openblas_get_corename64_', 'openblas_get_corename']:
        if hasattr(h, name):
            f = getattr(h, name); f.restype = ctypes.c_char_p; info = dict(library=os.path.basename(lib), core=f().decode()); break
    for name in ['scipy_openblas_get_num_threads64_', 'openblas_get_num_threads64_', 'openblas_get_num_threads']:
        if info is not None and hasattr(h, name):
            info['threads'] = getattr(h, name)(); break
out = []
for (m, k, n, ta, tb) in json.loads(sys.argv[1]):
    a = np.random.rand(k, m).astype(np.float32) if ta else np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(n, k).astype(np.float32) if tb else np.random.rand(k, n).astype(np.float32)
    op = lambda: (a.T if ta else a) @ (b.T if tb else b)
    for _ in range(3): op()
    per = []
    for _ in range(7):
        t = time.perf_counter(); op(); per.append(time.perf_counter() - t)
    per.sort()
    out.append(dict(m=m, k=k, n=n, transA=ta, transB=tb, gflops=2 * m * k * n / per[3] / 1e9))
print(json.dumps(dict(numpy=np.__version__, threadpools=info, points=out)))
`;

function numpyGemm(shapes: [number, number, number, boolean, boolean][]): { points: GemmPoint[]; info: unknown } | null {
  const env = { ...process.env };
  delete env['OPENBLAS_CORETYPE'];
  delete env['OPENBLAS_L2_SIZE'];
  const r = spawnSync('python3', ['-c', NUMPY, JSON.stringify(shapes)], { encoding: 'utf8', env });
  if (r.status !== 0) {
    console.error(`numpy GEMM not measured: ${r.stderr.trim().split('\n').pop()}`);
    return null;
  }
  const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { numpy: string; threadpools: unknown; points: GemmPoint[] };
  return { points: j.points, info: { numpy: j.numpy, threadpools: j.threadpools, env: 'OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset' } };
}

/** The command line of one shape child (`backend` default: auto, the default backend). */
export function shapeChildArgs(kind: Kind, o: Pick<Options, 'shape' | 'steps' | 'warmup' | 'recompute'> & { gradPrecision?: GradPrecision }, backend: BackendChoice = 'auto'): string[] {
  return ['--import', 'tsx', 'scripts/bench/index.ts', 'train', '--shape-child', kind, o.shape, String(o.steps), String(o.warmup), o.recompute ? 'recompute' : '', backend, o.gradPrecision ?? 'fp32'];
}

export function runShapeChild(kind: Kind, o: Pick<Options, 'shape' | 'steps' | 'warmup' | 'recompute'> & { gradPrecision?: GradPrecision }): ChildResult {
  const r = spawnSync(process.execPath, shapeChildArgs(kind, o), {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`train --shape bench: the ${kind} child failed (exit ${r.status}, signal ${r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildResult;
}

export async function shapeMain(argv: string[]): Promise<void> {
  if (argv[0] === '--pair-child') {
    await pairChild(String(argv[1]), Number(argv[2]), Number(argv[3]), (argv[4] ?? 'auto') as BackendChoice, argv[5] === 'bf16' ? 'bf16' : 'fp32', argv[6] === 'distill' ? 'distill' : 'sft');
    return;
  }
  if (argv[0] === '--shape-child') {
    await child(argv[1] as Kind, String(argv[2]), Number(argv[3]), Number(argv[4]), argv[5] === 'recompute', (argv[6] ?? 'auto') as BackendChoice, argv[7] === 'bf16' ? 'bf16' : 'fp32');
    return;
  }
  const o = parse(argv);
  const arch = readArch(o.shape);
  const cfg = parseDecoderConfig(arch, archPath(o.shape));
  tf.enableProdMode();
  const status = initKernels({});
  const cpuModel = cpuInfo().name;
  console.error(`train --shape ${o.shape}: ${cpuModel}, ${cpus().length} CPUs, kernels ${status.native ? `${status.isa} x${status.threads}` : 'not native'}`);

  const shapes = stepGemmShapes(cfg);
  const project = projectGemm(shapes);
  const numpy = numpyGemm(shapes);
  const bestProject = Math.max(...project.map((p) => p.gflops));
  const bestNumpy = numpy === null ? null : Math.max(...numpy.points.map((p) => p.gflops));
  const ceilingGflops = Math.max(bestProject, bestNumpy ?? 0);

  const C = cfg.hiddenSize;
  const embedding = cfg.vocabSize * C * (cfg.tieWordEmbeddings ? 1 : 2);
  const results: ChildResult[] = [];
  for (const kind of o.kinds) results.push(runShapeChild(kind, o));
  const nonEmbedding = (results.find((r) => r.kind === 'sft')?.parameters ?? results[0]?.parameters ?? 0) - embedding;
  const tokensPerStep = BATCH * SEQ;
  const attentionFlops = 12 * BATCH * cfg.numHeads * SEQ * SEQ * cfg.headDim * cfg.numLayers; // QK^T and AV, forward + backward
  const sftFlops = 6 * nonEmbedding * tokensPerStep + attentionFlops;
  const ceilingSeconds = sftFlops / (ceilingGflops * 1e9);
  const rows = results.map((r) => {
    const ms = median(r.stepMs);
    return {
      kind: r.kind,
      stepSeconds: ms / 1000,
      tokensPerSecond: tokensPerStep / (ms / 1000),
      peakRssBytes: r.peakRssBytes,
      parameters: r.parameters,
      ofCeiling: r.kind === 'sft' ? ceilingSeconds / (ms / 1000) : null,
      losses: r.losses,
      stepMsAll: r.stepMs,
      phaseMedianSeconds: { forwardBackward: median(r.phaseMs.grads) / 1000, gradNorm: median(r.phaseMs.norm) / 1000, adamw: median(r.phaseMs.update) / 1000 },
      initSeconds: r.initSeconds,
      backend: r.backend.provider,
    };
  });
  const date = new Date();
  const day = date.toISOString().slice(0, 10);
  const result = {
    bench: 'train-shape',
    date: date.toISOString(),
    command: `npm run bench -- train ${argv.join(' ')}`,
    shape: o.shape,
    arch,
    batch: BATCH,
    seq: SEQ,
    machine: { cpuModel, cpus: cpus().length, memTotalBytes: totalmem(), node: process.version, kernelsIsa: status.isa, kernelsThreads: status.threads },
    recompute: o.recompute,
    gradPrecision: o.gradPrecision,
    method: `median of ${o.steps} step(s) after ${o.warmup} warm-up step(s), each kind in its own process${o.recompute ? ', activation recomputation on' : ''}${o.gradPrecision === 'bf16' ? ', every backward product in bf16 (optim.gradPrecision: bf16: the student BitLinear, the dense linears, the head; forward and attention fp32)' : ''}; GEMM: median of 7 runs per shape, 2 threads`,
    gemm: { project, numpy: numpy?.points ?? null, numpyInfo: numpy?.info ?? null, bestProjectGflops: bestProject, bestNumpyGflops: bestNumpy, ceilingGflops },
    flops: { nonEmbeddingParameters: nonEmbedding, tokensPerStep, attentionFlops, sftStepFlops: sftFlops, ceilingSeconds },
    rows,
  };
  mkdirSync(o.out, { recursive: true });
  const base = join(o.out, `train-${o.shape}${o.recompute ? '-recompute' : ''}${o.gradPrecision === 'bf16' ? '-bf16' : ''}-${day}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const f = (v: number, d = 1): string => v.toFixed(d);
  const secs = (v: number): string => (v < 1 ? `${f(v * 1000)} ms` : `${f(v, 2)} s`);
  const md = [
    `# Training steps at the ${o.shape} shape, ${day}`,
    '',
    `Command: \`${result.command}\`  `,
    `CPU: ${cpuModel}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; kernels-cpu ISA **${status.isa}**, ${status.threads} threads  `,
    `Model: ${o.shape === REFERENCE_SHAPE ? "the train bench's reference config" : archPath(o.shape)} (random weights), batch ${BATCH} x ${SEQ} tokens; ${result.method}`,
    '',
    `| step | median step | forward + backward | grad norm | AdamW | tokens/s | peak RSS | of the GEMM-bound ceiling${o.gradPrecision === 'bf16' ? ' (fp32 basis: bf16 products are not bounded by it)' : ''} |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.kind} | ${secs(r.stepSeconds)} | ${secs(r.phaseMedianSeconds.forwardBackward)} | ${secs(r.phaseMedianSeconds.gradNorm)} | ${secs(r.phaseMedianSeconds.adamw)} | ${f(r.tokensPerSecond, 1)} | ${f(r.peakRssBytes / 2 ** 30, 2)} GiB | ${r.ofCeiling === null ? '-' : `${f(100 * r.ofCeiling)}%`} |`,
    ),
    '',
    `Ceiling of an SFT step: (6 x ${nonEmbedding.toLocaleString('en-US')} non-embedding parameters x ${tokensPerStep} tokens + ${f(attentionFlops / 1e9)} GFLOP attention) = ${f(sftFlops / 1e12, 2)} TFLOP at ${f(ceilingGflops)} GFLOP/s (best 2-thread fp32 GEMM over this shape's products: project ${f(bestProject)}, numpy ${bestNumpy === null ? 'n/a' : f(bestNumpy)}) = **${f(ceilingSeconds, 2)} s**.`,
    '',
    '| GEMM m x k x n | project GFLOP/s | numpy GFLOP/s |',
    '|---|---:|---:|',
    ...project.map((p, i) => `| ${p.m}x${p.k}x${p.n}${p.transA ? ' (A^T)' : ''}${p.transB ? ' (B^T)' : ''} | ${f(p.gflops)} | ${numpy === null ? 'n/a' : f(numpy.points[i]?.gflops ?? Number.NaN)} |`),
    '',
    `numpy: ${JSON.stringify(numpy?.info ?? null)}`,
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  console.error(md);
  console.error(`wrote ${base}.json and .md`);
}
