// A base model from scratch: `bitdistill init` + the `pretrain` stage, then a CE-only student stage that needs
// no teacher (the SubLN-only ablation), all through the real CLI on a tiny architecture.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSafetensorsDir, tensorToFloat32 } from '@bitdistill/format';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ARCH = {
  model_type: 'llama',
  vocab_size: 30522,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 2,
  head_dim: 16,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

describe('bitdistill init + pretrain stage (real CLI)', function () {
  this.timeout(300_000);
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-pretrain-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const arch = join(tmp, 'arch.json');
  const init = join(tmp, 'init');

  it('init writes a random std-0.02 model with the tokenizer; refuses bad input with the file named', () => {
    writeFileSync(arch, JSON.stringify(ARCH));
    const r = cli('init', '--arch', arch, '--tokenizer', 'models/bert-uncased-lm', '--out', init, '--seed', '3', '--log-level', 'warn');
    expect(r.status, r.stderr).to.equal(0);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) expect(existsSync(join(init, f)), f).to.equal(true);
    const w = tensorToFloat32(loadSafetensorsDir(init).tensors.get('model.layers.0.mlp.up_proj.weight')!);
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
    expect(std).to.be.closeTo(0.02, 0.002);
    const again = cli('init', '--arch', arch, '--tokenizer', 'models/bert-uncased-lm', '--out', init);
    expect(again.status).to.equal(1);
    expect(again.stderr).to.include('already holds a model.safetensors');
    const small = join(tmp, 'small.json');
    writeFileSync(small, JSON.stringify({ ...ARCH, vocab_size: 1000 }));
    const v = cli('init', '--arch', small, '--tokenizer', 'models/bert-uncased-lm', '--out', join(tmp, 'x'));
    expect(v.status).to.not.equal(0);
    expect(v.stderr).to.include(small);
    expect(v.stderr).to.include('vocab_size 1000 is smaller than the tokenizer');
  });

  it('pretrain lowers the LM loss of the fresh model; a later SubLN student stage runs CE-only with no teacher', () => {
    const cfg = join(tmp, 'cfg.yaml');
    writeFileSync(
      cfg,
      [
        'name: pt',
        `outputDir: ${join(tmp, 'runs')}`,
        'backend: wasm',
        `model: {path: ${init}, maxSeqLen: 48}`,
        'task: {name: sst2, train: datasets/glue/SST-2/train.tsv, dev: datasets/glue/SST-2/dev.tsv, trainLimit: 64, devLimit: 32, template: "review: {sentence}\\nsentiment:", labelWords: [negative, positive]}',
        'corpus: {paths: [datasets/corpus/tinyshakespeare], seqLen: 32}',
        'stages: [pretrain, distill]',
        'optim: {lr: 1.0e-2, batchSize: 8, epochs: 1, maxSteps: 4, warmupRatio: 0}',
        'stageOptim: {pretrain: {maxSteps: 12}}',
        'distill: {logit: false, attention: false, studentFrom: base}',
        'log: {every: 1}',
        'checkpoint: {every: 100}',
      ].join('\n'),
    );
    // The student of `distill` (studentFrom: base) is model.path, i.e. the fresh init; what matters here is that
    // both stages run from one config and the CE-only stage needs no teacher.
    const r = cli('train', '--config', cfg, '--log-level', 'warn');
    expect(r.status, r.stderr).to.equal(0);
    const m = readFileSync(join(tmp, 'runs', 'pt', 'pretrain', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number | string>);
    const losses = m.filter((x) => x['type'] === 'train').map((x) => x['loss'] as number);
    expect(losses).to.have.length(12);
    expect(losses[0]).to.be.closeTo(Math.log(30522), 0.3); // a fresh model is near uniform
    expect(losses[losses.length - 1]).to.be.lessThan((losses[0] as number) - 1);
    const d = readFileSync(join(tmp, 'runs', 'pt', 'distill', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const train = d.filter((x) => x['type'] === 'train');
    expect(train).to.have.length(4);
    expect(Object.keys(train[0] as object))
      .to.include('ce')
      .and.not.include('logitKd');
    expect(train[0]).to.have.property('latent.relErr');
    const summary = JSON.parse(readFileSync(join(tmp, 'runs', 'pt', 'summary.json'), 'utf8')) as { stages: { stage: string; value: number | null }[] };
    expect(summary.stages.map((s) => s.stage)).to.deep.equal(['pretrain', 'distill']);
    expect(summary.stages[1]?.value).to.be.a('number');
  });

  it('config checks: pretrain must come first and needs a budget; a distill with a KD term needs a teacher', () => {
    const bad = join(tmp, 'bad.yaml');
    writeFileSync(
      bad,
      `name: b\nmodel: {path: ${init}}\ntask: {name: sst2, train: a, dev: b}\ncorpus: {paths: [x]}\nstages: [distill, pretrain]\ndistill: {studentFrom: base}\n`,
    );
    const r = cli('validate', '--config', bad);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.include("'pretrain' builds the base model: it must come first");
    expect(r.stderr).to.include('pretrain needs a budget');
    expect(r.stderr).to.include("'distill' needs a teacher");
  });
});
