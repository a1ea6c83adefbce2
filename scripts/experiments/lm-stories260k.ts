/**
 * Issue 19: what each BitDistill stage recovers of a real pretrained teacher's language modelling.
 * Teacher: models/stories260K (Llama-2, 260K params, TinyStories). Task: language modelling on text in the
 * teacher's own domain, sampled from it (temperature 1, many prompts, seeded), split into training and
 * held-out stories. Metrics on the held-out stories: perplexity and KL(teacher || student) per token (tau 1).
 *
 *   npm run reproduce:lm                  # the reduced grid (main rows x 3 seeds, layer and gammaAttn sweeps)
 *   npm run reproduce:lm -- --full        # + every layer and gammaAttn value, 3 seeds for the ablation rows too
 *   npm run reproduce:lm -- --list        # the run matrix
 *
 * Every training run reuses the trainer's own loop (runStage: AdamW, warmup + linear decay, clipping,
 * checkpoints, metrics.jsonl) and its loss functions (answerCe, distillLoss). The "LM task" is an SftStream
 * whose examples are stories encoded as prompt = [BOS], answer = the story: answerCe is then CE on every token
 * of the training text, and distillLoss with logitPositions 'all' puts the logit KD on every token too.
 * Continual pre-training is the LmStream over the shipped corpus (datasets/corpus), as in the paper.
 * Finished runs are skipped (final/ exists), so the script resumes where it stopped.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Rng, silentLogger } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import type { EncodedExample, Tokenizer } from '@bitdistill/data';
import { ternaryQuantRef } from '@bitdistill/arch';
import { loadModel, type Decoder } from '@bitdistill/model';
import { latentWeightStats, prepareStudent, restoreStudent } from '@bitdistill/quant';
import {
  answerCe,
  distillLoss,
  LmStream,
  resolveDistillLayer,
  runStage,
  SftStream,
  type LoopSettings,
  type LossTerms,
  type SftMicroBatch,
} from '@bitdistill/trainer';
import { chart, histogram, type Panel, type Series } from './svg.ts';

const TEACHER = 'models/stories260K';
const OUT = 'runs/lm-stories260k';
const REPORT_DIR = 'docs/results/lm-stories260k';
const CORPUS = ['datasets/corpus/tinyshakespeare', 'datasets/corpus/gutenberg-nltk'];
const SEQ = 128; // tokens per story, BOS included; the model sees SEQ - 1 inputs
const SAMPLE_SEED = 19;
const N_TRAIN = 448;
const N_HELDOUT = 128;
const PROMPTS = [
  'Once upon a time',
  'One day, a little girl named Lily',
  'Tom and his dog',
  'The sun was shining and',
  'There was a big red ball',
  'Mom said,',
  'Ben wanted to play',
  'In a small house, there lived',
  'The cat saw a bird',
  'Sue found a shiny',
  'Once there was a happy',
  'It was a rainy day',
  'Tim had a toy car',
  'The little bird',
  'Sara and her friend',
  'A boy named Max',
  'The bunny',
  'One morning, Anna',
  'The old tree',
  'Jack liked to',
  'Lucy was sad because',
  'The big dog',
  'There was a little fish',
  'Dad took Sam to the park',
  'The princess',
  'Mia saw a big',
  'Once upon a time, in a big forest,',
  'The frog jumped',
  'Bob and Sue went to',
  'The kitten was',
  'A little girl',
  'Timmy was very excited',
];
const MAIN_SEEDS = [0, 1, 2];

const STEPS = 200; // optimizer steps of every fine-tuning run (batch 16 stories: ~7 epochs of the training text)
const CPT_STEPS = 300; // continual pre-training: 300 x 16 x 128 tokens of the corpus
const BATCH = 16;
const LR = 2e-3; // the bundled config's LR for this model
const LAMBDA = 10;
const TAU = 5;
const RELATION_HEADS = 8;
const DEFAULT_GAMMA = 1e3;

interface Run {
  name: string;
  group: 'main' | 'table5' | 'table6' | 'layer' | 'gamma' | 'lambda' | 'tau';
  /** Where the student starts: the teacher with fresh SubLN (or none), or the continual-pretrain output. */
  from: 'base' | 'base-nosubln' | 'cpt';
  logit: boolean;
  attention: boolean;
  seed: number;
  layer: number | null;
  gamma: number;
  lambda: number;
  temperature: number;
}

