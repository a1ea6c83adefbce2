/**
 * Issue 22, part 3: post-training quantization of the bundled base models, RTN against GPTQ at 3 and 4 bits, per
 * row and per group, three seeds (a seed draws both the calibration and the held-out sequences). Every cell is one
 * `bitdistill quantize --json` run with the command's default sets (32 calibration and, here, 256 held-out
 * sequences of 128 tokens from datasets/corpus/tinyshakespeare).
 *
 *   node --import tsx scripts/experiments/ptq.ts            # run the grid, print the Markdown tables
 *   node --import tsx scripts/experiments/ptq.ts --list     # the commands
 *
 * Outputs go under runs/ptq/ (a finished cell's JSON is reused, so the script resumes); the tables are pasted
 * into docs/ptq.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OUT = 'runs/ptq';
const CLI = join('packages', 'cli', 'bin', 'bitdistill.js');
const SEEDS = [0, 1, 2];
const HELDOUT = 256;
const MODELS: { name: string; path: string; groups: (number | null)[] }[] = [
  // stories260K's inputs are 64 wide except down_proj's 172: group 128 splits only down_proj, so 32 is run too
  { name: 'stories260K', path: 'models/stories260K', groups: [null, 128, 32] },
  { name: 'small-base', path: 'models/small-base', groups: [null, 128] },
];

interface Report {
  nllBefore: number;
  nllAfter: number;
  nllIncrease: number;
  weightRelErr: { mean: number };
  outputRelErr: { mean: number } | null;
  seconds: number;
}

interface Cell {
  model: string;
  method: 'rtn' | 'gptq';
  bits: number;
  group: number | null;
  seed: number;
  args: string[];
  json: string;
}

function cells(): Cell[] {
  const out: Cell[] = [];
  for (const m of MODELS)
    for (const bits of [4, 3])
      for (const group of m.groups)
        for (const method of ['rtn', 'gptq'] as const)
          for (const seed of SEEDS) {
            const name = `${m.name}-${method}${bits}-${group ?? 'row'}-seed${seed}`;
            const args = ['quantize', '--model', m.path, '--out', join(OUT, name), '--method', method, '--bits', String(bits)];
            if (group !== null) args.push('--group', String(group));
            args.push('--heldout-seqs', String(HELDOUT), '--seed', String(seed), '--json', '--log-level', 'warn');
            out.push({ model: m.name, method, bits, group, seed, args, json: join(OUT, `${name}.json`) });
          }
  return out;
}

function stats(xs: number[]): string {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return `${mean >= 0 ? '+' : ''}${mean.toFixed(4)} ± ${sd.toFixed(4)}`;
}

const list = process.argv.includes('--list');
mkdirSync(OUT, { recursive: true });
const results = new Map<Cell, Report>();
for (const c of cells()) {
  if (list) {
    console.log(`node ${CLI} ${c.args.join(' ')}`);
    continue;
  }
  if (!existsSync(c.json)) {
    const r = spawnSync(process.execPath, [CLI, ...c.args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bitdistill ${c.args.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
    writeFileSync(c.json, r.stdout);
    console.error(`${c.json}: ${(JSON.parse(r.stdout) as Report).seconds.toFixed(1)} s`);
  }
  results.set(c, JSON.parse(readFileSync(c.json, 'utf8')) as Report);
}
if (!list) {
  for (const m of MODELS) {
    const rows = [...results].filter(([c]) => c.model === m.name);
    const before = rows.filter(([c]) => c.method === 'rtn' && c.bits === 4 && c.group === null).map(([, r]) => r.nllBefore);
    console.log(`\n### ${m.name}: held-out NLL of the full-precision model per seed ${before.map((x) => x.toFixed(4)).join(' / ')} nats/token\n`);
    console.log(
      '| bits | group | method | NLL increase (mean ± sd, 3 seeds) | NLL after, seed 0 | weight error ‖W−Q‖/‖W‖ | layer output error (GPTQ objective) | seconds |',
    );
    console.log('|---:|---:|---|---:|---:|---:|---:|---:|');
    for (const bits of [4, 3])
      for (const group of m.groups)
        for (const method of ['rtn', 'gptq'] as const) {
          const cell = rows.filter(([c]) => c.bits === bits && c.group === group && c.method === method).map(([, r]) => r);
          const seed0 = cell[0] as Report;
          const out = cell.map((r) => r.outputRelErr?.mean ?? NaN);
          console.log(
            `| ${bits} | ${group ?? 'row'} | ${method} | ${stats(cell.map((r) => r.nllIncrease))} | ${seed0.nllAfter.toFixed(4)} | ${seed0.weightRelErr.mean.toFixed(4)} | ${
              Number.isNaN(out[0]) ? '-' : (out[0] as number).toPrecision(3)
            } | ${(cell.reduce((a, r) => a + r.seconds, 0) / cell.length).toFixed(1)} |`,
          );
        }
  }
}
