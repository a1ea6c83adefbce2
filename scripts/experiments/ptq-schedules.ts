/**
 * Issue 22, study (b) at small scale: does post-training quantization error jump during the learning-rate decay
 * phase (Catalan-Tatjer, Ajroldi, Geiping, 2025), and do weight averages (a LAWA-style soup of the last
 * checkpoints) quantize better? A fresh stories260K-shaped decoder (`bitdistill init`, seed 0) is pretrained from
 * scratch on the shipped Gutenberg and presidential-speech text under three schedules (constant, cosine, WSD with
 * the last 20% decaying), the same steps, peak LR and data order; every checkpoint, and the uniform soup of each
 * run's last three, is quantized with RTN at 4 and 3 bits (`bitdistill quantize --json`), and the held-out NLL
 * increase is read on Shakespeare (not in the training text; 64 sequences of 128 tokens, seed 0).
 *
 *   node --import tsx scripts/experiments/ptq-schedules.ts     # run (resumes: finished parts are reused), print the tables
 *
 * Outputs under runs/ptq-schedules/; the tables go into docs/ptq.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OUT = 'runs/ptq-schedules';
const CLI = join('packages', 'cli', 'bin', 'bitdistill.js');
const SCHEDULES = ['constant', 'cosine', 'wsd'] as const;
const STEPS = 400;
const EVERY = 50;
const BITS = [4, 3] as const;

const signed = (v: number): string => `${v >= 0 ? '+' : '-'}${Math.abs(v).toFixed(3)}`;

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`bitdistill ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  return r.stdout;
}

interface Report {
  nllBefore: number;
  nllAfter: number;
  nllIncrease: number;
  weightRelErr: { mean: number };
}

/** One quantize run, its JSON kept next to the output so a rerun reuses it. */
function quantize(model: string, name: string, bits: number): Report {
  const json = join(OUT, 'ptq', `${name}-rtn${bits}.json`);
  if (!existsSync(json)) {
    const out = cli([
      'quantize',
      '--model',
      model,
      '--out',
      join(OUT, 'ptq', `${name}-rtn${bits}`),
      '--method',
      'rtn',
      '--bits',
      String(bits),
      '--json',
      '--log-level',
      'warn',
    ]);
    writeFileSync(json, out.trim().split('\n').pop() as string);
  }
  return JSON.parse(readFileSync(json, 'utf8')) as Report;
}

function train(schedule: (typeof SCHEDULES)[number], init: string): string {
  const name = `sched-${schedule}`;
  const dir = join(OUT, name, 'pretrain');
  if (existsSync(join(dir, 'final', 'config.json'))) return dir;
  const yaml = [
    `name: ${name}`,
    'seed: 0',
    `outputDir: ${OUT}`,
    `model: {path: ${init}, maxSeqLen: 128}`,
    'task: {name: sst2, train: datasets/glue/SST-2/train.tsv, dev: datasets/glue/SST-2/dev.tsv}',
    'corpus: {paths: [datasets/corpus/gutenberg-nltk, datasets/corpus/us-presidential-speeches], seqLen: 128}',
    'stages: [pretrain]',
    `optim: {lr: 3.0e-3, batchSize: 16, schedule: ${schedule}, warmupRatio: 0.05, decayRatio: 0.2, weightDecay: 0.1}`,
    `stageOptim: {pretrain: {maxSteps: ${STEPS}}}`,
    `checkpoint: {every: ${EVERY}, keepLast: ${STEPS / EVERY + 1}}`,
    'log: {every: 50}',
    '',
  ].join('\n');
  const file = join(OUT, `${name}.yaml`);
  writeFileSync(file, yaml);
  cli(['train', '--config', file, '--log-level', 'warn']);
  return dir;
}

function main(): void {
  mkdirSync(join(OUT, 'ptq'), { recursive: true });
  const t0 = performance.now();
  const init = join(OUT, 'init');
  if (!existsSync(join(init, 'config.json'))) {
    cli(['init', '--arch', 'models/stories260K/config.json', '--tokenizer', 'models/stories260K', '--out', init, '--seed', '0', '--log-level', 'warn']);
  }
  const rows: string[] = [];
  const soups: string[] = [];
  for (const schedule of SCHEDULES) {
    const dir = train(schedule, init);
    // Checkpoints step-000050 ... and final/ (the last step; no averaging configured, so the raw weights).
    const ckpts = readdirSync(join(dir, 'checkpoints'))
      .filter((d) => /^step-\d+$/.test(d))
      .map((d) => ({ step: Number(d.slice(5)), path: join(dir, 'checkpoints', d) }))
      .sort((a, b) => a.step - b.step);
    ckpts.push({ step: STEPS, path: join(dir, 'final') });
    for (const { step, path } of ckpts) {
      const r = BITS.map((b) => quantize(path, `${schedule}-step${step}`, b));
      rows.push(`| ${schedule} | ${step} | ${r[0]?.nllBefore.toFixed(3)} | ${r.map((x) => signed(x.nllIncrease)).join(' | ')} |`);
    }
    // The uniform soup of the last three checkpoints (what LAWA with k = 3 computes at the end of a stage).
    const last = ckpts.slice(-3);
    const soup = join(OUT, `soup-${schedule}`);
    if (!existsSync(join(soup, 'config.json'))) cli(['soup', ...last.flatMap((c) => ['--model', c.path]), '--out', soup, '--log-level', 'warn']);
    const s = BITS.map((b) => quantize(soup, `${schedule}-soup3`, b));
    soups.push(
      `| ${schedule} | steps ${last.map((c) => c.step).join(', ')} | ${s[0]?.nllBefore.toFixed(3)} | ${s.map((x) => signed(x.nllIncrease)).join(' | ')} |`,
    );
  }
  const minutes = (performance.now() - t0) / 60000;
  console.log(['| schedule | step | held-out NLL (fp32) | RTN 4-bit increase | RTN 3-bit increase |', '|---|---:|---:|---:|---:|', ...rows].join('\n'));
  console.log();
  console.log(['| schedule | soup of | held-out NLL (fp32) | RTN 4-bit increase | RTN 3-bit increase |', '|---|---|---:|---:|---:|', ...soups].join('\n'));
  console.log(`\nwall time ${minutes.toFixed(1)} min (parts reused from an earlier run are not re-timed)`);
}

main();