function runMatrix(full: boolean): Run[] {
  const r: Run[] = [];
  const base = { layer: null, gamma: DEFAULT_GAMMA, lambda: LAMBDA, temperature: TAU };
  const seedsFor = (mainRow: boolean) => (mainRow || full ? MAIN_SEEDS : [0]);
  const rows: [string, Run['group'], Run['from'], boolean, boolean, boolean][] = [
    ['bitnet-sft', 'main', 'base-nosubln', false, false, true],
    ['subln', 'table5', 'base', false, false, true],
    ['subln-cpt', 'table5', 'cpt', false, false, true],
    ['subln-cpt-logit', 'table6', 'cpt', true, false, true],
    ['bitdistill', 'main', 'cpt', true, true, true],
    ['subln-cpt-attn', 'table6', 'cpt', false, true, false],
    ['subln-distill', 'table5', 'base', true, true, false],
  ];
  for (const [name, group, from, logit, attention, mainRow] of rows) {
    for (const seed of seedsFor(mainRow)) r.push({ name: `${name}-s${seed}`, group, from, logit, attention, seed, ...base });
  }
  // Logit KD at temperature 1 with lambdaLogit 1: the term is then the metric itself, KL(teacher || student).
  const tau1 = { group: 'tau' as const, logit: true, layer: null, gamma: DEFAULT_GAMMA, lambda: 1, temperature: 1 };
  for (const seed of MAIN_SEEDS) r.push({ ...tau1, name: `logit-tau1-s${seed}`, from: 'cpt', attention: false, seed });
  r.push({ ...tau1, name: 'bitdistill-tau1-s0', from: 'cpt', attention: true, seed: 0 });
  for (const seed of MAIN_SEEDS) r.push({ ...tau1, name: `bitnet-sft-logit-tau1-s${seed}`, from: 'base-nosubln', attention: false, seed });
  const layers = full ? [0, 1, 2, 3, 4] : [0, 2, 4];
  for (const l of layers)
    if (l !== 3)
      r.push({
        name: `layer-${l}-s0`,
        group: 'layer',
        from: 'cpt',
        logit: true,
        attention: true,
        seed: 0,
        layer: l,
        gamma: DEFAULT_GAMMA,
        lambda: LAMBDA,
        temperature: TAU,
      });
  const gammas = full ? [1e1, 1e2, 1e4, 1e5] : [1e2, 1e5];
  for (const g of gammas)
    r.push({
      name: `gamma-${g.toExponential(0)}-s0`,
      group: 'gamma',
      from: 'cpt',
      logit: true,
      attention: true,
      seed: 0,
      layer: null,
      gamma: g,
      lambda: LAMBDA,
      temperature: TAU,
    });
  // The paper's summarisation value (lambdaLogit 1) next to its classification value (10, the default here).
  r.push({
    name: 'lambda-1-s0',
    group: 'lambda',
    from: 'cpt',
    logit: true,
    attention: true,
    seed: 0,
    layer: null,
    gamma: DEFAULT_GAMMA,
    lambda: 1,
    temperature: TAU,
  });

  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Data: stories sampled from the teacher (temperature 1), BOS + prompt + continuation, SEQ tokens at most.

export interface Story {
  prompt: string;
  ids: number[];
}

/** Samples `n` stories, BATCH_SAMPLE at a time, each row continuing its own prompt; stops a row at BOS/EOS. */
async function sampleStories(model: Decoder, tok: Tokenizer, n: number, rng: Rng): Promise<Story[]> {
  const out: Story[] = [];
  const B = 32;
  const V = model.config.vocabSize;
  for (let start = 0; start < n; start += B) {
    const rows = Math.min(B, n - start);
    const prompts = Array.from({ length: rows }, (_, i) => PROMPTS[(start + i) % PROMPTS.length] as string);
    const seqs = prompts.map((p) => tok.encode(p, { addBos: true }));
    const done = seqs.map(() => false);
    while (!done.every((d) => d)) {
      const L = Math.max(...seqs.map((s) => s.length));
      const ids = new Int32Array(rows * L);
      seqs.forEach((s, b) => ids.set(s, b * L)); // right-padded with 0; each row reads its own last position
      const logits = tf.tidy(() => tf.reshape(model.forward(tf.tensor2d(ids, [rows, L], 'int32')).logits, [rows, L, V]));
      const data = (await logits.data()) as Float32Array;
      logits.dispose();
      seqs.forEach((s, b) => {
        if (done[b]) return;
        const off = (b * L + s.length - 1) * V;
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, data[off + v] as number);
        let sum = 0;
        const p = new Float64Array(V);
        for (let v = 0; v < V; v++) sum += p[v] = Math.exp((data[off + v] as number) - max); // temperature 1
        let u = rng.next() * sum;
        let id = V - 1;
        for (let v = 0; v < V; v++)
          if ((u -= p[v] as number) <= 0) {
            id = v;
            break;
          }
        if (id === tok.bosId || id === tok.eosId) done[b] = true;
        else s.push(id);
        if (s.length >= SEQ) done[b] = true;
      });
    }
    seqs.forEach((ids, i) => out.push({ prompt: prompts[i] as string, ids }));
    process.stdout.write(`\rsampled ${out.length}/${n} stories`);
  }
  process.stdout.write('\n');
  return out;
}

