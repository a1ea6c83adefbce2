/**
 * Reruns the whole small-scale table (docs/results/small-scale.md), resumably: every run is a plain
 * `bitdistill train`, which skips stages whose final/ exists and resumes interrupted ones from their latest
 * checkpoint, so this can be stopped at any moment and started again. Then scripts/experiments/analyze.ts
 * rebuilds the tables and pictures from the runs.
 *
 *   npm run reproduce:small                 # everything (about 2 hours on the 2-core CI machine)
 *   npm run reproduce:small -- --list       # the run matrix, with the exact commands
 *   npm run reproduce:small -- --only sst2-attn-only
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { shipBase } from './ship-base.ts';

export interface ExperimentRun {
  name: string;
  config: string;
  overrides: string[];
  /** Which table or figure the run feeds. */
  group: 'lr-sweep' | 'gamma-sweep' | 'scratch' | 'main' | 'table5' | 'table6' | 'layer' | 'qnli';
}

const EXP = 'configs/experiments';
const S0 = 'runs/sst2-bitdistill-s0';
const SHARED = [`distill.studentPath=${S0}/continual-pretrain/final`];

/** Learning rates tried on SST-2 dev (seed 0) for the full-precision and the ternary fine-tuning (1e-3 is the main run). */
export const LR_SWEEP = ['3e-4', '3e-3'];

/** gammaAttn values tried on SST-2 dev (seed 0) for BitDistill; the paper's classification value is 1e5. */
export const GAMMA_SWEEP = ['1e2', '1e3', '1e4', '1e5'];

export const RUNS: ExperimentRun[] = [
  ...(['teacher', 'bitnet-sft'] as const).flatMap((stage) =>
    LR_SWEEP.map((lr): ExperimentRun => ({
      name: `sst2-lr-${stage}-${lr}`,
      config: `${EXP}/sst2-bitdistill.yaml`,
      overrides: [`name=sst2-lr-${stage}-${lr}`, `stages=[${stage}]`, `optim.lr=${lr}`],
      group: 'lr-sweep',
    })),
  ),
  { name: 'sst2-bitdistill-s0', config: `${EXP}/sst2-bitdistill.yaml`, overrides: [], group: 'main' },
  ...GAMMA_SWEEP.map((g): ExperimentRun => ({
    name: `sst2-gamma-${g}`,
    config: `${EXP}/sst2-bitdistill.yaml`,
    overrides: [`name=sst2-gamma-${g}`, 'stages=[distill]', `distill.gammaAttn=${g}`, `distill.teacherPath=${S0}/teacher/final`, ...SHARED],
    group: 'gamma-sweep',
  })),
  ...[1, 2].map((s): ExperimentRun => ({
    name: `sst2-bitdistill-s${s}`,
    config: `${EXP}/sst2-bitdistill.yaml`,
    overrides: [`name=sst2-bitdistill-s${s}`, `seed=${s}`, 'stages=[teacher,bitnet-sft,distill]', ...SHARED],
    group: 'main',
  })),
  { name: 'sst2-subln-only', config: `${EXP}/sst2-subln-only.yaml`, overrides: [], group: 'table5' },
  { name: 'sst2-subln-cpt', config: `${EXP}/sst2-subln-cpt.yaml`, overrides: [], group: 'table5' },
  { name: 'sst2-subln-distill', config: `${EXP}/sst2-subln-distill.yaml`, overrides: [], group: 'table5' },
  { name: 'sst2-logit-only', config: `${EXP}/sst2-logit-only.yaml`, overrides: [], group: 'table6' },
  { name: 'sst2-attn-only', config: `${EXP}/sst2-attn-only.yaml`, overrides: [], group: 'table6' },
  { name: 'qnli-bitdistill-s0', config: `${EXP}/qnli-bitdistill.yaml`, overrides: [], group: 'qnli' },
  // Does the pretraining help at all? The same fine-tuning from the random initialisation (runs/base-init).
  ...(['teacher', 'bitnet-sft'] as const).map((stage): ExperimentRun => ({
    name: `sst2-scratch-${stage}`,
    config: `${EXP}/sst2-bitdistill.yaml`,
    overrides: [`name=sst2-scratch-${stage}`, `stages=[${stage}]`, 'model.path=runs/base-init'],
    group: 'scratch',
  })),
  ...[0, 1, 2].map((l): ExperimentRun => ({
    name: `sst2-layer-${l}`,
    config: `${EXP}/sst2-bitdistill.yaml`,
    overrides: [`name=sst2-layer-${l}`, 'stages=[distill]', `distill.distillLayer=${l}`, `distill.teacherPath=${S0}/teacher/final`, ...SHARED],
    group: 'layer',
  })),
];

const CLI = join('packages', 'cli', 'bin', 'bitdistill.js');

function run(args: string[]): void {
  console.log(`\n$ bitdistill ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bitdistill ${args[0]} exited with ${r.status ?? r.signal}; rerun this script to resume where it stopped`);
    process.exit(r.status ?? 1);
  }
}

export function commandOf(r: ExperimentRun): string {
  return ['npx bitdistill train --config', r.config, ...r.overrides.map((o) => (/[[\]]/.test(o) ? `"${o}"` : o))].join(' ');
}

function main(): void {
  const argv = process.argv.slice(2);
  if (argv.includes('--list')) {
    for (const r of RUNS) console.log(`${r.group.padEnd(7)} ${r.name.padEnd(22)} ${commandOf(r)}`);
    return;
  }
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
  // The random initialisation: the start of the pretraining, and of the from-scratch comparison runs.
  if (!existsSync('runs/base-init/model.safetensors'))
    run(['init', '--arch', `${EXP}/base-arch.json`, '--tokenizer', 'models/bert-uncased-lm', '--out', 'runs/base-init', '--seed', '0']);
  if (!existsSync('models/small-base/model.safetensors')) {
    // The base model is shipped; rebuild it only when it is missing.
    run(['train', '--config', `${EXP}/base-pretrain.yaml`]);
    shipBase('runs/base-pretrain/pretrain/final', 'models/small-base');
  }
  const todo = RUNS.filter((r) => only === undefined || r.name === only);
  if (todo.length === 0) throw new Error(`--only ${only}: no such run (see --list)`);
  todo.forEach((r, i) => {
    console.log(`\n=== [${i + 1}/${todo.length}] ${r.name} (${r.group}) ===`);
    run(['train', '--config', r.config, ...r.overrides]);
  });
  if (only === undefined) {
    const a = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/experiments/analyze.ts'], { stdio: 'inherit' });
    process.exit(a.status ?? 1);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) main();
