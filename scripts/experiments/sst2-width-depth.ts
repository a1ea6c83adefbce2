/**
 * Issue 19, "the other direction", second part: does a model built here with `init` - another width, depth or
 * pretraining length than the bundled stories260K - give an SST-2 table with BitDistill above BitNet-SFT?
 *
 * For each base (architecture x corpus pretraining steps): `bitdistill init`, a `pretrain` stage on the shipped
 * corpus, then the four stages of configs/sst2-tiny256.yaml (teacher, BitNet-SFT, continual pre-training,
 * distillation with the paper's settings as that config has them), plus a distill stage with temperature-1 logit
 * KD and no attention KD (the setting that helped in the LM study), for each seed. Dev accuracy from each run's
 * summary.json.
 *
 *   node --import tsx scripts/experiments/sst2-width-depth.ts          # run what is missing, print the table
 *   node --import tsx scripts/experiments/sst2-width-depth.ts --list   # the commands
 *
 * Finished runs (summary.json present) are skipped, so the script resumes where it stopped. Runs go under
 * runs/width-depth/; the table is written to docs/results/sst2-width-depth.md.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OUT = 'runs/width-depth';
const CLI = join('packages', 'cli', 'bin', 'bitdistill.js');
const CONFIG = 'configs/sst2-tiny256.yaml';
const SEEDS = [0, 1]; // two seeds: the grid's wall time on the 2-core machine (see the report)

interface Base {
  name: string;
  arch: Record<string, number>;
  pretrainSteps: number;
  note: string;
}

const TINY256 = JSON.parse(readFileSync('configs/arch/tiny256.json', 'utf8')) as Record<string, unknown>;

const BASES: Base[] = [
  { name: 'w256-l2-p600', arch: {}, pretrainSteps: 600, note: 'configs/arch/tiny256.json as shipped (256 wide, 2 layers), 600 pretraining steps' },
  { name: 'w256-l2-p2400', arch: {}, pretrainSteps: 2400, note: 'the same, pretrained 4x longer' },
  { name: 'w256-l4-p600', arch: { num_hidden_layers: 4 }, pretrainSteps: 600, note: '4 layers' },
];

function run(args: string[], log: string): number {
  const t0 = performance.now();
  const fd = openSync(log, 'a');
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (r.status !== 0) throw new Error(`bitdistill ${args.join(' ')} failed (exit ${r.status}); see ${log}`);
  return (performance.now() - t0) / 1000;
}

function stageValues(summary: string): Record<string, number> {
  const s = JSON.parse(readFileSync(summary, 'utf8')) as { stages: { stage: string; value: number }[] };
  return Object.fromEntries(s.stages.map((x) => [x.stage, x.value * 100]));
}

function plan(b: Base): { name: string; args: string[]; done: string }[] {
  const dir = join(OUT, b.name);
  const archFile = join(dir, 'arch.json');
  const steps: { name: string; args: string[]; done: string }[] = [
    {
      name: `${b.name}: init`,
      args: ['init', '--arch', archFile, '--tokenizer', 'models/stories260K', '--out', join(dir, 'init'), '--seed', '0'],
      done: join(dir, 'init', 'config.json'),
    },
    {
      name: `${b.name}: pretrain`,
      args: [
        'train',
        '--config',
        CONFIG,
        `outputDir=${dir}`,
        'name=base',
        `model.path=${join(dir, 'init')}`,
        'stages=[pretrain]',
        `stageOptim.pretrain.maxSteps=${b.pretrainSteps}`,
      ],
      done: join(dir, 'base', 'summary.json'),
    },
  ];
  const basePath = join(dir, 'base', 'pretrain', 'final');
  for (const seed of SEEDS) {
    steps.push({
      name: `${b.name}: pipeline seed ${seed}`,
      args: ['train', '--config', CONFIG, `outputDir=${dir}`, `name=sst2-s${seed}`, `seed=${seed}`, `model.path=${basePath}`],
      done: join(dir, `sst2-s${seed}`, 'summary.json'),
    });
    const p = join(dir, `sst2-s${seed}`);
    steps.push({
      name: `${b.name}: distill tau 1, logit KD only, seed ${seed}`,
      args: [
        'train',
        '--config',
        CONFIG,
        `outputDir=${dir}`,
        `name=sst2-tau1-s${seed}`,
        `seed=${seed}`,
        `model.path=${basePath}`,
        'stages=[distill]',
        `distill.teacherPath=${join(p, 'teacher', 'final')}`,
        `distill.studentPath=${join(p, 'continual-pretrain', 'final')}`,
        'distill.temperature=1',
        'distill.lambdaLogit=1',
        'distill.attention=false',
      ],
      done: join(dir, `sst2-tau1-s${seed}`, 'summary.json'),
    });
  }
  return steps;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const std = (v: number[]) => (v.length < 2 ? 0 : Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1)));
const fmt = (v: number[]) => (v.length === 0 ? '-' : `${mean(v).toFixed(2)} ± ${std(v).toFixed(2)}`);

function main(): void {
  const list = process.argv.includes('--list');
  mkdirSync(OUT, { recursive: true });
  const seconds: Record<string, number> = existsSync(join(OUT, 'seconds.json'))
    ? (JSON.parse(readFileSync(join(OUT, 'seconds.json'), 'utf8')) as Record<string, number>)
    : {};
  for (const b of BASES) {
    mkdirSync(join(OUT, b.name), { recursive: true });
    writeFileSync(join(OUT, b.name, 'arch.json'), `${JSON.stringify({ ...TINY256, ...b.arch }, null, 2)}\n`);
    for (const s of plan(b)) {
      if (list) {
        console.log(`npx bitdistill ${s.args.join(' ')}`);
        continue;
      }
      if (existsSync(s.done)) continue;
      console.error(`${new Date().toISOString()} ${s.name}`);
      seconds[s.name] = run(s.args, join(OUT, b.name, 'log.txt'));
      writeFileSync(join(OUT, 'seconds.json'), `${JSON.stringify(seconds, null, 2)}\n`);
    }
  }
  if (list) return;
  const lines = [
    '# SST-2 with bases built here: width, depth, pretraining length (issue 19, the other direction)',
    '',
    'Command: `node --import tsx scripts/experiments/sst2-width-depth.ts` (runs under runs/width-depth/, resumable).',
    `Every base: \`bitdistill init\` (seed 0, stories260K's 512-token vocabulary) + a \`pretrain\` stage on the shipped corpus (batch 16 x 64 tokens), then \`${CONFIG}\` (teacher, BitNet-SFT, continual pre-training 300 steps, distillation with tau 5, lambdaLogit 10, gammaAttn 1e5, SubLN standard; 300 steps each over 4,800 training sentences) with seeds ${SEEDS.join(', ')}; "tau 1 logit KD": the distill stage again from the same teacher and continual-pretrain student with temperature 1, lambdaLogit 1 and no attention KD. SST-2 dev accuracy (872 sentences), mean ± sample std over the seeds.`,
    '',
    '| base | FP teacher (FP-SFT) | BitNet-SFT | BitDistill (paper settings) | tau 1 logit KD | BitDistill - BitNet-SFT | minutes |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const b of BASES) {
    const dir = join(OUT, b.name);
    const v = SEEDS.filter((s) => existsSync(join(dir, `sst2-s${s}`, 'summary.json'))).map((s) => stageValues(join(dir, `sst2-s${s}`, 'summary.json')));
    const t1 = SEEDS.filter((s) => existsSync(join(dir, `sst2-tau1-s${s}`, 'summary.json'))).map(
      (s) => stageValues(join(dir, `sst2-tau1-s${s}`, 'summary.json'))['distill'] as number,
    );
    const col = (k: string) => v.map((x) => x[k] as number);
    const diff = v.map((x) => (x['distill'] as number) - (x['bitnet-sft'] as number));
    const minutes =
      Object.entries(seconds)
        .filter(([k]) => k.startsWith(`${b.name}:`))
        .reduce((a, [, s]) => a + s, 0) / 60;
    lines.push(
      `| ${b.note} | ${fmt(col('teacher'))} | ${fmt(col('bitnet-sft'))} | ${fmt(col('distill'))} | ${fmt(t1)} | ${fmt(diff)} | ${minutes.toFixed(1)} |`,
    );
  }
  const total = Object.values(seconds).reduce((a, b) => a + b, 0) / 60;
  lines.push(
    '',
    `50.92 is the majority class. Minutes: the sum of this grid's commands (${total.toFixed(1)} min in all), as runs/width-depth/seconds.json has them; ` +
      'a command stopped and rerun resumes from its checkpoints and counts only its rerun. Findings: docs/results/lm-stories260k.md, "Bases built here".',
    '',
  );
  writeFileSync('docs/results/sst2-width-depth.md', `${lines.join('\n')}\n`);
  console.log(lines.join('\n'));
}

main();
