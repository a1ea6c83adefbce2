// The memory estimate (no tfjs, no weights): shapes from config.json, the terms' arithmetic, the budget check.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBudgetError } from '@bitdistill/core';
import {
  checkMemoryBudget,
  checkpointDiskBytes,
  diskWarning,
  estimateRun,
  estimateStage,
  formatMemoryTable,
  loadConfig,
  memoryJson,
  readModelShape,
  validateConfig,
  type MachineMemory,
  type ModelShape,
} from '@bitdistill/config';
import { WASM_HEAP_LIMIT_BYTES, backendLimitBytes, parameterCounts, parseModelShape } from '../src/memory.ts';

const GiB = 2 ** 30;
const QWEN3_06B = {
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  tie_word_embeddings: true,
};
const machine = (gib: number): MachineMemory => ({ availableBytes: gib * GiB, totalBytes: gib * GiB, source: 'MemAvailable' });

describe('memory estimate', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-memory-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const q06: ModelShape = parseModelShape(QWEN3_06B, 'qwen3-0.6b/config.json');
  const doc = (over: Record<string, unknown> = {}) => ({
    name: 'm',
    model: { path: join(tmp, 'q06'), maxSeqLen: 128 },
    task: { name: 'sst2', train: 'a.tsv', dev: 'b.tsv' },
    corpus: { paths: ['c.txt'], seqLen: 128, maxTokens: 1000 },
    optim: { batchSize: 8, gradAccum: 4 },
    ...over,
  });
  before(() => {
    mkdirSync(join(tmp, 'q06'));
    writeFileSync(join(tmp, 'q06', 'config.json'), JSON.stringify(QWEN3_06B));
  });

  it('reads the shape from config.json (HF keys, defaults as the model package) and counts the parameters', () => {
    expect(parameterCounts(q06).total).to.equal(596_049_920); // Qwen3-0.6B, as `bitdistill init` reports it
    const stories = readModelShape('models/stories260K');
    expect(stories.shape).to.not.equal(null);
    expect(parameterCounts(stories.shape as ModelShape).total).to.equal(260_032); // `bitdistill info`
    // SubLN allnorm adds 5 C + Q + I gains per layer.
    expect(parameterCounts(q06, 'allnorm').total - parameterCounts(q06).total).to.equal(28 * (5 * 1024 + 2048 + 3072));
    expect(readModelShape(join(tmp, 'nope')).shape).to.equal(null);
    expect((readModelShape(tmp) as { reason: string }).reason).to.match(/no config\.json/);
  });

  it('weights, gradients and AdamW moments are 4, 4 and 8 bytes a parameter; the teacher only in distill', () => {
    const c = validateConfig(doc());
    const t = estimateStage(c, 'teacher', q06, { backend: 'native' });
    const n = parameterCounts(q06).total;
    expect(t.bytes.weights).to.equal(4 * n);
    expect(t.bytes.optimizer).to.equal(8 * n);
    expect(t.bytes.grads).to.equal(8 * n); // one gradient set + the running sum of gradAccum 4
    expect(t.bytes.teacher).to.equal(0);
    const d = estimateStage(c, 'distill', q06, { backend: 'native' });
    expect(d.bytes.teacher).to.equal(4 * n);
    expect(d.params).to.be.greaterThan(n); // SubLN gains
    const noKd = estimateStage(validateConfig(doc({ distill: { logit: false, attention: false, studentFrom: 'base' } })), 'distill', q06, {
      backend: 'native',
    });
    expect(noKd.bytes.teacher).to.equal(0);
  });

  it('activations grow with batch and length; recompute lowers them', () => {
    const c = validateConfig(doc());
    const base = estimateStage(c, 'continual-pretrain', q06, { backend: 'native' }).bytes.activations;
    const big = estimateStage(validateConfig(doc({ optim: { batchSize: 16 } })), 'continual-pretrain', q06, { backend: 'native' }).bytes.activations;
    const long = estimateStage(validateConfig(doc({ corpus: { paths: ['c.txt'], seqLen: 256, maxTokens: 1000 } })), 'continual-pretrain', q06, {
      backend: 'native',
    }).bytes.activations;
    const rec = estimateStage(validateConfig(doc({ optim: { batchSize: 8, recompute: true } })), 'continual-pretrain', q06, { backend: 'native' });
    expect(big).to.be.greaterThan(1.6 * base); // the loss chunk and the [V, C] blocks do not grow with the batch
    expect(long).to.be.greaterThan(big); // twice the rows as twice the batch, and attention scores grow as T^2
    expect(rec.recompute).to.equal(true);
    // Selective recompute keeps each block's input and its projection outputs (no projection matmul runs twice):
    // at Qwen3-0.6B, batch 8 x 128, well under half of what a plain step keeps.
    expect(rec.bytes.activations).to.be.lessThan(base / 2);
    // stageOptim reaches the estimate too.
    const staged = estimateStage(validateConfig(doc({ stageOptim: { 'continual-pretrain': { batchSize: 2 } } })), 'continual-pretrain', q06, {
      backend: 'native',
    });
    expect(staged.batchSize).to.equal(2);
    expect(staged.bytes.activations).to.be.lessThan(base / 2);
  });

  it('wasm: tensors must fit the 4 GiB heap; native, cpu and auto have no limit beyond RAM', () => {
    expect(backendLimitBytes('wasm')).to.equal(WASM_HEAP_LIMIT_BYTES);
    for (const b of ['auto', 'native', 'cpu', 'tensorflow']) expect(backendLimitBytes(b)).to.equal(null);
    const r = estimateRun(validateConfig(doc({ backend: 'wasm' })), { machine: machine(1024) });
    expect(() => checkMemoryBudget(r, validateConfig(doc()), ['teacher'])).to.throw(MemoryBudgetError, /wasm32 heap/);
  });

  it('checkpoint disk: final weights + keepLast checkpoints per stage, one more in flight; a warning only past the free space', () => {
    const c = validateConfig(doc());
    const r = estimateRun(c, { backend: 'native', machine: machine(1024) });
    const p = (stage: string) => r.stages.find((s) => s.stage === stage)?.params as number;
    // by hand: teacher P_t, student P_s (SubLN gains): 4 P + 12 P keepLast each, + 12 max(P)
    const want = (4 + 12 * 2) * p('teacher') + (4 + 12 * 2) * p('distill') + 12 * Math.max(p('teacher'), p('distill'));
    expect(checkpointDiskBytes(r, ['teacher', 'distill'], 2)).to.equal(want);
    expect(checkpointDiskBytes(r, [], 2)).to.equal(0);
    // Qwen3-0.6B, four stages, keepLast 1: ~40 GiB (a real-size run filled a 28 GB disk at continual-pretrain)
    const all = checkpointDiskBytes(r, ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'], 1);
    expect(all / GiB).to.be.within(40, 50);
    expect(diskWarning(all, all, '/runs')).to.equal(null);
    expect(diskWarning(10 * 2 ** 20, 2 * 2 ** 20, '/small')).to.match(/up to 10\.0 MiB under \/small, which has 2\.0 MiB free/);
    expect(diskWarning(all, 10 * GiB, '/runs')).to.match(/may need up to [\d.]+ GiB under \/runs, which has 10\.0 GiB free: .*E_IO.*checkpoint\.keepLast/);
  });

  it('refuses a stage over the available memory with a typed error naming the stage, the numbers and the knobs', () => {
    const c = validateConfig(doc());
    const r = estimateRun(c, { backend: 'native', machine: machine(8) });
    let err: unknown;
    try {
      checkMemoryBudget(r, c, ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill']);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(MemoryBudgetError);
    const e = err as MemoryBudgetError;
    expect(e.code).to.equal('E_MEMORY');
    expect(e.stage).to.equal('teacher');
    expect(e.estimateBytes).to.be.greaterThan(8 * GiB);
    expect(e.limitBytes).to.equal(8 * GiB);
    expect(e.message).to.match(/stage 'teacher' needs an estimated [\d.]+ GiB .* more than the 8\.0 GiB of available memory/);
    for (const k of ['optim.batchSize=4 optim.gradAccum=8', 'model.maxSeqLen', 'optim.recompute=true', 'optim.lossChunkRows', '--no-memory-check'])
      expect(e.hint).to.include(k);
    // Enough memory: no error; stages not about to run are not judged.
    expect(() => checkMemoryBudget(estimateRun(c, { backend: 'native', machine: machine(1024) }), c, ['teacher'])).to.not.throw();
    expect(() => checkMemoryBudget(r, c, [])).to.not.throw();
  });

  it('validate output: the table (YAML comments) and JSON; without config.json the estimate is unavailable, not an error', () => {
    const { config } = loadConfig('configs/sst2-tiny.yaml', []);
    const r = estimateRun(config, { machine: machine(16) });
    const table = formatMemoryTable(r);
    for (const s of ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill']) expect(table).to.match(new RegExp(`^# ${s}\\s+0\\.3M\\s+16 x 64 x 1 `, 'm'));
    expect(table).to.match(/# stage\s+params\s+B x T x accum\s+weights\s+grads\s+optimizer\s+update\s+teacher\s+activations\s+overhead\s+total\s+peak in/);
    expect(table).to.include('# available: 16,384 MiB (MemAvailable');
    expect(
      table
        .split('\n')
        .filter((l) => l !== '')
        .every((l) => l.startsWith('#')),
    ).to.equal(true);
    const j = memoryJson(r) as { stages: { stage: string; totalMiB: number; fits: boolean }[] };
    expect(j.stages.map((s) => s.stage)).to.deep.equal(['teacher', 'bitnet-sft', 'continual-pretrain', 'distill']);
    expect(j.stages.every((s) => s.fits && s.totalMiB > 0)).to.equal(true);
    const none = estimateRun(validateConfig(doc({ model: { path: join(tmp, 'absent') } })), { machine: machine(16) });
    expect(none.unavailable).to.match(/does not exist/);
    expect(formatMemoryTable(none)).to.match(/# unavailable: model path .* does not exist/);
    expect(() => checkMemoryBudget(none, validateConfig(doc()), ['teacher'])).to.not.throw();
  });
});
