import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { PROJECTIONS, projectionName, WEIGHT_QUANT_MODES } from '@bitdistill/arch';
import { readFileSync } from 'node:fs';
import { initDecoder, loadModel, type Decoder } from '@bitdistill/model';
import { prepareStudent, describeStudent, ternaryQuant, restoreStudent } from '@bitdistill/quant';
import { studentRecord } from '../src/student.ts';

const IDS = [
  [1, 403, 407, 261, 378, 300, 42, 17],
  [1, 65, 66, 67, 68, 69, 70, 71],
];

function logitsOf(model: Decoder): Float32Array {
  return tf.tidy(() => model.forward(tf.tensor2d(IDS, [2, 8], 'int32')).logits.dataSync() as Float32Array);
}

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`prepareStudent on stories260K (${backend})`, () => {
    before(async () => {
      await initBackend(backend);
    });

    it("with subln 'none' and quantization off, the student reproduces the teacher's logits exactly", () => {
      const teacher = loadModel('models/stories260K', { trainable: false }).model;
      const student = loadModel('models/stories260K').model;
      const report = prepareStudent(student, { subln: 'none', weightQuant: 'absmean', quantize: false });
      expect(report.quantized).to.have.length(5 * 7);
      expect(report.sublnAdded).to.have.length(0);
      const a = logitsOf(teacher);
      const b = logitsOf(student);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).to.equal(true);
      teacher.dispose();
      student.dispose();
    });

    it('leaves the JSON its config came from untouched: a teacher built from the same object has no SubLN', () => {
      const arch = JSON.parse(readFileSync('models/stories260K/config.json', 'utf8')) as Record<string, unknown>;
      const student = initDecoder(arch, 1);
      prepareStudent(student, { subln: 'allnorm', weightQuant: 'absmean' });
      expect(student.config.subln).to.equal('allnorm');
      expect(arch['bitdistill']).to.equal(undefined);
      const teacher = initDecoder(arch, 2);
      expect(teacher.config.subln).to.equal('none');
      expect([...teacher.params.keys()].filter((n) => n.includes('sub_norm'))).to.have.length(0);
      student.dispose();
      teacher.dispose();
    });

    it('inserts SubLN gains (ones) with stable names: standard = 2 per layer, allnorm = 7 per layer', () => {
      const m = loadModel('models/stories260K').model;
      const std = prepareStudent(m, { subln: 'standard', weightQuant: 'absmean' });
      expect(std.sublnAdded).to.have.length(10);
      expect(std.sublnAdded).to.include('model.layers.0.self_attn.attn_sub_norm.weight');
      expect(std.sublnAdded).to.include('model.layers.4.mlp.ffn_sub_norm.weight');
      const all = prepareStudent(m, { subln: 'allnorm', weightQuant: 'absmean' });
      expect(all.sublnAdded).to.have.length(25); // the 10 standard gains are kept, 5 more per layer
      expect([...m.param('model.layers.0.self_attn.q_sub_norm.weight').dataSync()].every((v) => v === 1)).to.equal(true);
      const roles = describeStudent(m);
      expect(roles.filter((r) => r.role === 'subln')).to.have.length(35);
      expect(roles.filter((r) => r.role === 'quantized')).to.have.length(35);
      expect(roles.find((r) => r.name === 'model.embed_tokens.weight')?.role).to.equal('full-precision');
      m.dispose();
    });

    it('with quantization on, every quantized weight takes at most three values per scale group', () => {
      const m = loadModel('models/stories260K').model;
      for (const mode of WEIGHT_QUANT_MODES) {
        prepareStudent(m, { subln: 'standard', weightQuant: mode });
        for (let l = 0; l < m.config.numLayers; l++) {
          for (const proj of PROJECTIONS) {
            const w = m.param(`${projectionName(l, proj)}.weight`);
            const q = tf.tidy(() => ternaryQuant(w, mode).dataSync());
            const cols = w.shape[1] as number;
            const group = mode === 'absmean' ? q.length : mode === 'perRow' ? cols : 256;
            for (let s = 0; s < q.length; s += group) {
              const vals = new Set(q.subarray(s, Math.min(q.length, s + group)));
              expect(vals.size).to.be.at.most(3);
              const abs = new Set([...vals].map(Math.abs));
              abs.delete(0);
              expect(abs.size).to.be.at.most(1);
            }
          }
        }
      }
      m.dispose();
    });

    it(`forward + backward reaches every parameter, and the tensor count stays flat over ${backend === 'wasm' ? 50 : 10} steps`, () => {
      const m = loadModel('models/stories260K').model;
      prepareStudent(m, { subln: 'standard', weightQuant: 'absmean' });
      const ids = tf.tensor2d(IDS, [2, 8], 'int32');
      const vars = [...m.params.values()];
      const step = () =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const { logits } = m.forward(ids, { captureLayers: [3] });
            return tf.mean(tf.square(logits)) as tf.Scalar;
          }, vars);
          for (const v of vars) {
            const g = grads[v.name] as tf.Tensor;
            v.assign(tf.sub(v, tf.mul(g, 1e-4)));
          }
          return value.dataSync()[0] as number;
        });
      const first = step();
      expect(Number.isFinite(first)).to.equal(true);
      const { grads } = tf.tidy(() => tf.variableGrads(() => tf.mean(tf.square(m.forward(ids).logits)) as tf.Scalar, vars));
      for (const v of vars)
        expect(
          tf.tidy(() => tf.sum(tf.abs(grads[v.name] as tf.Tensor)).dataSync()[0]),
          v.name,
        ).to.be.greaterThan(0);
      tf.dispose(Object.values(grads));
      const before = tf.memory().numTensors;
      for (let i = 0; i < (backend === 'wasm' ? 50 : 10); i++) step();
      expect(tf.memory().numTensors).to.equal(before);
      ids.dispose();
      m.dispose();
    });

    it('SubLN gains are saved and loaded back by name, and the reloaded student gives identical logits', async () => {
      const { mkdtempSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const { saveModel } = await import('@bitdistill/model');
      const dir = mkdtempSync(join(tmpdir(), 'bitdistill-subln-'));
      const m = loadModel('models/stories260K').model;
      prepareStudent(m, { subln: 'allnorm', weightQuant: 'absmean' });
      for (const [name, v] of m.params) if (name.includes('sub_norm')) v.assign(tf.randomUniform(v.shape, 0.5, 1.5, 'float32', 7));
      await saveModel(m, dir, { tokenizerFrom: 'models/stories260K' });
      const r = loadModel(dir).model;
      expect(restoreStudent(r)).to.equal(true);
      expect(r.config.subln).to.equal('allnorm');
      for (const [name, v] of m.params) {
        if (!name.includes('sub_norm')) continue;
        expect([...r.param(name).dataSync()], name).to.deep.equal([...v.dataSync()]);
      }
      const a = logitsOf(m);
      const b = logitsOf(r);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).to.equal(true);
      m.dispose();
      r.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('the student record survives a checkpoint: restoreStudent re-applies the surgery', () => {
      const m = loadModel('models/stories260K').model;
      prepareStudent(m, { subln: 'allnorm', weightQuant: 'perRow', exclude: ['layers.4.mlp.down_proj'] });
      const rec = studentRecord(m);
      expect(rec).to.deep.include({ subln: 'allnorm', weightQuant: 'perRow', activationQuant: 'int8-per-token' });
      expect(rec?.exclude).to.deep.equal(['model.layers.4.mlp.down_proj']);
      const plain = loadModel('models/stories260K').model;
      expect(restoreStudent(plain)).to.equal(false);
      m.dispose();
      plain.dispose();
    });

    it('the SubLN epsilon (student.sublnEps) is applied, recorded in config.json and restored from it', async () => {
      const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const { saveModel } = await import('@bitdistill/model');
      const a = loadModel('models/stories260K').model;
      const b = loadModel('models/stories260K').model;
      prepareStudent(a, { subln: 'standard', weightQuant: 'absmean' });
      prepareStudent(b, { subln: 'standard', weightQuant: 'absmean', sublnEps: 1e-5 });
      expect([a.config.sublnEps, b.config.sublnEps]).to.deep.equal([1e-8, 1e-5]);
      expect(studentRecord(b)?.sublnEps).to.equal(1e-5);
      const la = logitsOf(a);
      const lb = logitsOf(b);
      expect(
        la.some((v, i) => v !== lb[i]),
        'the epsilon changes the SubLN output',
      ).to.equal(true);
      const dir = mkdtempSync(join(tmpdir(), 'bitdistill-subln-eps-'));
      await saveModel(b, dir, { tokenizerFrom: 'models/stories260K' });
      expect((JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { bitdistill: Record<string, unknown> }).bitdistill['sublnEps']).to.equal(1e-5);
      const r = loadModel(dir).model;
      expect(restoreStudent(r)).to.equal(true);
      expect(r.config.sublnEps).to.equal(1e-5);
      expect(Buffer.from(logitsOf(r).buffer).equals(Buffer.from(lb.buffer))).to.equal(true);
      expect(() => prepareStudent(r, { subln: 'standard', weightQuant: 'absmean', sublnEps: 0 })).to.throw(/SubLN epsilon must be a finite number > 0/);
      for (const m of [a, b, r]) m.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('is an error when the exclude patterns leave nothing to quantize', () => {
      const m = loadModel('models/stories260K').model;
      expect(() => prepareStudent(m, { subln: 'none', weightQuant: 'absmean', exclude: ['model.layers'] })).to.throw(/no projection left to quantize/);
      m.dispose();
    });
  });
}