async function loadOrSampleData(): Promise<{ train: Story[]; heldout: Story[] }> {
  const dir = join(OUT, 'data');
  const file = join(dir, 'stories.jsonl');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    const { model, tokenizer } = loadModel(TEACHER, { trainable: false, logger: silentLogger });
    const stories = await sampleStories(model, tokenizer, N_TRAIN + N_HELDOUT, new Rng(SAMPLE_SEED));
    model.dispose();
    writeFileSync(file, stories.map((s) => JSON.stringify({ prompt: s.prompt, text: tokenizer.decode(s.ids), ids: s.ids })).join('\n') + '\n');
  }
  const all = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Story);
  // Held-out: every (N/N_HELDOUT)-th story, so every prompt appears on both sides.
  const every = Math.round(all.length / N_HELDOUT);
  return { train: all.filter((_, i) => i % every !== 0), heldout: all.filter((_, i) => i % every === 0) };
}

/** The LM task as SFT examples: prompt = BOS, answer = the rest of the story (answerCe = CE on every token). */
export function lmExamples(stories: Story[]): EncodedExample[] {
  return stories.map((s) => ({ promptIds: s.ids.slice(0, 1), answerIds: s.ids.slice(1) }));
}

// ---------------------------------------------------------------------------------------------------------
// Metrics on the held-out stories: perplexity exp(mean NLL) and KL(teacher || student) per token, tau 1.

export interface Metrics {
  ppl: number;
  nll: number;
  kl: number;
  tokens: number;
}

export async function heldoutMetrics(student: Decoder, teacher: Decoder, stories: Story[]): Promise<Metrics> {
  const ex = lmExamples(stories);
  let nll = 0;
  let kl = 0;
  let n = 0;
  const V = student.config.vocabSize;
  for (let i = 0; i < ex.length; i += 32) {
    const b = new SftStream(ex.slice(i, i + 32), 32, SEQ - 1, 0, 0).next();
    const [nllSum, klSum] = tf.tidy(() => {
      const ids = tf.tensor2d(b.inputIds, [b.B, b.T], 'int32');
      const ls = tf.logSoftmax(tf.reshape(student.forward(ids).logits, [b.B * b.T, V]));
      const lt = tf.logSoftmax(tf.reshape(teacher.forward(ids).logits, [b.B * b.T, V]));
      const mask = tf.tensor1d(b.answerMask);
      const picked = tf.sum(tf.mul(ls, tf.oneHot(tf.tensor1d(b.labels, 'int32'), V)), 1);
      const klRow = tf.sum(tf.mul(tf.exp(lt), tf.sub(lt, ls)), 1);
      return [tf.neg(tf.sum(tf.mul(picked, mask))), tf.sum(tf.mul(klRow, mask))];
    });
    nll += (await (nllSum as tf.Tensor).data())[0] as number;
    kl += (await (klSum as tf.Tensor).data())[0] as number;
    tf.dispose([nllSum as tf.Tensor, klSum as tf.Tensor]);
    for (const m of b.answerMask) n += m;
  }
  return { ppl: Math.exp(nll / n), nll: nll / n, kl: kl / n, tokens: n };
}

// ---------------------------------------------------------------------------------------------------------
// Training: the trainer's runStage with the LM-task stream and the trainer's losses.

