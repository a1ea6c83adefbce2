// Every GLUE task from a config alone (issue 20): for each of the nine, a config pointing at a small fixture in
// the task's published GLUE format (packages/data/test/fixtures/glue) trains one BitNet-SFT step on stories260K,
// exports, and evaluates the export on the kernels runtime in label and generate modes, with the task, template
// and label words read back from the export. Every metric of the task must be reported.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@bitdistill/backend';
import { formatConfig, validateConfig } from '@bitdistill/config';
import { silentLogger } from '@bitdistill/core';
import { readExamples } from '@bitdistill/data';
import { modelTask, runEval } from '@bitdistill/eval';
import { exportTernary } from '@bitdistill/export';
import { initKernels } from '@bitdistill/kernels-cpu/runtime';
import { kernelsPredictor, TernaryRuntime } from '@bitdistill/runtime';
import { runTraining } from '@bitdistill/trainer';

const GLUE = 'packages/data/test/fixtures/glue';

/** Per task: its data files (train, dev...) and the metric keys its evaluation must report. */
const CASES: { task: string; train: string; dev: string[]; metrics: string[] }[] = [
  { task: 'cola', train: 'CoLA/dev.tsv', dev: ['CoLA/dev.tsv'], metrics: ['matthews', 'accuracy'] },
  { task: 'sst2', train: 'SST-2/dev.tsv', dev: ['SST-2/dev.tsv'], metrics: ['accuracy'] },
  { task: 'mrpc', train: 'MRPC/msr_paraphrase_train.txt', dev: ['MRPC/dev.tsv'], metrics: ['f1', 'accuracy'] },
  { task: 'stsb', train: 'STS-B/dev.tsv', dev: ['STS-B/dev.tsv'], metrics: ['pearson', 'spearman'] },
  { task: 'qqp', train: 'QQP/dev.tsv', dev: ['QQP/dev.tsv'], metrics: ['f1', 'accuracy'] },
  { task: 'mnli', train: 'MNLI/train.tsv', dev: ['MNLI/dev_matched.tsv', 'MNLI/dev_mismatched.tsv'], metrics: ['accuracy_m', 'accuracy_mm'] },
  { task: 'qnli', train: 'QNLI/dev.tsv', dev: ['QNLI/dev.tsv'], metrics: ['accuracy'] },
  { task: 'rte', train: 'RTE/dev.tsv', dev: ['RTE/dev.tsv'], metrics: ['accuracy'] },
  { task: 'wnli', train: 'WNLI/dev.tsv', dev: ['WNLI/dev.tsv'], metrics: ['accuracy'] },
];

describe('every GLUE task: config -> train -> export -> eval (label, generate)', function () {
  this.timeout(300_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-glue-'));
  before(async () => {
    await initBackend('wasm', silentLogger);
    initKernels();
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  for (const c of CASES) {
    it(`${c.task}: trains from ${c.train}, the export evaluates on ${c.dev.join(' + ')} with ${c.metrics.join(', ')}`, async () => {
      const config = validateConfig({
        name: c.task,
        backend: 'wasm',
        outputDir: root,
        model: { path: 'models/stories260K', maxSeqLen: 40 },
        task: { name: c.task, train: join(GLUE, c.train), dev: c.dev.length === 1 ? join(GLUE, c.dev[0] as string) : c.dev.map((d) => join(GLUE, d)) },
        stages: ['bitnet-sft'],
        optim: { lr: 2e-3, batchSize: 4, maxSteps: 1 },
        checkpoint: { every: 100 },
      });
      const [row] = await runTraining(config, formatConfig(config), { resume: 'none', logger: silentLogger });
      expect(Object.keys(row?.metrics ?? {})).to.deep.equal(c.metrics);
      const summary = readFileSync(join(root, c.task, 'summary.md'), 'utf8');
      for (const m of c.metrics) expect(summary).to.include(`${m} `);

      const out = join(root, `${c.task}-export`);
      exportTernary({ from: join(root, c.task, 'bitnet-sft'), out });
      const rt = TernaryRuntime.load(out);
      const task = modelTask(rt.bitdistill);
      expect(task?.name).to.equal(c.task);
      const sets = await Promise.all(c.dev.map((d) => readExamples(join(GLUE, d), task as NonNullable<typeof task>)));
      for (const mode of ['label', 'generate'] as const) {
        const r = await runEval(kernelsPredictor(rt), task as NonNullable<typeof task>, sets, { mode, maxLen: 40, split: 'dev', model: out });
        expect(Object.keys(r.metrics), mode).to.deep.equal(c.metrics);
        for (const v of Object.values(r.metrics)) expect(Number.isFinite(v), `${mode} ${JSON.stringify(r.metrics)}`).to.equal(true);
      }
    });
  }
});
