// The real `bitdistill` CLI, run as a user would: outputs, exit codes, and the messages bad input gets.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user-facing error: one message and a hint, no stack trace. */
function expectCleanError(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  expect(r.status).to.not.equal(0);
  expect(r.stderr).to.match(pattern);
  expect(r.stderr).to.match(/hint: /);
  expect(r.stderr).to.not.match(/\n\s+at /);
}

describe('bitdistill CLI', function () {
  this.timeout(120_000);
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-cli-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--help lists the commands', () => {
    const r = cli('--help');
    expect(r.status).to.equal(0);
    for (const c of ['generate', 'info', 'validate', 'train', 'import', 'quantize', 'soup']) expect(r.stdout).to.include(c);
  });

  it('generate prints the Lily story for "Once upon a time"', () => {
    const r = cli('generate', '--model', 'models/stories260K', '--prompt', 'Once upon a time', '--max-new-tokens', '40', '--log-level', 'warn');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.include('Once upon a time, there was a little girl named Lily. She loved to play outside in the park.');
  });

  it('info prints the architecture, parameter count and shapes; --student marks ternary tensors and SubLN gains', () => {
    const r = cli('info', '--model', 'models/stories260K', '--log-level', 'warn');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.include('parameters: 260,032'); // 264,128 floats in the .bin minus the 4,096 of unused RoPE tables
    expect(r.stdout).to.match(/model\.layers\.0\.self_attn\.q_proj\.weight\s+\[64, 64\]/);
    const s = cli('info', '--model', 'models/stories260K', '--student', 'subln=standard', '--log-level', 'warn');
    expect(s.status, s.stderr).to.equal(0);
    expect(s.stdout).to.match(/model\.layers\.0\.mlp\.down_proj\.weight\s+\[64, 172\]\s+ternary/);
    expect(s.stdout).to.match(/model\.layers\.0\.mlp\.ffn_sub_norm\.weight\s+\[172\]\s+SubLN gain/);
    expect(s.stdout).to.match(/student: 35 ternary projections/);
  });

  it('validate prints the resolved config, and every problem with its path (exit 2)', () => {
    const ok = cli('validate', '--config', 'configs/sst2-tiny.yaml', 'optim.lr=1e-4');
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/lr: 0.0001/);
    const bad = join(tmp, 'bad.yaml');
    writeFileSync(
      bad,
      'name: x\nmodel: {path: m}\ntask: {name: sst2, train: a, dev: b}\noptim: {learning_rat: 1, lr: -1, schedule: triangle}\nstages: [teacher, teacher]\n',
    );
    const r = cli('validate', '--config', bad);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.include('optim.learning_rat');
    expect(r.stderr).to.match(/did you mean 'optim\.lr'|did you mean 'lr'/);
    expect(r.stderr).to.include('optim.lr');
    expect(r.stderr).to.include('optim.schedule');
    expect(r.stderr).to.match(/stages/);
    expect(r.stderr).to.not.match(/\n\s+at /);
  });

  it('a missing model folder, a folder without config.json, an unsupported architecture: one clear message each', () => {
    expectCleanError(cli('info', '--model', join(tmp, 'nope')), /does not exist/);
    mkdirSync(join(tmp, 'empty'));
    expectCleanError(cli('info', '--model', join(tmp, 'empty')), /expected config\.json in/);
    const gpt = join(tmp, 'gpt2');
    mkdirSync(gpt);
    writeFileSync(join(gpt, 'config.json'), JSON.stringify({ model_type: 'gpt2', n_embd: 8 }));
    expectCleanError(cli('info', '--model', gpt), /unsupported architecture model_type="gpt2"/);
  });

  it('a truncated weights file and a tokenizer that does not fit the model are refused with the file named', () => {
    const t = join(tmp, 'trunc');
    mkdirSync(t);
    copyFileSync('models/stories260K/config.json', join(t, 'config.json'));
    copyFileSync('models/stories260K/tokenizer.bin', join(t, 'tokenizer.bin'));
    const bytes = readFileSync('models/stories260K/model.safetensors');
    writeFileSync(join(t, 'model.safetensors'), bytes.subarray(0, bytes.length - 1000));
    expectCleanError(cli('info', '--model', t), /model\.safetensors/);
    const v = join(tmp, 'vocab');
    mkdirSync(v);
    copyFileSync('test/fixtures/tiny-qwen3/model.safetensors', join(v, 'model.safetensors'));
    const cfg = JSON.parse(readFileSync('test/fixtures/tiny-qwen3/config.json', 'utf8')) as Record<string, unknown>;
    writeFileSync(join(v, 'config.json'), JSON.stringify({ ...cfg, vocab_size: 256 }));
    copyFileSync('models/stories260K/tokenizer.bin', join(v, 'tokenizer.bin'));
    expectCleanError(cli('info', '--model', v), /tokenizer has 512 tokens but the model's vocab_size is 256|does not belong|shape/);
  });

  it('an unknown command is a usage error (exit 2)', () => {
    const r = cli('frobnicate');
    expect(r.status).to.equal(2);
  });
});
