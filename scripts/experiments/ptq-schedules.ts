/**
 * Issue 22, study (b) at small scale: does post-training quantization error jump during the learning-rate decay
 * phase (Catalan-Tatjer, Ajroldi, Geiping, 2025), and do weight averages (a LAWA-style soup of the last
 * checkpoints) quantize better? A fresh stories260K-shaped decoder (`bitdistill init`, seed 0) is pretrained from
 * scratch on the shipped Gutenberg and presidential-speech text under three schedules (constant, cosine, WSD with
 * the last 20% decaying), the same steps, peak LR and data order; every checkpoint, and the uniform soup of each
 * run's last three, is quantized with RTN at 4 and 3 bits (`bitdistill quantize --json`), and the held-out NLL
 * increase is read on Shakespeare (not in the training text; 64 sequences of 128 tokens, seed 0).
 *
 *   node --import tsx scripts/experiments/ptq-schedules.ts [--seeds 0,1,2]   # run (resumes: finished parts are reused)
 *
 * Each seed sets the init and the data order. RTN at every checkpoint; GPTQ (calibration text disjoint from the
 * held-out set) at the checkpoints around the decay (steps 250-400) and for the soups. Outputs under
 * runs/ptq-schedules/ (seed 0) and runs/ptq-schedules/seed-N/; the per-checkpoint tables of the first seed and
 * the across-seed summary are printed and written to docs/results/ptq-schedules.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = 'runs/ptq-schedules';
const GPTQ_FROM = 250; // GPTQ from this step on (and for the soups)
const METHODS = ['rtn', 'gptq'] as const;
type Method = (typeof METHODS)[number];
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
function quantize(out: string, model: string, name: string, bits: number, method: Method): Report {
  const json = join(out, 'ptq', `${name}-${method}${bits}.json`);
  if (!existsSync(json)) {
    const args = ['quantize', '--model', model, '--out', join(out, 'ptq', `${name}-${method}${bits}`), '--method', method, '--bits', String(bits)];
    const stdout = cli([...args, '--json', '--log-level', 'warn']);
    writeFileSync(json, stdout.trim().split('\n').pop() as string);
  }
  return JSON.parse(readFileSync(json, 'utf8')) as Report;
}

function train(out: string, seed: number, schedule: (typeof SCHEDULES)[number], init: string): string {
  const name = `sched-${schedule}`;
  const dir = join(out, name, 'pretrain');
  if (existsSync(join(dir, 'final', 'config.json'))) return dir;
  const yaml = [
    `name: ${name}`,
    `seed: ${seed}`,
    `outputDir: ${out}`,
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
  const file = join(out, `${name}.yaml`);
  writeFileSync(file, yaml);
  cli(['train', '--config', file, '--log-level', 'warn']);
  return dir;
}

interface SeedResult {
  /** increase[method][bits][schedule][step or 'soup'] */
  increase: Record<string, number>;
  nll: Record<string, number>;
}

const key = (method: Method, bits: number, schedule: string, at: string) => `${method}/${bits}/${schedule}/${at}`;

function runSeed(seed: number, rows: string[] | null, soups: string[] | null): SeedResult {
  const out = seed === 0 ? ROOT : join(ROOT, `seed-${seed}`);
  mkdirSync(join(out, 'ptq'), { recursive: true });
  const init = join(out, 'init');
  if (!existsSync(join(init, 'config.json'))) {
    cli([
      'init',
      '--arch',
      'models/stories260K/config.json',
      '--tokenizer',
      'models/stories260K',
      '--out',
      init,
      '--seed',
      String(seed),
      '--log-level',
      'warn',
    ]);
  }
  const res: SeedResult = { increase: {}, nll: {} };
  for (const schedule of SCHEDULES) {
    const dir = train(out, seed, schedule, init);
    // Checkpoints step-000050 ... and final/ (the last step; no averaging configured, so the raw weights).
    const ckpts = readdirSync(join(dir, 'checkpoints'))
      .filter((d) => /^step-\d+$/.test(d))
      .map((d) => ({ step: Number(d.slice(5)), path: join(dir, 'checkpoints', d) }))
      .sort((a, b) => a.step - b.step);
    ckpts.push({ step: STEPS, path: join(dir, 'final') });
    for (const { step, path } of ckpts) {
      const r = BITS.map((b) => quantize(out, path, `${schedule}-step${step}`, b, 'rtn'));
      BITS.forEach((b, i) => (res.increase[key('rtn', b, schedule, String(step))] = (r[i] as Report).nllIncrease));
      res.nll[`${schedule}/${step}`] = (r[0] as Report).nllBefore;
      if (step >= GPTQ_FROM)
        for (const b of BITS) res.increase[key('gptq', b, schedule, String(step))] = quantize(out, path, `${schedule}-step${step}`, b, 'gptq').nllIncrease;
      rows?.push(`| ${schedule} | ${step} | ${r[0]?.nllBefore.toFixed(3)} | ${r.map((x) => signed(x.nllIncrease)).join(' | ')} |`);
    }
    // The uniform soup of the last three checkpoints (what LAWA with k = 3 computes at the end of a stage).
    const last = ckpts.slice(-3);
    const soup = join(out, `soup-${schedule}`);
    if (!existsSync(join(soup, 'config.json'))) cli(['soup', ...last.flatMap((c) => ['--model', c.path]), '--out', soup, '--log-level', 'warn']);
    const sr = BITS.map((b) => quantize(out, soup, `${schedule}-soup3`, b, 'rtn'));
    res.nll[`${schedule}/soup`] = (sr[0] as Report).nllBefore;
    for (const method of METHODS)
      for (const b of BITS)
        res.increase[key(method, b, schedule, 'soup')] =
          method === 'rtn' ? (sr[BITS.indexOf(b)] as Report).nllIncrease : quantize(out, soup, `${schedule}-soup3`, b, 'gptq').nllIncrease;
    soups?.push(
      `| ${schedule} | steps ${last.map((c) => c.step).join(', ')} | ${sr[0]?.nllBefore.toFixed(3)} | ${sr.map((x) => signed(x.nllIncrease)).join(' | ')} |`,
    );
  }
  return res;
}

