// A finished stage leaves nothing behind in the process: its model (and the distill stage's teacher) is disposed
// once final/ is written. Before, every stage kept its weights alive, so the later stages of one `train` process
// carried the earlier ones: at the Qwen3-0.6B shape continual-pretrain peaked at 21.0 GiB after teacher and
// bitnet-sft against 16.3 GiB in a fresh process (bench/results/real-size-qwen3-0.6b-bf16-2026-12-05.md).
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { silentLogger } from '@bitdistill/core';
import { formatConfig, validateConfig } from '@bitdistill/config';
import { initBackend } from '@bitdistill/backend';
import { runTraining } from '@bitdistill/trainer';

describe('stages release their models', function () {
  this.timeout(300_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-release-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('all four stages of one process: the live tensors and bytes after equal those before', async () => {
    await initBackend('auto', silentLogger);
    const config = validateConfig({
      name: 'release',
      outputDir: root,
      model: { path: 'models/stories260K', maxSeqLen: 40 },
      task: { name: 'sst2', train: 'datasets/glue/SST-2/train.tsv', dev: 'datasets/glue/SST-2/dev.tsv', trainLimit: 16, devLimit: 8 },
      corpus: { paths: ['datasets/corpus/tinyshakespeare'], seqLen: 32 },
      stages: ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'],
      optim: { lr: 1e-3, batchSize: 4, maxSteps: 1 },
      distill: { relationHeads: 8 },
      checkpoint: { every: 100 },
    });
    const before = tf.memory();
    const rows = await runTraining(config, formatConfig(config), { resume: 'none', logger: silentLogger });
    expect(rows.map((r) => r.status)).to.deep.equal(['trained', 'trained', 'trained', 'trained']);
    const after = tf.memory();
    expect(after.numTensors, `${after.numTensors - before.numTensors} tensors left`).to.equal(before.numTensors);
    expect(after.numBytes).to.equal(before.numBytes);
  });
});
