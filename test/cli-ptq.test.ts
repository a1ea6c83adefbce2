// `bitdistill quantize` and `bitdistill soup` on the bundled tiny model (models/stories260K, the base of
// configs/sst2-tiny.yaml), through the real CLI from its TypeScript sources.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors } from '@bitdistill/format';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args, '--log-level', 'warn'], {
    encoding: 'utf8',
    env: { ...process.env, BITDISTILL_CLI_FROM_SOURCE: '1' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Report {
  method: string;
  bits: number;
  group: number | null;
  projections: number;
  weightRelErr: { mean: number; max: number; maxAt: string };
  outputRelErr: { mean: number; max: number } | null;
  heldout: { sequences: number; seqLen: number; tokens: number };
  nllBefore: number;
  nllAfter: number;
  nllIncrease: number;
  perProjection: { name: string; shape: [number, number]; weightRelErr: number; outputRelErr: number | null }[];
}

describe('bitdistill quantize and soup on stories260K', function () {
  this.timeout(120_000);
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-ptq-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  // small sets keep each run to a few seconds (most of it loading tfjs)
  const sets = ['--calib-seqs', '8', '--heldout-seqs', '8', '--seq-len', '64', '--json'];
  const reports = new Map<string, Report>();

  function quantize(name: string, ...args: string[]): Report {
    const r = cli('quantize', '--model', 'models/stories260K', '--out', join(tmp, name), ...args, ...sets);
    expect(r.status, r.stderr).to.equal(0);
    const report = JSON.parse(r.stdout) as Report;
    reports.set(name, report);
    return report;
  }

  it('rtn and gptq at 4 bits, gptq at 3 bits with groups of 128: finite reports, 35 projections, the same held-out NLL before', () => {
    const rtn4 = quantize('rtn4', '--method', 'rtn', '--bits', '4');
    const gptq4 = quantize('gptq4', '--method', 'gptq', '--bits', '4', '--group', '128');
    const gptq3 = quantize('gptq3', '--method', 'gptq', '--bits', '3', '--group', '128');
    for (const r of [rtn4, gptq4, gptq3]) {
      expect(r.projections).to.equal(35);
      expect(r.perProjection).to.have.length(35);
      expect(r.heldout).to.include({ sequences: 8, seqLen: 64, tokens: 512 });
      for (const v of [r.nllBefore, r.nllAfter, r.weightRelErr.mean, r.weightRelErr.max])
        expect(Number.isFinite(v) && v > 0, `${r.method} ${r.bits}: ${v}`).to.equal(true);
      expect(r.nllIncrease).to.be.closeTo(r.nllAfter - r.nllBefore, 1e-12);
      expect(r.nllBefore).to.equal(rtn4.nllBefore); // one seed, one held-out set for every method
    }
    expect(rtn4.outputRelErr).to.equal(null);
    expect(Number.isFinite(gptq4.outputRelErr?.mean)).to.equal(true);
    expect(gptq4.weightRelErr.mean, '4-bit vs 3-bit weight error').to.be.below(gptq3.weightRelErr.mean);
    expect(gptq4.perProjection.find((p) => p.name === 'model.layers.0.mlp.down_proj.weight')?.shape).to.deep.equal([64, 172]);
  });

  it('the outputs are checkpoints: config.json records the PTQ, the tokenizer is copied, loadModel runs them', async () => {
    await (await import('@bitdistill/backend')).initBackend('cpu');
    const { loadModel, lmNll } = await import('@bitdistill/model');
    for (const name of ['rtn4', 'gptq4']) {
      const dir = join(tmp, name);
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { bitdistill: { ptq: { method: string; bits: number; group: number | null } } };
      const rep = reports.get(name) as Report;
      expect(cfg.bitdistill.ptq).to.include({ method: rep.method, bits: 4, group: rep.group });
      expect(existsSync(join(dir, 'tokenizer.bin'))).to.equal(true);
      const { model } = loadModel(dir, { trainable: false });
      // every row of a per-row 4-bit projection holds at most 16 distinct values
      if (name === 'rtn4') {
        const w = model.param('model.layers.2.self_attn.v_proj.weight').dataSync();
        for (let r = 0; r < 32; r++) expect(new Set(w.subarray(r * 64, r * 64 + 64)).size).to.be.at.most(16);
      }
      const { nll } = lmNll(model, [Int32Array.from({ length: 33 }, (_, i) => (i * 37) % 512)]);
      expect(Number.isFinite(nll)).to.equal(true);
      model.dispose();
    }
  });

  it("a training stage's finalEval is not carried over to the quantized model (it was the source's)", () => {
    const teacher = join(tmp, 'teacher');
    mkdirSync(teacher);
    const config = JSON.parse(readFileSync('models/stories260K/config.json', 'utf8')) as Record<string, unknown>;
    writeFileSync(join(teacher, 'config.json'), JSON.stringify({ ...config, bitdistill: { stage: 'teacher', finalEval: { metric: 'accuracy', value: 0.6 } } }));
    for (const f of ['model.safetensors', 'tokenizer.bin']) copyFileSync(join('models/stories260K', f), join(teacher, f));
    const r = cli('quantize', '--model', teacher, '--out', join(tmp, 'teacher-rtn'), '--method', 'rtn', '--calib-seqs', '1', '--heldout-seqs', '1');
    expect(r.status, r.stderr).to.equal(0);
    const block = (JSON.parse(readFileSync(join(tmp, 'teacher-rtn', 'config.json'), 'utf8')) as { bitdistill: Record<string, unknown> }).bitdistill;
    expect(block).to.include({ stage: 'teacher' });
    expect(block).to.have.property('ptq');
    expect(block).to.not.have.property('finalEval');
  });

  it('soup of the base and its 4-bit RTN copy is their elementwise mean; a model of another shape is refused', () => {
    const out = join(tmp, 'soup');
    const r = cli('soup', '--model', 'models/stories260K', '--model', join(tmp, 'rtn4'), '--out', out);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/souped 2 checkpoints .* 47 tensors, 260,032 parameters/);
    const a = readSafetensors('models/stories260K/model.safetensors').tensors;
    const b = readSafetensors(join(tmp, 'rtn4', 'model.safetensors')).tensors;
    const s = readSafetensors(join(out, 'model.safetensors')).tensors;
    for (const [name, t] of s) {
      const x = a.get(name)?.data as Float32Array;
      const y = b.get(name)?.data as Float32Array;
      (t.data as Float32Array).forEach((v, i) => expect(v, `${name}[${i}]`).to.equal(Math.fround(((x[i] as number) + (y[i] as number)) / 2)));
    }
    const bad = cli('soup', '--model', 'models/stories260K', '--model', 'models/small-base', '--out', join(tmp, 'bad'));
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.match(
      /error \[E_FORMAT\]: models\/small-base\/config\.json: vocab_size is 30522, .* has 512: the checkpoints are not one architecture/,
    );
    expect(bad.stderr).to.match(/hint: /);
  });

  it('a ternary student and a packed export are refused before anything loads; so is --model given twice to quantize', () => {
    const student = join(tmp, 'student');
    mkdirSync(student);
    const config = JSON.parse(readFileSync('models/stories260K/config.json', 'utf8')) as Record<string, unknown>;
    writeFileSync(join(student, 'config.json'), JSON.stringify({ ...config, bitdistill: { subln: 'allnorm', weightQuant: 'absmean' } }));
    const r = cli('quantize', '--model', student, '--out', join(tmp, 'q'));
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/error \[E_UNSUPPORTED\]: .*a ternary student \(bitdistill\.weightQuant "absmean"\); PTQ is for full-precision checkpoints/);
    expect(r.stderr).to.match(/hint: export the student/);
    const e = cli('quantize', '--model', 'test/fixtures/tiny-bitnet-hf', '--out', join(tmp, 'q'));
    expect(e.stderr).to.match(/is a packed export/);
    const twice = cli('quantize', '--model', 'models/stories260K', '--model', student, '--out', join(tmp, 'q'));
    expect(twice.status).to.equal(2);
    expect(twice.stderr).to.match(/--model was given 2 times/);
  });
});
