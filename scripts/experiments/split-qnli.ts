/**
 * QNLI's only split available offline is dev (5,463 rows). The small-scale experiments fine-tune on part of it
 * and evaluate on the rest: this splits it once, with a fixed seed, into
 * datasets/glue/QNLI/small-split/{train,heldout}.tsv (same columns as dev.tsv). Deterministic: rerunning it
 * rewrites byte-identical files.
 *
 *   node --import tsx scripts/experiments/split-qnli.ts
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '@bitdistill/core';

export const QNLI_SPLIT_SEED = 20261128;
export const QNLI_HELDOUT = 1000;

const src = 'datasets/glue/QNLI/dev.tsv';
const outDir = 'datasets/glue/QNLI/small-split';
const lines = readFileSync(src, 'utf8')
  .split('\n')
  .filter((l) => l !== '');
const header = lines[0] as string;
const rows = lines.slice(1);
const order = new Rng(QNLI_SPLIT_SEED).shuffle(rows.map((_, i) => i));
const heldout = new Set(order.slice(0, QNLI_HELDOUT));
const pick = (keep: boolean) => [header, ...rows.filter((_, i) => heldout.has(i) === keep)].join('\n') + '\n';
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'train.tsv'), pick(false));
writeFileSync(join(outDir, 'heldout.tsv'), pick(true));
console.log(`${src}: ${rows.length} rows -> ${rows.length - QNLI_HELDOUT} train, ${QNLI_HELDOUT} held out (seed ${QNLI_SPLIT_SEED}) in ${outDir}`);
