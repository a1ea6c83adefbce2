/**
 * Calibration of the memory estimate (packages/config/src/memory.ts) against real runs: each case trains one
 * stage for a few steps in its own `bitdistill train --stage S` child process (checkpoints on), reads the
 * stage's peak RSS from its metrics.jsonl memory record (VmHWM, reset at the stage's start), and prints it next
 * to the estimate `validate` would print for the same config and backend.
 *
 *   node --import tsx scripts/memory/calibrate.ts [--backend native|wasm] [--case NAME ...] [--steps 3] [--reuse]
 *
 * --reuse recomputes the estimates against the peaks measured last time (runs/memory-calibration/CASE-BACKEND/measured.json).
 *
 * Cases (stages run in order into one run folder, so distill finds its teacher and continual-pretrain outputs):
 *   tiny     models/stories260K (0.26M params, V 512), SST-2 with the tiny config's template, B 16, T 32
 *   small    models/small-base (7.6M params, V 30,522, width 192, 4 layers), B 8, T 32
 *   q42m     a random Qwen3-shaped model (width 256, 4 layers, 4/2 heads x 64, I 768, V 151,936: 42M params,
 *            built once with `bitdistill init` into runs/memory-calibration/q42m-init), B 4, T 32
 * T is pinned: the SST-2 prompts of the slice are cut to model.maxSeqLen, the corpus is packed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { estimateStage, loadConfig, readModelShape, type StageName } from '@bitdistill/config';

const argv = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? (argv[i + 1] as string) : def;
};
const backend = opt('backend', 'native');
const steps = Number(opt('steps', '3'));
const wanted = argv.flatMap((a, i) => (argv[i - 1] === '--case' ? [a] : []));
const ROOT = 'runs/memory-calibration';
const BIN = 'packages/cli/bin/bitdistill.js';
const STAGES: StageName[] = ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'];

interface Case {
  name: string;
  model: string;
  B: number;
  T: number;
  task: string;
  relationHeads: number;
  prepare?: () => void;
}

const SST2 = 'name: sst2\n  train: datasets/glue/SST-2/train.tsv\n  dev: datasets/glue/SST-2/dev.tsv\n  trainLimit: 256\n  devLimit: 16';
const CASES: Case[] = [
  {
    name: 'tiny',
    model: 'models/stories260K',
    B: 16,
    T: 32,
    relationHeads: 8,
    task: `${SST2}\n  template: "Review: {sentence}\\nMood:"\n  templateVersion: tiny-v1\n  labelWords: [sad, happy]`,
  },
  {
    name: 'small',
    model: 'models/small-base',
    B: 8,
    T: 32,
    relationHeads: 6,
    task: `${SST2}\n  template: "review: {sentence}\\nsentiment:"\n  templateVersion: small-v1\n  labelWords: [negative, positive]`,
  },
  {
    name: 'q42m',
    model: join(ROOT, 'q42m-init'),
    B: 4,
    T: 32,
    relationHeads: 8,
    task: SST2,
    prepare: () => {
      const out = join(ROOT, 'q42m-init');
      if (existsSync(join(out, 'model.safetensors'))) return;
      mkdirSync(ROOT, { recursive: true });
      const arch = join(ROOT, 'q42m.json');
      writeFileSync(
        arch,
        JSON.stringify({
          architectures: ['Qwen3ForCausalLM'],
          model_type: 'qwen3',
          hidden_size: 256,
          num_hidden_layers: 4,
          num_attention_heads: 4,
          num_key_value_heads: 2,
          head_dim: 64,
          intermediate_size: 768,
          vocab_size: 151936,
          tie_word_embeddings: true,
          rope_theta: 1000000,
          rms_norm_eps: 1e-6,
          hidden_act: 'silu',
          max_position_embeddings: 4096,
        }),
      );
      const r = spawnSync(process.execPath, [BIN, 'init', '--arch', arch, '--tokenizer', 'models/qwen3-tokenizer', '--out', out, '--log-level', 'warn'], {
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(`init failed: ${r.stderr}`);
    },
  },
];

const MiB = 2 ** 20;
console.log(`backend ${backend}; ${steps} steps per stage, checkpoint every 2`);
console.log('| case | stage | B x T | measured peak RSS MiB | estimate MiB | estimate / measured | peak phase |');
console.log('|---|---|---|---:|---:|---:|---|');
const reuse = argv.includes('--reuse');
const rows: string[] = [];
for (const c of CASES.filter((x) => wanted.length === 0 || wanted.includes(x.name))) {
  const dir = join(ROOT, `${c.name}-${backend}`);
  const cfg = join(dir, 'config.yaml');
  const measuredFile = join(dir, 'measured.json');
  let measured: Record<string, { peakRssMiB: number; scope: string }> = {};
  if (reuse && existsSync(measuredFile)) {
    measured = JSON.parse(readFileSync(measuredFile, 'utf8')) as typeof measured;
  } else {
    c.prepare?.();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      cfg,
      [
        `name: cal-${c.name}`,
        `outputDir: ${dir}`,
        `backend: ${backend}`,
        `model: {path: ${c.model}, maxSeqLen: ${c.T}}`,
        `task:\n  ${c.task}`,
        `corpus: {paths: [datasets/corpus/tinyshakespeare], seqLen: ${c.T}}`,
        `stages: [${STAGES.join(', ')}]`,
        `optim: {lr: 1.0e-3, batchSize: ${c.B}, gradAccum: 1, maxSteps: ${steps}, warmupRatio: 0}`,
        `distill: {relationHeads: ${c.relationHeads}}`,
        'checkpoint: {every: 2, keepLast: 1}',
        'eval: {limit: 16}',
        'log: {every: 1}',
        '',
      ].join('\n'),
    );
    for (const stage of STAGES) {
      const r = spawnSync(process.execPath, [BIN, 'train', '--config', cfg, '--stage', stage, '--no-memory-check', '--log-level', 'warn'], {
        encoding: 'utf8',
      });
      if (r.status !== 0) {
        console.log(`| ${c.name} | ${stage} | failed (${r.status}): ${r.stderr.split('\n').slice(-4).join(' ')} |`);
        break;
      }
      const rec = readFileSync(join(dir, `cal-${c.name}`, stage, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((x) => x['type'] === 'memory') as { peakRssMiB: number; scope: string } | undefined;
      if (rec === undefined) throw new Error(`no memory record for ${c.name}/${stage}`);
      measured[stage] = { peakRssMiB: rec.peakRssMiB, scope: rec.scope };
    }
    writeFileSync(measuredFile, `${JSON.stringify(measured, null, 2)}\n`);
  }
  const { config } = loadConfig(cfg, []);
  const shape = readModelShape(c.model);
  if (shape.shape === null) throw new Error(shape.reason);
  for (const stage of STAGES) {
    const m = measured[stage];
    if (m === undefined) continue;
    const est = estimateStage(config, stage, shape.shape, { backend });
    const e = est.bytes.total / MiB;
    const line = `| ${c.name} | ${stage} | ${c.B} x ${c.T} | ${m.peakRssMiB}${m.scope === 'stage' ? '' : ' (process)'} | ${Math.round(e)} | ${(e / m.peakRssMiB).toFixed(2)} | ${est.phase} |`;
    rows.push(line);
    console.log(line);
  }
}