function settings(totalSteps: number, seed: number): LoopSettings {
  return {
    optim: { lr: LR, weightDecay: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmupRatio: 0.05, schedule: 'linear', decayRatio: 0.2, gradClip: 1, gradAccum: 1 },
    totalSteps,
    logEvery: 10,
    checkpointEvery: 100,
    keepLast: 1,
    evalEvery: 0,
    averaging: { kind: 'none', emaDecay: 0.999, lawaK: 5 },
    seed,
  };
}

async function latentRecord(model: Decoder): Promise<Record<string, number> | null> {
  const st = await latentWeightStats(model);
  return st === null ? null : { 'latent.relErr': st.relErr, 'latent.nearBoundary': st.nearBoundary, 'latent.zeroFrac': st.zeroFrac };
}

function student(from: Run['from']): Decoder {
  if (from === 'cpt') {
    const { model } = loadModel(join(OUT, 'cpt', 'final'), { logger: silentLogger });
    if (!restoreStudent(model)) throw new Error('the continual-pretrain output is not a student');
    return model;
  }
  const { model } = loadModel(TEACHER, { logger: silentLogger });
  prepareStudent(model, { subln: from === 'base' ? 'allnorm' : 'none', weightQuant: 'absmean', quantizeActivations: true });
  return model;
}

async function train(
  dir: string,
  model: Decoder,
  next: () => SftMicroBatch | Promise<SftMicroBatch>,
  stream: { getCursor(): unknown; setCursor(c: unknown): void; epoch: number },
  loss: (b: SftMicroBatch) => LossTerms,
  steps: number,
  seed: number,
  termWeights?: Record<string, number>,
): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  await runStage(
    {
      stage: dir.split('/').pop() as string,
      stageDir: dir,
      model,
      nextBatch: next,
      getCursor: () => stream.getCursor(),
      setCursor: (c) => stream.setCursor(c),
      epoch: () => stream.epoch,
      loss,
      extraMetrics: () => latentRecord(model),
      ...(termWeights !== undefined ? { termWeights } : {}),
      resolvedYaml: `# scripts/experiments/lm-stories260k.ts (issue 19): ${dir}\n`,
      tokenizerFrom: TEACHER,
      bitdistill: { experiment: 'lm-stories260k' },
    },
    settings(steps, seed),
    {
      logger: silentLogger,
      onRecord: (r) => {
        if (r['type'] === 'train' || 'loss' in r) process.stdout.write(`\r${dir} step ${String(r['step'])} loss ${Number(r['loss']).toFixed(4)}   `);
      },
    },
  );
  process.stdout.write('\n');
  return (Date.now() - t0) / 1000;
}

async function continualPretrain(): Promise<void> {
  const dir = join(OUT, 'cpt');
  if (existsSync(join(dir, 'final'))) return;
  const s = student('base');
  const { tokenizer } = loadModel(TEACHER, { trainable: false, logger: silentLogger });
  const stream = new LmStream(CORPUS, tokenizer, SEQ, BATCH);
  const secs = await train(
    dir,
    s,
    () => stream.next(),
    stream,
    (b) => {
      const ce = answerCe(s, b);
      return { total: ce, terms: { ce } };
    },
    CPT_STEPS,
    0,
  );
  writeFileSync(join(dir, 'wall.json'), JSON.stringify({ seconds: secs, tokens: CPT_STEPS * BATCH * SEQ }));
  s.dispose();
}

async function fineTune(run: Run, trainSet: Story[], teacher: Decoder): Promise<void> {
  const dir = join(OUT, run.name);
  if (existsSync(join(dir, 'final'))) return;
  const s = student(run.from);
  const stream = new SftStream(lmExamples(trainSet), BATCH, SEQ - 1, 0, run.seed);
  let loss: (b: SftMicroBatch) => LossTerms;
  let weights: Record<string, number> | undefined;
  if (!run.logit && !run.attention) {
    loss = (b) => {
      const ce = answerCe(s, b);
      return { total: ce, terms: { ce } };
    };
  } else {
    const layer = resolveDistillLayer(run.layer, s.config.numLayers);
    loss = (b) =>
      distillLoss(s, teacher, b, {
        logit: run.logit,
        attention: run.attention,
        logitPositions: 'all',
        lambdaLogit: run.lambda,
        gammaAttn: run.gamma,
        temperature: run.temperature,
        relation: 'cosine',
        relationHeads: RELATION_HEADS,
        studentLayer: layer,
        teacherLayer: layer,
        chunkRows: null,
      });
    weights = { ...(run.logit ? { logitKd: run.lambda } : {}), ...(run.attention ? { attnKd: run.gamma } : {}) };
  }
  const secs = await train(
    dir,
    s,
    () => stream.next(),
    {
      getCursor: () => stream.getCursor(),
      setCursor: (c) => stream.setCursor(c),
      get epoch() {
        return stream.epoch;
      },
    },
    loss,
    STEPS,
    run.seed,
    weights,
  );
  writeFileSync(join(dir, 'wall.json'), JSON.stringify({ seconds: secs }));
  s.dispose();
}

