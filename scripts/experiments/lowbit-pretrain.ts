/**
 * Issue 22, study (a) at small scale: does low-bit float training hold up against full precision, and does Metis
 * (docs/lowbit-training.md) rescue the format where direct training suffers? The base model of the small-scale
 * experiments (configs/experiments/base-arch.json: Llama-style, 4 layers, width 192, BERT uncased vocabulary;
 * `bitdistill init --seed 0`) is pretrained from scratch five times on the shipped Gutenberg and
 * presidential-speech text, the same init, data order and recipe (cosine LR, peak 2e-3), differing only in the
 * projections' GEMMs:
 *
 *   fp32          full precision
 *   fp8           forward E4M3 (x, W), backward E5M2 (dy), per-tensor scales
 *   metis-fp8     fp8 + Metis: rank-1% split refreshed every REFRESH steps, spectral LR (0.5 / 1), dual range 0.01
 *   nvfp4         forward and backward NVFP4 (16-value blocks, E4M3 block scales)
 *   metis-nvfp4   nvfp4 + the same Metis settings
 *
 * then each is fine-tuned on an SST-2 subset (the teacher stage, same GEMMs as its pretraining; its closing dev
 * evaluation runs through them too). Every batch of the single pass over the corpus is unseen when its loss is
 * logged, so the training curves are held-out curves. Seeds: init 0, data order 0, Metis embeddings 0.
 *
 *   node --import tsx scripts/experiments/lowbit-pretrain.ts            # the study (~12-15 min on 2 cores): docs/results/lowbit-pretrain.md
 *   node --import tsx scripts/experiments/lowbit-pretrain.ts --quick    # a smoke run of every part (~1.2 min), report under runs/
 *
 * Resumable: finished stages are skipped (their recorded times are reused). Outputs under runs/lowbit-pretrain[-quick]/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chart, type Series } from './svg.ts';

const QUICK = process.argv.includes('--quick');
const OUT = QUICK ? 'runs/lowbit-pretrain-quick' : 'runs/lowbit-pretrain';
const REPORT = QUICK ? join(OUT, 'report.md') : 'docs/results/lowbit-pretrain.md';
const FIGURE = QUICK ? join(OUT, 'curves.svg') : 'docs/results/lowbit-pretrain/curves.svg';
const CLI = join('packages', 'cli', 'bin', 'bitdistill.js');
/** Pretraining: steps of BATCH x SEQ tokens. The low-bit GEMMs round on the CPU in JS: ~2x an fp32 step here. */
const STEPS = QUICK ? 8 : 150;
const BATCH = 8;
const SEQ = 64;
const LOG_EVERY = QUICK ? 2 : 10;
const REFRESH = QUICK ? 4 : 25;
/** SST-2 fine-tuning: steps of FT_BATCH on the first FT_TRAIN training sentences, dev accuracy on the first FT_DEV. */
const FT_STEPS = QUICK ? 4 : 60;
const FT_BATCH = 16;
const FT_TRAIN = QUICK ? 64 : 2000;
const FT_DEV = QUICK ? 32 : 872;

