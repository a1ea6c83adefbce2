/**
 * Issue 19, "the other direction": distillation settings on the bundled SST-2 default (configs/sst2-tiny.yaml),
 * 3 seeds each, reusing each seed's teacher, BitNet-SFT and continual-pretrain outputs from the runs in
 * runs/lm-stories260k/sst2 (sst2-tiny-tau1 for seed 0, sst2-tiny-tau1-s1/-s2; see the SST-2 section of
 * docs/results/lm-stories260k.md for the commands that made them). Only the distill stage is run here.
 *
 *   node --import tsx scripts/experiments/sst2-other-direction.ts          # run what is missing, print the table
 *   node --import tsx scripts/experiments/sst2-other-direction.ts --list   # the commands
 *
 * A run whose summary.json exists is skipped, so the script resumes where it stopped. The step-matched
 * baselines of the report (teacher and BitNet-SFT with 600 steps) are plain `bitdistill train` runs, listed there.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const OUT = 'runs/lm-stories260k/sst2';
const SEEDS = [0, 1, 2];
const CLI = join('packages', 'cli', 'bin', 'bitdistill.js');
const TAU1 = ['distill.temperature=1', 'distill.lambdaLogit=1'];
const CE = 'distill.logit=false distill.attention=false';

/** Setting name -> overrides of the distill stage; `{sft}` is replaced by the seed's BitNet-SFT output. */
const SETTINGS: Record<string, string[]> = {
  'tau1-g1e1': [...TAU1, 'distill.gammaAttn=10'],
  'tau1-g1e2': [...TAU1, 'distill.gammaAttn=100'],
  'tau1-from-sft': [...TAU1, 'distill.attention=false', 'distill.studentPath={sft}'],
  'tau1-600steps': [...TAU1, 'distill.attention=false', 'stageOptim.distill.maxSteps=600'],
  'tau1-from-sft-600steps': [...TAU1, 'distill.attention=false', 'distill.studentPath={sft}', 'stageOptim.distill.maxSteps=600'],
  // Controls without a teacher (both KD terms off: CE on the answer token only), the same steps and start:
  'ce-cpt': [CE],
  'ce-cpt-600steps': [CE, 'stageOptim.distill.maxSteps=600'],
  'ce-from-sft': [CE, 'distill.studentPath={sft}'],
};

const base = (seed: number) => join(OUT, seed === 0 ? 'sst2-tiny-tau1' : `sst2-tiny-tau1-s${seed}`);

function args(setting: string, seed: number): string[] {
  const b = base(seed);
  const own = (SETTINGS[setting] ?? []).flatMap((o) => o.split(' ')).map((o) => o.replace('{sft}', join(b, 'bitnet-sft', 'final')));
  return [
    'train',
    '--config',
    'configs/sst2-tiny.yaml',
    `outputDir=${OUT}`,
    `name=sst2-tiny-${setting}-s${seed}`,
    `seed=${seed}`,
    'stages=[distill]',
    `distill.teacherPath=${join(b, 'teacher', 'final')}`,
    ...(own.some((o) => o.startsWith('distill.studentPath=')) ? [] : [`distill.studentPath=${join(b, 'continual-pretrain', 'final')}`]),
    ...own,
  ];
}

function accuracy(summary: string): number {
  const s = JSON.parse(readFileSync(summary, 'utf8')) as { stages: { stage: string; value: number; seconds: number }[] };
  return s.stages.find((x) => x.stage === 'distill')!.value * 100;
}

function main(): void {
  const list = process.argv.includes('--list');
  const only = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const names = only.length > 0 ? only : Object.keys(SETTINGS);
  for (const setting of names) {
    for (const seed of SEEDS) {
      const a = args(setting, seed);
      const summary = join(OUT, `sst2-tiny-${setting}-s${seed}`, 'summary.json');
      if (list) {
        console.log(`npx bitdistill ${a.map((x) => (/[[\]]/.test(x) ? `"${x}"` : x)).join(' ')}`);
        continue;
      }
      if (existsSync(summary)) continue;
      console.log(`\n$ bitdistill ${a.join(' ')}`);
      const t0 = Date.now();
      const log = openSync(join(OUT, `log-${setting}-s${seed}.txt`), 'w'); // the CLI's JSON log
      const r = spawnSync(process.execPath, [CLI, ...a], { stdio: ['ignore', log, log] });
      closeSync(log);
      if (r.status !== 0) {
        console.error(`exited with ${r.status ?? r.signal}; rerun to resume`);
        process.exit(r.status ?? 1);
      }
      console.log(`${setting} seed ${seed}: ${accuracy(summary).toFixed(2)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
  if (list) return;
  console.log('\n| setting | seed 0 | seed 1 | seed 2 | mean ± std |\n|---|---:|---:|---:|---:|');
  for (const setting of names) {
    const v = SEEDS.map((s) => join(OUT, `sst2-tiny-${setting}-s${s}`, 'summary.json'))
      .filter(existsSync)
      .map(accuracy);
    if (v.length === 0) continue;
    const m = v.reduce((x, y) => x + y, 0) / v.length;
    const sd = v.length > 1 ? Math.sqrt(v.reduce((x, y) => x + (y - m) ** 2, 0) / (v.length - 1)) : NaN;
    console.log(`| ${setting} | ${v.map((x) => x.toFixed(2)).join(' | ')} | ${m.toFixed(2)} ± ${sd.toFixed(2)} |`);
  }
}

main();