// ---------------------------------------------------------------------------------------------------------
// Report: tables (markdown), results.json, pictures.

function meanStd(xs: number[]): string {
  const m = xs.reduce((a, x) => a + x, 0) / xs.length;
  if (xs.length === 1) return fmt(m);
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
  return `${fmt(m)} ± ${fmt(sd)}`;
}

function fmt(x: number): string {
  return x >= 100 ? x.toFixed(1) : x >= 1 ? x.toFixed(3) : x.toFixed(4);
}

function scaledWeights(model: Decoder): Map<string, Float32Array> {
  const out = new Map<string, number[]>();
  for (const [name, p] of model.params) {
    const m = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/.exec(name);
    if (m === null) continue;
    const w = p.dataSync() as Float32Array;
    const d = ternaryQuantRef(w, p.shape[p.shape.length - 1] as number, 'absmean').scales[0] as number;
    const list = out.get(m[1] as string) ?? [];
    for (const x of w) list.push(x / d);
    out.set(m[1] as string, list);
  }
  return new Map([...out].map(([k, v]) => [k, Float32Array.from(v)]));
}

function readMetrics(dir: string): Record<string, unknown>[] {
  const f = join(dir, 'metrics.jsonl');
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function curve(dir: string, key: string): [number, number][] {
  return readMetrics(dir)
    .filter((r) => typeof r[key] === 'number' && typeof r['step'] === 'number')
    .map((r) => [r['step'] as number, r[key] as number]);
}

async function report(runs: Run[], data: { train: Story[]; heldout: Story[] }, sampleSeconds: number | null, t0: number): Promise<void> {
  mkdirSync(REPORT_DIR, { recursive: true });
  const { model: teacher } = loadModel(TEACHER, { trainable: false, logger: silentLogger });
  const results: Record<string, Metrics> = {};
  results['teacher'] = await heldoutMetrics(teacher, teacher, data.heldout);
  const ptq = student('base-nosubln');
  results['ptq'] = await heldoutMetrics(ptq, teacher, data.heldout);
  const ptqSubln = student('base');
  results['ptq-subln'] = await heldoutMetrics(ptqSubln, teacher, data.heldout);
  const cpt = student('cpt');
  results['cpt-only'] = await heldoutMetrics(cpt, teacher, data.heldout);
  const hist: [string, Decoder][] = [
    ['teacher (= PTQ start)', teacher],
    ['after continual pre-training', cpt],
  ];
  const loaded: Decoder[] = [];
  for (const r of runs) {
    const { model } = loadModel(join(OUT, r.name, 'final'), { logger: silentLogger });
    restoreStudent(model);
    results[r.name] = await heldoutMetrics(model, teacher, data.heldout);
    if (r.name === 'bitnet-sft-s0' || r.name === 'bitdistill-s0') {
      hist.push([r.name === 'bitnet-sft-s0' ? 'after BitNet-SFT' : 'after BitDistill', model]);
      loaded.push(model);
    } else model.dispose();
  }
  const md: string[] = ['# Measured tables (generated by scripts/experiments/lm-stories260k.ts)', ''];
  const tokens = (ss: Story[]) => ss.reduce((a, s) => a + s.ids.length - 1, 0);
  md.push(
    `Training text: ${data.train.length} stories, ${tokens(data.train)} predicted tokens; held-out: ${data.heldout.length} stories, ${tokens(data.heldout)} predicted tokens. Continual pre-training: ${CPT_STEPS * BATCH * SEQ} corpus tokens.`,
    '',
  );
  const row = (label: string, names: string[]) => {
    const ms = names.map((n) => results[n]).filter((m): m is Metrics => m !== undefined);
    if (ms.length === 0) return `| ${label} | missing | missing | |`;
    return `| ${label} | ${meanStd(ms.map((m) => m.ppl))} | ${meanStd(ms.map((m) => m.kl))} | ${ms.length} |`;
  };
  const seeds = (name: string) => runs.filter((r) => r.name.startsWith(`${name}-s`)).map((r) => r.name);
  md.push('## Stages (PAPER.md table 5 shape)', '', '| row | held-out perplexity | KL(teacher ‖ student), nats/token | seeds |', '|---|---:|---:|---:|');
  md.push(row('FP teacher (stories260K)', ['teacher']));
  md.push(row('ternary, no training (PTQ absmean)', ['ptq']));
  md.push(row('ternary + SubLN, no training', ['ptq-subln']));
  md.push(row('SubLN + continual pre-training only (no task training)', ['cpt-only']));
  md.push(row('BitNet-SFT (ternary, CE on training text)', seeds('bitnet-sft')));
  md.push(row('+ SubLN', seeds('subln')));
  md.push(row('+ SubLN + continual pre-training', seeds('subln-cpt')));
  md.push(row('+ SubLN + distillation (no continual pre-training)', seeds('subln-distill')));
  md.push(row('+ SubLN + CPT + logit KD + attention KD (BitDistill)', seeds('bitdistill')));
  md.push(
    '',
    '## Distillation terms (PAPER.md table 6 shape; all with SubLN + continual pre-training)',
    '',
    '| row | held-out perplexity | KL(teacher ‖ student) | seeds |',
    '|---|---:|---:|---:|',
  );
  md.push(row('none (CE only)', seeds('subln-cpt')));
  md.push(row('logit KD only', seeds('subln-cpt-logit')));
  md.push(row('attention-relation KD only', seeds('subln-cpt-attn')));
  md.push(row('both (BitDistill)', seeds('bitdistill')));
  md.push('', `## Distilled layer (gammaAttn ${DEFAULT_GAMMA}, seed 0)`, '', '| layer | held-out perplexity | KL | seeds |', '|---|---:|---:|---:|');
  for (const l of [0, 1, 2, 3, 4])
    md.push(row(`${l}${l === 3 ? " (default: the code's late layer, scaled)" : ''}`, l === 3 ? ['bitdistill-s0'] : [`layer-${l}-s0`]));
  md.push('', '## gammaAttn (layer 3, seed 0)', '', '| gammaAttn | held-out perplexity | KL | seeds |', '|---|---:|---:|---:|');
  for (const g of [1e1, 1e2, 1e3, 1e4, 1e5]) md.push(row(g.toExponential(0), g === DEFAULT_GAMMA ? ['bitdistill-s0'] : [`gamma-${g.toExponential(0)}-s0`]));
  md.push('', '## lambdaLogit (layer 3, gammaAttn 1e3, seed 0)', '', '| lambdaLogit | held-out perplexity | KL | seeds |', '|---|---:|---:|---:|');
  md.push(row("1 (the paper's summarisation value)", ['lambda-1-s0']));
  md.push(row(`${LAMBDA} (the paper's classification value; the default here)`, ['bitdistill-s0']));
  md.push(
    '',
    '## Logit KD at temperature 1, lambdaLogit 1 (its term is then the metric, KL(teacher ‖ student))',
    '',
    '| row | held-out perplexity | KL | seeds |',
    '|---|---:|---:|---:|',
  );
  md.push(row('BitNet-SFT + logit KD (tau 1, lambda 1; no SubLN, no CPT)', seeds('bitnet-sft-logit-tau1')));
  md.push(row('SubLN + CPT + logit KD (tau 1, lambda 1)', seeds('logit-tau1')));
  md.push(row('SubLN + CPT + logit KD + attention KD (tau 1, lambda 1, gammaAttn 1e3)', ['bitdistill-tau1-s0']));
  md.push('', '## Wall time', '', '| run | seconds |', '|---|---:|');
  const wall: Record<string, number> = {};
  for (const n of ['cpt', ...runs.map((r) => r.name)]) {
    const f = join(OUT, n, 'wall.json');
    if (existsSync(f)) wall[n] = (JSON.parse(readFileSync(f, 'utf8')) as { seconds: number }).seconds;
    md.push(`| ${n} | ${wall[n] !== undefined ? wall[n].toFixed(0) : 'resumed / unknown'} |`);
  }
  if (sampleSeconds !== null) md.push(`| sampling the data | ${sampleSeconds.toFixed(0)} |`);
  md.push('', `This invocation, end to end (including skipped finished runs and this report): ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
  writeFileSync(join(REPORT_DIR, 'tables.md'), md.join('\n') + '\n');
  writeFileSync(
    join(REPORT_DIR, 'results.json'),
    JSON.stringify(
      {
        metrics: results,
        wallSeconds: wall,
        trainStories: data.train.length,
        heldoutStories: data.heldout.length,
        trainTokens: tokens(data.train),
        heldoutTokens: tokens(data.heldout),
        cptTokens: CPT_STEPS * BATCH * SEQ,
      },
      null,
      2,
    ) + '\n',
  );

  // Pictures: latent-weight histograms, loss curves, quantization error over training.
  const scaled = hist.map(([label, m]) => ({ label, w: scaledWeights(m) }));
  const types = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const panels: Panel[] = types.map((type) => ({
    title: type,
    step: true,
    vlines: [-0.5, 0.5],
    xLabel: 'W / absmean(W)',
    yLabel: 'fraction',
    series: scaled.map((s): Series => ({ label: s.label, points: histogram(s.w.get(type) ?? [], -3, 3, 60) })),
  }));
  writeFileSync(
    join(REPORT_DIR, 'latent-histograms.svg'),
    chart(panels, {
      cols: 4,
      panelWidth: 330,
      panelHeight: 250,
      title: 'stories260K latent weights per projection type (all layers), scaled by the ternary scale; dashed: rounding boundaries',
    }),
  );
  const lossRuns = ['bitnet-sft-s0', 'subln-s0', 'subln-cpt-s0', 'subln-cpt-logit-s0', 'bitdistill-s0'];
  writeFileSync(
    join(REPORT_DIR, 'loss-curves.svg'),
    chart(
      [
        {
          title: 'CE on the training text',
          xLabel: 'step',
          yLabel: 'nats/token',
          series: lossRuns.map((n) => ({ label: n, points: curve(join(OUT, n), 'ce') })),
        },
        {
          title: 'continual pre-training CE (corpus)',
          xLabel: 'step',
          yLabel: 'nats/token',
          series: [{ label: 'cpt', points: curve(join(OUT, 'cpt'), 'ce') }],
        },
        {
          title: 'latent relErr (quantization error)',
          xLabel: 'step',
          yLabel: 'sum (W-Q(W))^2 / sum W^2',
          series: ['cpt', ...lossRuns].map((n) => ({ label: n, points: curve(join(OUT, n), 'latent.relErr') })),
        },
      ],
      { cols: 3, panelWidth: 400, panelHeight: 280 },
    ),
  );
  for (const m of [teacher, ptq, ptqSubln, cpt, ...loaded]) m.dispose();
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const full = argv.includes('--full');
  const runs = runMatrix(full);
  if (argv.includes('--list')) {
    for (const r of runs)
      console.log(
        `${r.group.padEnd(6)} ${r.name.padEnd(22)} from=${r.from} logit=${r.logit} attention=${r.attention} layer=${r.layer ?? 'default(3)'} gammaAttn=${r.gamma} lambdaLogit=${r.lambda} temperature=${r.temperature}`,
      );
    return;
  }
  const t0 = Date.now();
  await initBackend('auto', silentLogger);
  const hadData = existsSync(join(OUT, 'data', 'stories.jsonl'));
  const data = await loadOrSampleData();
  const sampleSeconds = hadData ? null : (Date.now() - t0) / 1000;
  console.log(`train ${data.train.length} stories, held-out ${data.heldout.length}`);
  await continualPretrain();
  const { model: teacher } = loadModel(TEACHER, { trainable: false, logger: silentLogger });
  for (const [i, r] of runs.entries()) {
    console.log(`=== [${i + 1}/${runs.length}] ${r.name}`);
    await fineTune(r, data.train, teacher);
  }
  teacher.dispose();
  if (!argv.includes('--no-report')) await report(runs, data, sampleSeconds, t0);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
