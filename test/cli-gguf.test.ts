// `bitdistill export --format gguf` through the real CLI: the refusal a user sees for shapes llama.cpp cannot
// take as TQ blocks, --allow-fallback naming the F16 tensors, --gguf-type tq1_0, and flag misuse; `generate`
// on an export (kernels runtime).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@bitdistill/backend';
import { readGguf } from '@bitdistill/format';
import { loadModel, saveModel } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { TernaryRuntime } from '@bitdistill/runtime';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['packages/cli/bin/bitdistill.js', ...args, '--log-level', 'warn'], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bitdistill export --format gguf (CLI)', function () {
  this.timeout(300_000);
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-cli-gguf-'));
  const ckpt = join(tmp, 'student');
  after(() => rmSync(tmp, { recursive: true, force: true }));

  before(async () => {
    await initBackend('wasm');
    const { model } = loadModel('models/stories260K');
    prepareStudent(model, { subln: 'standard', weightQuant: 'absmean' });
    await saveModel(model, ckpt, { tokenizerFrom: 'models/stories260K' });
    model.dispose();
  });

  it('refuses input dimensions that are not multiples of 256, saying which and what would work; writes nothing', () => {
    const out = join(tmp, 'a.gguf');
    const r = cli('export', '--ternary', '--format', 'gguf', '--from', ckpt, '--out', out);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/cannot be exported to GGUF for llama\.cpp's bitnet architecture/);
    expect(r.stderr).to.match(/model\.layers\.4\.mlp\.down_proj\.weight: input dimension 172 is not a multiple of 256/);
    expect(r.stderr).to.match(/hint: .*multiples of 256 \(--allow-fallback writes the other projections as F16\)/);
    expect(r.stderr).to.not.match(/\n\s+at /);
    expect(existsSync(out)).to.equal(false);
  });

  it('--allow-fallback writes them as F16 and lists them; general.file_type says F16 when no projection is ternary', () => {
    const out = join(tmp, 'b.gguf');
    const r = cli('export', '--ternary', '--format', 'gguf', '--gguf-type', 'tq1_0', '--allow-fallback', '--dtype', 'f16', '--from', ckpt, '--out', out);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/GGUF v3, llama\.cpp architecture bitnet, file type F16/);
    expect(r.stdout).to.match(/--allow-fallback: 35 projections written as F16/);
    expect(r.stdout).to.match(/model\.layers\.0\.self_attn\.q_proj\.weight: input dimension 64 is not a multiple of 256/);
    const g = readGguf(out);
    const ft = g.metadata.get('general.file_type');
    expect(ft?.type === 'uint32' && ft.value).to.equal(1); // MOSTLY_F16: all 35 projections are F16 fallbacks (issue 18)
    expect(g.tensors.find((t) => t.name === 'token_embd.weight')?.type).to.equal('F16');
    expect(g.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')?.type).to.equal('F32');
  });

  it('eval takes the .gguf file itself (kernels runtime); --runtime tfjs on it is refused with a hint', () => {
    const out = join(tmp, 'b.gguf'); // written by the previous test
    const r = cli('eval', '--model', out, '--task', 'sst2', '--limit', '8', '--json');
    expect(r.status, r.stderr).to.equal(0);
    const rep = JSON.parse(r.stdout) as { runtime: string; examples: number; value: number };
    expect(rep.runtime).to.equal('kernels');
    expect(rep.examples).to.equal(8);
    expect(rep.value).to.be.within(0, 1);
    const t = cli('eval', '--model', out, '--task', 'sst2', '--runtime', 'tfjs');
    expect(t.status).to.equal(2);
    expect(t.stderr).to.match(/only the kernels runtime reads GGUF/);
    expect(t.stderr).to.match(/hint: /);
  });

  it('flag misuse is a usage error with a hint', () => {
    const r = cli('export', '--format', 'gguf', '--hf-compat', '--from', ckpt, '--out', join(tmp, 'c.gguf'));
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/--hf-compat applies to the safetensors export/);
    const s = cli('export', '--dtype', 'f16', '--from', ckpt, '--out', join(tmp, 'd'));
    expect(s.status).to.equal(2);
    expect(s.stderr).to.match(/--dtype f16 is for --format gguf/);
  });

  it('generate runs an export on the kernels runtime (same text as the runtime in-process); --embeddings needs an export', () => {
    const out = join(tmp, 'e');
    expect(cli('export', '--ternary', '--from', ckpt, '--out', out).status).to.equal(0);
    const prompt = 'Once upon a time';
    for (const embeddings of ['fp32', 'int8'] as const) {
      const r = cli('generate', '--model', out, '--prompt', prompt, '--max-new-tokens', '12', '--embeddings', embeddings);
      expect(r.status, r.stderr).to.equal(0);
      const rt = TernaryRuntime.load(out, { embeddings });
      const ids = rt.tokenizer.encode(prompt, { addBos: rt.tokenizer.bosId !== null });
      const want = rt.tokenizer.decode([...ids, ...rt.generate(ids, 12).ids]);
      expect(r.stdout.trim(), embeddings).to.equal(want.trim());
      expect(r.stdout.length).to.be.greaterThan(prompt.length);
    }
    const bad = cli('generate', '--model', 'models/stories260K', '--prompt', prompt, '--embeddings', 'int8');
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.match(/--embeddings applies to exports/);
    expect(bad.stderr).to.match(/hint: /);
  });
});
