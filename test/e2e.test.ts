// The whole user path with the real CLI: train (four stages) -> export --ternary -> eval (kernels runtime),
// and eval of the same student through tfjs; both evaluations must agree.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args, '--log-level', 'warn'], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface EvalJson {
  task: string;
  split: string;
  metric: string;
  value: number;
  examples: number;
  runtime: string;
  tokensPerSecond: number;
}

describe('end to end: train -> export -> eval', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-e2e-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const run = join(root, 'runs', 'e2e-tiny');

  it('train runs all four stages and writes the summary', () => {
    const r = cli('train', '--config', 'test/configs/e2e-tiny.yaml', `outputDir=${join(root, 'runs')}`);
    expect(r.status, r.stderr).to.equal(0);
    for (const stage of ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'])
      expect(existsSync(join(run, stage, 'final', 'model.safetensors')), stage).to.equal(true);
    expect(r.stdout).to.match(/\| teacher \| FP-SFT \(teacher\) \| accuracy \|/);
    expect(r.stdout).to.match(/\| distill \| BitDistill \| accuracy \|/);
    const summary = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')) as { stages: { stage: string; value: number | null }[] };
    expect(summary.stages.map((s) => s.stage)).to.deep.equal(['teacher', 'bitnet-sft', 'continual-pretrain', 'distill']);
    const distill = readFileSync(join(run, 'distill', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(distill[0]).to.include.keys('ce', 'logitKd', 'attnKd', 'lr', 'gradNorm', 'tokensPerSecond');
    // A second train skips every finished stage.
    const again = cli('train', '--config', 'test/configs/e2e-tiny.yaml', `outputDir=${join(root, 'runs')}`);
    expect(again.status, again.stderr).to.equal(0);
    expect(readFileSync(join(run, 'summary.json'), 'utf8')).to.include('skipped (final exists)');
  });

  it('export --ternary writes the HF BitNet layout and is smaller than bf16', () => {
    const out = join(root, 'export');
    const r = cli('export', '--ternary', '--from', join(run, 'distill'), '--out', out);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/35 ternary projections/);
    const ratio = Number(/\(([0-9.]+)x larger\)/.exec(r.stdout)?.[1]);
    expect(ratio).to.be.greaterThan(1.5); // fp32 embeddings dominate this tiny model; the projections shrink 16x
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(cfg['quantization_config']).to.deep.equal({ quant_method: 'bitnet', linear_class: 'autobitlinear', quantization_mode: 'offline' });
    expect(cfg['bitdistill']).to.include({ subln: 'allnorm', weightQuant: 'absmean', task: 'sst2', templateVersion: 'tiny-v1' });
    // A teacher is not a student: exporting it is refused before anything is written.
    const t = cli('export', '--ternary', '--from', join(run, 'teacher'), '--out', join(root, 'teacher-export'));
    expect(t.status).to.not.equal(0);
    expect(t.stderr).to.match(/not a ternary student/);
    expect(existsSync(join(root, 'teacher-export'))).to.equal(false);
  });

  it('eval --json on the export (kernels) agrees with eval of the checkpoint (tfjs) within 0.5 points', () => {
    const k = cli('eval', '--model', join(root, 'export'), '--task', 'sst2', '--json', '--limit', '200', '--max-len', '48');
    expect(k.status, k.stderr).to.equal(0);
    const kj = JSON.parse(k.stdout) as EvalJson;
    expect(kj).to.include({ task: 'sst2', split: 'dev', metric: 'accuracy', examples: 200, runtime: 'kernels' });
    expect(kj.tokensPerSecond).to.be.greaterThan(0);
    const t = cli('eval', '--model', join(run, 'distill', 'final'), '--task', 'sst2', '--json', '--limit', '200', '--max-len', '48', '--backend', 'wasm');
    expect(t.status, t.stderr).to.equal(0);
    const tj = JSON.parse(t.stdout) as EvalJson;
    expect(tj.runtime).to.equal('tfjs');
    expect(Math.abs(kj.value - tj.value)).to.be.at.most(0.005);
    // --min-metric gates CI: above 1.0 is impossible, so this must fail with status 1.
    const gate = cli('eval', '--model', join(root, 'export'), '--task', 'sst2', '--json', '--limit', '20', '--min-metric', '1.01');
    expect(gate.status).to.equal(1);
  });

  it('eval refuses an unknown task and a data file without the task columns', () => {
    const u = cli('eval', '--model', join(root, 'export'), '--task', 'nosuch');
    expect(u.status).to.not.equal(0);
    expect(u.stderr).to.match(/nosuch/);
    const c = cli('eval', '--model', join(root, 'export'), '--task', 'sst2', '--data', 'datasets/glue/QNLI/dev.tsv');
    expect(c.status).to.not.equal(0);
    expect(c.stderr).to.match(/QNLI\/dev.tsv/);
  });
});
