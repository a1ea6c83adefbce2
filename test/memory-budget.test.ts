// Know before you load, through the real CLI: validate's memory table, train's refusal of a stage too big for the
// machine (exit 2, typed error, nothing written), and the estimate against the peak RSS of a real short run.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { estimateStage, loadConfig, readModelShape, type ModelShape, type StageName } from '@bitdistill/config';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A 70B-class shape (vocab 151,936, hidden 8192, 80 layers): config.json and tokenizer only, no weights. */
const HUGE = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 151936,
  hidden_size: 8192,
  intermediate_size: 29568,
  num_hidden_layers: 80,
  num_attention_heads: 64,
  num_key_value_heads: 8,
  tie_word_embeddings: false,
};

describe('memory budget (real CLI)', function () {
  this.timeout(120_000);
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-membudget-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const SMALL_TASK = ['  template: "review: {sentence}\\nsentiment:"', '  templateVersion: small-v1', '  labelWords: [negative, positive]'];
  const TINY_TASK = ['  template: "Review: {sentence}\\nMood:"', '  templateVersion: tiny-v1', '  labelWords: [sad, happy]'];
  const config = (name: string, model: string, extra: string[] = [], task: string[] = SMALL_TASK): string => {
    const f = join(tmp, `${name}.yaml`);
    writeFileSync(
      f,
      [
        `name: ${name}`,
        `outputDir: ${join(tmp, 'runs')}`,
        `model: {path: ${model}, maxSeqLen: 32}`,
        'task:',
        '  name: sst2',
        '  train: datasets/glue/SST-2/train.tsv',
        '  dev: datasets/glue/SST-2/dev.tsv',
        '  trainLimit: 128',
        '  devLimit: 8',
        ...task,
        'corpus: {paths: [datasets/corpus/tinyshakespeare], seqLen: 32}',
        'optim: {lr: 1.0e-3, batchSize: 8, maxSteps: 2, warmupRatio: 0}',
        'checkpoint: {every: 1, keepLast: 1}',
        'eval: {limit: 8}',
        ...extra,
        '',
      ].join('\n'),
    );
    return f;
  };

  it('train refuses a stage whose estimate exceeds the machine: exit 2, E_MEMORY naming the stage and the knobs, nothing written', () => {
    const huge = join(tmp, 'huge');
    mkdirSync(huge);
    writeFileSync(join(huge, 'config.json'), JSON.stringify(HUGE));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join('models/qwen3-tokenizer', f), join(huge, f));
    const cfg = config('huge-run', huge, ['stages: [teacher, bitnet-sft, continual-pretrain, distill]']);
    const r = cli('train', '--config', cfg, '--log-level', 'warn');
    expect(r.status, r.stderr).to.equal(2);
    expect(r.stderr).to.match(/error \[E_MEMORY\]: stage 'teacher' needs an estimated [\d.]+ GiB at its peak .* more than the [\d.]+ GiB of available memory/);
    expect(r.stderr).to.match(/no batch or length setting fits this model here/);
    for (const k of ['optim.batchSize=4 optim.gradAccum=2', 'model.maxSeqLen', 'optim.recompute=true', 'optim.lossChunkRows', '--no-memory-check'])
      expect(r.stderr).to.include(k);
    expect(r.stderr).to.not.match(/\n\s+at /);
    expect(existsSync(join(tmp, 'runs'))).to.equal(false); // no run folder, no config.resolved.yaml
  });

  it('validate prints the resolved config and the per-stage table; --json; no config.json: unavailable, exit 0', () => {
    const ok = cli('validate', '--config', 'configs/sst2-tiny.yaml');
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/^name: sst2-tiny$/m);
    expect(ok.stdout).to.include('# estimated peak memory per stage');
    for (const s of ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'])
      expect(ok.stdout).to.match(new RegExp(`^# ${s} +0\\.3M +16 x 64 x 1 +[\\d,]+`, 'm'));
    expect(ok.stdout).to.match(/^# available: [\d,]+ MiB \(MemAvailable; total [\d,]+ MiB\)$/m);
    expect(ok.stdout).to.match(/^# backend auto: no limit beyond RAM$/m);
    const wasm = cli('validate', '--config', 'configs/sst2-tiny.yaml', '--backend', 'wasm');
    expect(wasm.stdout).to.match(/^# backend wasm: tensors limited to the 4,096 MiB wasm32 heap$/m);
    const j = cli('validate', '--config', 'configs/sst2-tiny.yaml', '--json');
    expect(j.status, j.stderr).to.equal(0);
    const parsed = JSON.parse(j.stdout) as {
      config: { name: string };
      memory: { stages: { stage: string; totalMiB: number; weightsMiB: number }[]; availableMiB: number };
    };
    expect(parsed.config.name).to.equal('sst2-tiny');
    expect(parsed.memory.stages.map((s) => s.stage)).to.deep.equal(['teacher', 'bitnet-sft', 'continual-pretrain', 'distill']);
    expect(parsed.memory.availableMiB).to.be.greaterThan(0);
    const none = cli('validate', '--config', config('no-model', join(tmp, 'absent')));
    expect(none.status, none.stderr).to.equal(0);
    expect(none.stdout).to.match(/^# unavailable: model path '.*absent' does not exist/m);
  });

  it('the estimate is within 30% of the peak RSS of real short runs of a small model (7.6M params, vocab 30,522)', () => {
    const shape = readModelShape('models/small-base').shape as ModelShape;
    const cfg = config('measured', 'models/small-base', ['stages: [teacher, continual-pretrain]']);
    const { config: c } = loadConfig(cfg, []);
    for (const stage of ['teacher', 'continual-pretrain'] as StageName[]) {
      // One process per stage, as a fresh `train --stage` is: the estimate is of a stage's own process.
      const r = cli('train', '--config', cfg, '--stage', stage, '--log-level', 'warn');
      expect(r.status, r.stderr).to.equal(0);
      const rec = readFileSync(join(tmp, 'runs', 'measured', stage, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; peakRssMiB: number; backend: string; scope: string })
        .find((x) => x.type === 'memory');
      expect(rec, `${stage}: memory record`).to.not.equal(undefined);
      const m = rec as { peakRssMiB: number; backend: string; scope: string };
      const est = estimateStage(c, stage, shape, { backend: m.backend }).bytes.total / 2 ** 20;
      const ratio = est / m.peakRssMiB;
      if (process.env['BITDISTILL_MEMORY_RATIOS'] === '1')
        console.log(`      ${stage}: estimate ${Math.round(est)} MiB, measured ${m.peakRssMiB} MiB, ratio ${ratio.toFixed(2)}`);
      expect(ratio, `${stage} on ${m.backend}: estimate ${Math.round(est)} MiB, measured ${m.peakRssMiB} MiB (${m.scope})`).to.be.within(0.7, 1.3);
    }
  });

  it('each stage logs its own peak RSS into metrics.jsonl, the log and summary.json / summary.md', () => {
    const cfg = config('rss', 'models/stories260K', ['stages: [teacher]'], TINY_TASK);
    const r = cli('train', '--config', cfg, 'optim.maxSteps=1', '--log-level', 'info');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/teacher: peak RSS \d+ MiB/);
    expect(r.stderr).to.match(/estimated peak memory \d+ MiB/);
    const rec = readFileSync(join(tmp, 'runs', 'rss', 'teacher', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((x) => x['type'] === 'memory') as Record<string, unknown>;
    expect(rec).to.include.keys('peakRssMiB', 'processPeakRssMiB', 'rssMiB', 'scope', 'backend', 'steps');
    expect(rec['peakRssMiB']).to.be.a('number').and.be.greaterThan(50);
    const summary = JSON.parse(readFileSync(join(tmp, 'runs', 'rss', 'summary.json'), 'utf8')) as { stages: { stage: string; peakRssMiB: number | null }[] };
    expect(summary.stages[0]?.peakRssMiB).to.equal(rec['peakRssMiB']);
    expect(readFileSync(join(tmp, 'runs', 'rss', 'summary.md'), 'utf8')).to.match(/\| seconds \| peak RSS MiB \|/);
  });
});
