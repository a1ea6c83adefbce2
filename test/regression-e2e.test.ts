// Issue 20 through the real CLI: STS-B (regression) and a config-defined regression task train, export and
// evaluate from a config alone on stories260K, in label and generate modes, on the kernels runtime and tfjs;
// eval reads the task from the model; and each failure the issue listed is now a clear error.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args, '--log-level', 'warn'], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface EvalJson {
  task: string;
  metric: string;
  value: number;
  metrics: Record<string, number>;
  examples: number;
  runtime: string;
  mode: string;
  templateVersion: string;
  templateFrom: string;
}

const json = (s: string): EvalJson => JSON.parse(s) as EvalJson;

describe('regression and custom tasks end to end (real CLI)', function () {
  this.timeout(300_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-regression-'));
  const runs = join(root, 'runs');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('STS-B with a changed template: validate, train (generate-mode stage eval), export', () => {
    const v = cli('validate', '--config', 'test/configs/stsb-tiny.yaml');
    expect(v.status, v.stderr).to.equal(0);
    const t = cli('train', '--config', 'test/configs/stsb-tiny.yaml', `outputDir=${runs}`);
    expect(t.status, t.stderr).to.equal(0);
    expect(t.stdout).to.match(/\| bitnet-sft \| BitNet-SFT \| pearson \| .* \| pearson -?\d+\.\d\d, spearman -?\d+\.\d\d \|/);
    const summary = JSON.parse(readFileSync(join(runs, 'stsb-tiny', 'summary.json'), 'utf8')) as { stages: { metrics: Record<string, number> }[] };
    expect(Object.keys(summary.stages[0]?.metrics ?? {})).to.deep.equal(['pearson', 'spearman']);
    const records = readFileSync(join(runs, 'stsb-tiny', 'bitnet-sft', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.find((r) => r['type'] === 'eval')?.['metrics']).to.have.keys('pearson', 'spearman');
    const e = cli('export', '--ternary', '--from', join(runs, 'stsb-tiny', 'bitnet-sft'), '--out', join(root, 'stsb-export'));
    expect(e.status, e.stderr).to.equal(0);
  });

  it('eval reads task, template and buckets from the export: label and generate modes, kernels and tfjs', () => {
    const out = join(root, 'stsb-export');
    const label = json(cli('eval', '--model', out, '--data', 'packages/data/test/fixtures/glue/STS-B/dev.tsv', '--json').stdout);
    expect(label).to.include({
      task: 'stsb',
      metric: 'pearson',
      examples: 5,
      runtime: 'kernels',
      mode: 'label',
      templateVersion: 'tiny-v1',
      templateFrom: 'model',
    });
    expect(Object.keys(label.metrics)).to.deep.equal(['pearson', 'spearman']);
    const gen = cli('eval', '--model', out, '--task', 'stsb', '--data', 'packages/data/test/fixtures/glue/STS-B/dev.tsv', '--mode', 'generate', '--json');
    expect(gen.status, gen.stderr).to.equal(0);
    expect(Number.isFinite(json(gen.stdout).metrics['spearman'])).to.equal(true);
    const tfjs = cli(
      'eval',
      '--model',
      join(runs, 'stsb-tiny', 'bitnet-sft', 'final'),
      '--data',
      'packages/data/test/fixtures/glue/STS-B/dev.tsv',
      '--json',
      '--backend',
      'wasm',
    );
    expect(tfjs.status, tfjs.stderr).to.equal(0);
    const tj = json(tfjs.stdout);
    expect(tj.runtime).to.equal('tfjs');
    // The same student, fake-quantized in tfjs vs packed on the kernels: expected scores agree closely.
    expect(Math.abs((tj.metrics['pearson'] as number) - (label.metrics['pearson'] as number))).to.be.below(0.05);
  });

  it('--task naming another task is a usage error (exit 2) unless --template-from builtin says so', () => {
    const out = join(root, 'stsb-export');
    const wrong = cli('eval', '--model', out, '--task', 'wnli', '--data', 'packages/data/test/fixtures/glue/WNLI/dev.tsv');
    expect(wrong.status).to.equal(2);
    expect(wrong.stderr)
      .to.match(/--task wnli, but the model was trained for 'stsb'/)
      .and.match(/--template-from builtin/);
    const builtin = cli(
      'eval',
      '--model',
      out,
      '--task',
      'wnli',
      '--template-from',
      'builtin',
      '--data',
      'packages/data/test/fixtures/glue/WNLI/dev.tsv',
      '--json',
    );
    expect(builtin.status, builtin.stderr).to.equal(0);
    expect(json(builtin.stdout)).to.include({ task: 'wnli', templateVersion: 'v1', templateFrom: 'builtin' });
  });

  it('a config-defined regression task trains and evaluates, from the model alone or with eval --config', () => {
    const t = cli('train', '--config', 'test/configs/similarity-custom.yaml', `outputDir=${runs}`);
    expect(t.status, t.stderr).to.equal(0);
    const ckpt = join(runs, 'similarity-custom', 'bitnet-sft', 'final');
    const viaModel = cli('eval', '--model', ckpt, '--data', 'packages/data/test/fixtures/glue/STS-B/dev.tsv', '--json', '--backend', 'wasm');
    expect(viaModel.status, viaModel.stderr).to.equal(0);
    const viaConfig = cli('eval', '--model', ckpt, '--config', 'test/configs/similarity-custom.yaml', '--json', '--backend', 'wasm', '--mode', 'generate');
    expect(viaConfig.status, viaConfig.stderr).to.equal(0);
    for (const r of [json(viaModel.stdout), json(viaConfig.stdout)]) {
      expect(r).to.include({ task: 'similarity-custom', metric: 'spearman', examples: 5 });
      expect(Object.keys(r.metrics)).to.deep.equal(['spearman', 'pearson']);
    }
  });

  it('validate refuses a wrong data path, a header-only dev file and a broken regression task, all at once (exit 2)', () => {
    const dev = join(root, 'header-only.tsv');
    writeFileSync(dev, 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n');
    const r = cli('validate', '--config', 'test/configs/stsb-tiny.yaml', 'task.train=nowhere/train.tsv', `task.dev=${dev}`, 'task.labelWords=[low, high]');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/task.labelWords\[0\]: 'low' must be a number/);
    const d = cli('validate', '--config', 'test/configs/stsb-tiny.yaml', 'task.train=nowhere/train.tsv', `task.dev=${dev}`);
    expect(d.status).to.equal(2);
    expect(d.stderr)
      .to.match(/task.train: dataset file not found: nowhere\/train.tsv/)
      .and.match(/task.dev: .*holds no examples/);
    // train refuses the same before anything trains: no stage folder is written.
    const tr = cli('train', '--config', 'test/configs/stsb-tiny.yaml', `outputDir=${join(root, 'refused')}`, `task.dev=${dev}`);
    expect(tr.status).to.equal(2);
    expect(() => readFileSync(join(root, 'refused', 'stsb-tiny', 'bitnet-sft', 'metrics.jsonl'))).to.throw();
  });

  it('a repeated single-value option is a usage error (exit 2), not a crash', () => {
    const r = cli('eval', '--model', 'a', '--model', 'b', '--task', 'sst2');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/--model was given 2 times/);
    expect(r.stderr).to.not.match(/internal error/);
  });
});