function meanSd(v: number[]): string {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  if (v.length < 2) return signed(m);
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
  return `${signed(m)} ± ${sd.toFixed(3)}`;
}

function main(): void {
  const i = process.argv.indexOf('--seeds');
  const seeds =
    i < 0
      ? [0]
      : String(process.argv[i + 1])
          .split(',')
          .map(Number);
  if (seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error('--seeds: a comma-separated list of integers >= 0, e.g. 0,1,2');
  const t0 = performance.now();
  const rows: string[] = [];
  const soups: string[] = [];
  const results = seeds.map((s, j) => runSeed(s, j === 0 ? rows : null, j === 0 ? soups : null));
  const minutes = (performance.now() - t0) / 60000;
  const perCkpt = ['| schedule | step | held-out NLL (fp32) | RTN 4-bit increase | RTN 3-bit increase |', '|---|---:|---:|---:|---:|', ...rows].join('\n');
  const soupTable = ['| schedule | soup of | held-out NLL (fp32) | RTN 4-bit increase | RTN 3-bit increase |', '|---|---|---:|---:|---:|', ...soups].join('\n');
  const at = ['250', '300', '350', '400', 'soup'];
  const summary: string[] = [];
  for (const method of METHODS)
    for (const b of [...BITS].reverse()) {
      summary.push(`\n${method.toUpperCase()} ${b}-bit: held-out NLL increase (nats/token), mean ± sd over seeds ${seeds.join(', ')}\n`);
      summary.push('| schedule | step 250 | step 300 | step 350 | step 400 | soup of 300-400 |', '|---|---:|---:|---:|---:|---:|');
      for (const schedule of SCHEDULES)
        summary.push(`| ${schedule} | ${at.map((a) => meanSd(results.map((r) => r.increase[key(method, b, schedule, a)] as number))).join(' | ')} |`);
    }
  const nll = ['| schedule | step 300 | step 400 | soup of 300-400 |', '|---|---:|---:|---:|'];
  for (const schedule of SCHEDULES)
    nll.push(
      `| ${schedule} | ${['300', '400', 'soup'].map((a) => meanSd(results.map((r) => r.nll[`${schedule}/${a}`] as number)).replace('+', '')).join(' | ')} |`,
    );
  const md = [
    '# Study (b): PTQ error along training under constant / cosine / WSD schedules, and of soups',
    '',
    `Command: \`node --import tsx scripts/experiments/ptq-schedules.ts --seeds ${seeds.join(',')}\` (${minutes.toFixed(1)} min wall for the parts run now; parts reused from an earlier run are not re-timed). Setup and discussion: docs/ptq.md.`,
    '',
    `Held-out NLL in full precision (nats/token), mean ± sd over seeds ${seeds.join(', ')}:`,
    '',
    ...nll,
    ...summary,
    '',
    `Seed ${seeds[0]}, every checkpoint (RTN):`,
    '',
    perCkpt,
    '',
    soupTable,
    '',
  ].join('\n');
  mkdirSync(join('docs', 'results'), { recursive: true });
  writeFileSync(join('docs', 'results', 'ptq-schedules.md'), md);
  console.log(md);
}

main();
