// The uniform model soup (soupCheckpoints): the elementwise mean of every tensor, and checkpoints that do not
// fit each other (architecture, tensor names, shapes, packed exports) refused with the first mismatch named.
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArgumentError, BitDistillError, FormatError, Rng, UnsupportedError } from '@bitdistill/core';
import { f32ArrayToBf16, readSafetensors, tensorToFloat32, writeSafetensors, type TensorEntry } from '@bitdistill/format';
import { expectedTensorShapes, parseDecoderConfig } from '@bitdistill/arch';
import { TINY_LLAMA } from '../../format/test/fixtures.ts';
import { soupCheckpoints } from '../src/soup.ts';

function tensors(seed: number, config: Record<string, unknown> = TINY_LLAMA): Map<string, TensorEntry> {
  const rng = new Rng(seed);
  const t = new Map<string, TensorEntry>();
  for (const [name, shape] of expectedTensorShapes(parseDecoderConfig(config, 'config.json')))
    t.set(name, { dtype: 'F32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()) });
  return t;
}

describe('soupCheckpoints (uniform model soup)', () => {
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-soup-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;

  function checkpoint(t: Map<string, TensorEntry>, config: Record<string, unknown> = TINY_LLAMA): string {
    const dir = join(root, `ckpt-${n++}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt' });
    copyFileSync('models/stories260K/tokenizer.bin', join(dir, 'tokenizer.bin'));
    return dir;
  }

  function refused(models: string[], type: new (...a: never[]) => BitDistillError, pattern: RegExp): void {
    try {
      soupCheckpoints({ models, out: join(root, `out-${n++}`) });
      expect.fail('the soup was made');
    } catch (e) {
      expect(e).to.be.instanceOf(type);
      expect((e as Error).message).to.match(pattern);
      expect((e as BitDistillError).hint).to.be.a('string');
    }
  }

  it('every tensor is the elementwise mean (two and three checkpoints, a BF16 one among them); config and tokenizer from the first', () => {
    const [ta, tb, tc] = [tensors(1), tensors(2), tensors(3)];
    const bf = new Map([...tc].map(([k, v]) => [k, { dtype: 'BF16', shape: v.shape, data: f32ArrayToBf16(v.data as Float32Array) } as TensorEntry]));
    const a = checkpoint(ta, { ...TINY_LLAMA, bitdistill: { subln: 'none', ptq: { method: 'rtn', bits: 4, group: null }, finalEval: { value: 0.5 } } });
    const b = checkpoint(tb);
    const c = checkpoint(bf);
    for (const models of [
      [a, b],
      [a, b, c],
    ]) {
      const out = join(root, `soup-${models.length}`);
      const r = soupCheckpoints({ models, out });
      expect(r.models).to.deep.equal(models);
      expect(r.tensors).to.equal(ta.size);
      const got = readSafetensors(join(out, 'model.safetensors')).tensors;
      const inputs = models.map((m) => readSafetensors(join(m, 'model.safetensors')).tensors);
      for (const [name, t] of ta) {
        const g = got.get(name);
        expect(g?.dtype, name).to.equal('F32');
        expect(g?.shape).to.deep.equal(t.shape);
        const values = inputs.map((i) => tensorToFloat32(i.get(name) as TensorEntry));
        const gv = g?.data as Float32Array;
        for (let i = 0; i < gv.length; i++) {
          const mean = values.reduce((s, v) => s + (v[i] as number), 0) / values.length;
          expect(gv[i], `${name}[${i}]`).to.equal(Math.fround(mean));
        }
      }
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { hidden_size: number; bitdistill: Record<string, unknown> };
      expect(config.hidden_size).to.equal(TINY_LLAMA['hidden_size']);
      expect(config.bitdistill['soup']).to.deep.equal({ method: 'uniform', models });
      expect(config.bitdistill).to.not.have.property('ptq'); // the mean is off the first checkpoint's PTQ grid
      expect(config.bitdistill).to.not.have.property('finalEval');
      expect(existsSync(join(out, 'tokenizer.bin'))).to.equal(true);
    }
    // a soup of one checkpoint with itself is that checkpoint
    const self = join(root, 'self');
    soupCheckpoints({ models: [b, b], out: self });
    const back = readSafetensors(join(self, 'model.safetensors')).tensors;
    for (const [name, t] of tb) expect(Array.from(back.get(name)?.data as Float32Array)).to.deep.equal(Array.from(t.data as Float32Array));
  });

  it('a tensor of another shape, a missing or an extra tensor: FormatError naming the tensor and the file', () => {
    const a = checkpoint(tensors(1));
    const bent = tensors(2);
    bent.set('model.norm.weight', { dtype: 'F32', shape: [2, 8], data: new Float32Array(16) });
    refused([a, checkpoint(bent)], FormatError, /ckpt-\d+\/model\.safetensors: tensor 'model\.norm\.weight' is \[2, 8\], in .* \[16\]/);
    const missing = tensors(2);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    refused([a, checkpoint(missing)], FormatError, /tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing/);
    const extra = tensors(2);
    extra.set('lm_head.weight', { dtype: 'F32', shape: [512, 16], data: new Float32Array(512 * 16) });
    refused([a, checkpoint(extra)], FormatError, /tensor 'lm_head\.weight' is not in/);
  });

  it('another architecture or student record: FormatError naming the key; a packed export, one model, --out an input: refused', () => {
    const a = checkpoint(tensors(1));
    const wide = { ...TINY_LLAMA, rope_theta: 500000 };
    refused([a, checkpoint(tensors(2), wide)], FormatError, /config\.json: rope_theta is 500000, .* has 10000/);
    const student = { ...TINY_LLAMA, bitdistill: { subln: 'none', weightQuant: 'absmean' } };
    refused([a, checkpoint(tensors(2), student)], FormatError, /bitdistill\.weightQuant is "absmean", .* has null/);
    refused([a, checkpoint(tensors(2), { ...TINY_LLAMA, quantization_config: { quant_method: 'bitnet' } })], UnsupportedError, /packed export/);
    refused([a], ArgumentError, /1 checkpoint given/);
    expect(() => soupCheckpoints({ models: [a, checkpoint(tensors(2))], out: a })).to.throw(ArgumentError, /is or holds one of the checkpoints/);
    expect(() => soupCheckpoints({ models: [a, checkpoint(tensors(2))], out: root })).to.throw(ArgumentError, /is or holds one of the checkpoints/);
    const nan = tensors(2);
    (nan.get('model.norm.weight')?.data as Float32Array)[3] = Number.NaN;
    refused([a, checkpoint(nan)], FormatError, /tensor 'model\.norm\.weight': the mean at index 3 is NaN/);
  });
});