interface Variant {
  name: string;
  forward: string;
  backward: string;
  metis: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'fp32', forward: 'none', backward: 'none', metis: false },
  { name: 'fp8', forward: 'fp8-e4m3', backward: 'fp8-e5m2', metis: false },
  { name: 'metis-fp8', forward: 'fp8-e4m3', backward: 'fp8-e5m2', metis: true },
  { name: 'nvfp4', forward: 'nvfp4', backward: 'nvfp4', metis: false },
  { name: 'metis-nvfp4', forward: 'nvfp4', backward: 'nvfp4', metis: true },
];

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`bitdistill ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
}

function lowbitYaml(v: Variant): string {
  const metis = v.metis
    ? `, metis: {enabled: true, rankFraction: 0.01, refreshEvery: ${REFRESH}, powerIterations: 2, spectralLr: {enabled: true, dominantScale: 0.5, tailScale: 1}, dualRange: {weight: 0.01, rangeSigmas: 3}}`
    : '';
  return `lowbitGemm: {forward: ${v.forward}, backward: ${v.backward}, stages: [pretrain, teacher]${metis}}`;
}

/** Seconds of each finished stage, kept in the run folder so a rerun that skips them still reports them. */
const TIMES = join(OUT, 'times.json');
function times(): Record<string, number> {
  return existsSync(TIMES) ? (JSON.parse(readFileSync(TIMES, 'utf8')) as Record<string, number>) : {};
}

/** Runs one stage config unless its final/ exists; returns the stage folder. */
function stage(key: string, yaml: string, dir: string): string {
  if (!existsSync(join(dir, 'final', 'config.json'))) {
    const file = join(OUT, `${key}.yaml`);
    writeFileSync(file, yaml);
    const t0 = performance.now();
    cli(['train', '--config', file, '--log-level', 'warn']);
    writeFileSync(TIMES, JSON.stringify({ ...times(), [key]: (performance.now() - t0) / 1000 }, null, 1));
  }
  return dir;
}

function pretrain(v: Variant, init: string): string {
  const name = `pt-${v.name}`;
  const yaml = [
    `name: ${name}`,
    'seed: 0',
    `outputDir: ${OUT}`,
    `model: {path: ${init}, maxSeqLen: ${SEQ}}`,
    'task: {name: sst2, train: datasets/glue/SST-2/train.tsv, dev: datasets/glue/SST-2/dev.tsv}',
    `corpus: {paths: [datasets/corpus/gutenberg-nltk, datasets/corpus/us-presidential-speeches], seqLen: ${SEQ}}`,
    'stages: [pretrain]',
    `optim: {lr: 2.0e-3, batchSize: ${BATCH}, schedule: cosine, warmupRatio: 0.05, weightDecay: 0.1}`,
    `stageOptim: {pretrain: {maxSteps: ${STEPS}}}`,
    lowbitYaml(v),
    `checkpoint: {every: ${STEPS}, keepLast: 1}`,
    `log: {every: ${LOG_EVERY}}`,
    '',
  ].join('\n');
  return stage(name, yaml, join(OUT, name, 'pretrain'));
}

function finetune(v: Variant, base: string): string {
  const name = `ft-${v.name}`;
  const yaml = [
    `name: ${name}`,
    'seed: 0',
    `outputDir: ${OUT}`,
    `model: {path: ${base}, maxSeqLen: 64}`,
    'task:',
    '  name: sst2',
    '  train: datasets/glue/SST-2/train.tsv',
    '  dev: datasets/glue/SST-2/dev.tsv',
    `  trainLimit: ${FT_TRAIN}`,
    `  devLimit: ${FT_DEV}`,
    '  template: "review: {sentence}\\nsentiment:"',
    '  templateVersion: small-v1',
    '  labelWords: [negative, positive]',
    'stages: [teacher]',
    `optim: {lr: 1.0e-3, batchSize: ${FT_BATCH}, warmupRatio: 0.05, weightDecay: 0.1, maxSteps: ${FT_STEPS}}`,
    lowbitYaml(v),
    `checkpoint: {every: ${FT_STEPS}, keepLast: 1}`,
    `log: {every: ${LOG_EVERY}}`,
    '',
  ].join('\n');
  return stage(name, yaml, join(OUT, name, 'teacher'));
}

type Rec = Record<string, unknown>;
function records(dir: string): Rec[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Rec);
}

const f3 = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : String(v));

function main(): void {
  mkdirSync(OUT, { recursive: true });
  const t0 = performance.now();
  const init = join(OUT, 'init');
  if (!existsSync(join(init, 'config.json')))
    cli(['init', '--arch', 'configs/experiments/base-arch.json', '--tokenizer', 'models/bert-uncased-lm', '--out', init, '--seed', '0', '--log-level', 'warn']);
  const curves: Series[] = [];
  const rows: string[] = [];
  const sampleSteps = [...new Set([LOG_EVERY, ...[0.25, 0.5, 0.75].map((f) => Math.round((f * STEPS) / LOG_EVERY) * LOG_EVERY), STEPS])];
  for (const v of VARIANTS) {
    const pt = pretrain(v, init);
    const ft = finetune(v, join(pt, 'final'));
    const train = records(pt).filter((r) => r['type'] === 'train');
    const ce = new Map(train.map((r) => [r['step'] as number, r['ce'] as number]));
    curves.push({ label: v.name, points: train.map((r) => [r['step'] as number, r['ce'] as number]), dashed: v.metis });
    const last = train.slice(-3).map((r) => r['ce'] as number);
    const lastMean = last.reduce((a, x) => a + x, 0) / last.length;
    const dr = train.at(-1)?.['dualRange'];
    const energy = train.at(-1)?.['metis.dominantEnergy'];
    const acc = records(ft).find((r) => r['type'] === 'eval')?.['value'] as number;
    const t = times();
    rows.push(
      `| ${v.name} | ${sampleSteps.map((s) => f3(ce.get(s) ?? NaN)).join(' | ')} | ${f3(lastMean)} | ${typeof energy === 'number' ? energy.toFixed(3) : '-'} | ${typeof dr === 'number' ? dr.toPrecision(3) : '-'} | ${(100 * acc).toFixed(2)} | ${((t[`pt-${v.name}`] ?? NaN) / 60).toFixed(1)} | ${((t[`ft-${v.name}`] ?? NaN) / 60).toFixed(1)} |`,
    );
  }
  const minutes = (performance.now() - t0) / 60000;
  const recorded = Object.values(times()).reduce((a, x) => a + x, 0) / 60;
  mkdirSync(join(FIGURE, '..'), { recursive: true });
  writeFileSync(
    FIGURE,
    chart([{ title: `pretraining CE (${BATCH} x ${SEQ} tokens per step, unseen batches)`, series: curves, xLabel: 'step', yLabel: 'CE (nats)' }], {
      panelWidth: 640,
      panelHeight: 360,
    }),
  );
  const table = [
    `| run | ${sampleSteps.map((s) => `CE @${s}`).join(' | ')} | CE (last 3 logs) | Metis dominant energy | dual range | SST-2 dev acc % | pretrain min | fine-tune min |`,
    `|---|${sampleSteps.map(() => '---:').join('|')}|---:|---:|---:|---:|---:|---:|`,
    ...rows,
  ].join('\n');
  const report = [
    '# Low-bit float pretraining: FP32 vs FP8 vs NVFP4, direct and with Metis (issue 22, study a)',
    '',
    QUICK ? '**Quick mode** (`--quick`): a smoke run of every part; the numbers mean nothing.\n' : '',
    '```bash',
    'node --import tsx scripts/experiments/lowbit-pretrain.ts',
    '```',
    '',
    `The base model of configs/experiments (base-arch.json: 4 layers, width 192, BERT uncased vocabulary, 7.6M parameters), ` +
      `initialised by \`bitdistill init --seed 0\`, pretrained from scratch for ${STEPS} steps of ${BATCH} x ${SEQ} tokens ` +
      `(${((STEPS * BATCH * SEQ) / 1000).toFixed(0)}K tokens; Gutenberg + presidential speeches; cosine LR, peak 2e-3, warmup 5%, seed 0) ` +
      `under each GEMM regime, then fine-tuned on SST-2 (first ${FT_TRAIN} training sentences, ${FT_STEPS} steps of ${FT_BATCH}, LR 1e-3; ` +
      `dev accuracy on ${FT_DEV} sentences, evaluated through the same GEMMs). Metis: rankFraction 0.01 (k = 2 on every projection: ` +
      `min(out, in) = 192), refresh every ${REFRESH} steps, 2 power iterations, spectralLr {dominantScale 0.5, tailScale 1}, ` +
      `dualRange {weight 0.01, rangeSigmas 3} (docs/lowbit-training.md). One seed.`,
    '',
    table,
    '',
    `![pretraining curves](${QUICK ? 'curves.svg' : 'lowbit-pretrain/curves.svg'})`,
    '',
    `Wall time: ${recorded.toFixed(1)} min of training recorded (this invocation: ${minutes.toFixed(1)} min; stages reused from an earlier run keep their recorded times). 2-core CPU, native engine.`,
    '',
  ].join('\n');
  writeFileSync(REPORT, report);
  console.log(report);
}

main();
