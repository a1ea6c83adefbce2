// GGUF export for llama.cpp's `bitnet` architecture, end to end: a student whose input dimensions are multiples of
// 256 is exported to TQ2_0 and TQ1_0 GGUF files and to the safetensors folder; @huggingface/gguf (an independent
// parser) reads the files; our runtime loads the GGUF and predicts as it does from the safetensors export.
//
// Exactness: the GGUF holds the same ternary codes, but the per-tensor scale lives in each block's fp16 d, so it
// is the f32 scale rounded to fp16 (relative change <= 2^-11). Against a safetensors export whose weight_scale is
// rounded the same way the logits are therefore bit-identical; against the plain export they differ by that
// rounding, which is far below the margins of the label decisions (checked on SST-2 dev).
import { expect } from 'chai';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { gguf } from '@huggingface/gguf';
import { initBackend } from '@bitdistill/backend';
import { FormatError, Rng, UnsupportedError } from '@bitdistill/core';
import { getTask, readExamples } from '@bitdistill/data';
import { f16ToF32, f32ToF16, readGguf, readSafetensors, unpackTernaryGgml, unpackTernaryHF, writeSafetensors, type TensorEntry } from '@bitdistill/format';
import { initDecoder, saveModel } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { exportGguf, exportTernary } from '@bitdistill/export';
import { TernaryRuntime } from '@bitdistill/runtime';
import { TQ_LLAMA } from '../packages/format/test/fixtures.ts';

describe('GGUF export (llama.cpp bitnet, TQ2_0 / TQ1_0) and the runtime on it', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-gguf-'));
  const ckpt = join(root, 'ckpt');
  const st = join(root, 'export');
  const tq2 = join(root, 'student-tq2_0.gguf');
  const tq1 = join(root, 'student-tq1_0.gguf');
  after(() => rmSync(root, { recursive: true, force: true }));

  before(async () => {
    await initBackend('wasm');
    const model = initDecoder(TQ_LLAMA, 11, 0.05);
    prepareStudent(model, { subln: 'standard', weightQuant: 'absmean' });
    // SubLN gains off 1, so that a file that lost or misplaced them would be caught.
    const rng = new Rng(5);
    for (const [name, v] of model.params) {
      if (name.includes('sub_norm') || name.includes('layernorm'))
        v.assign(
          tf.tensor(
            Float32Array.from({ length: v.size }, () => 1 + 0.1 * rng.normal()),
            v.shape,
          ),
        );
    }
    await saveModel(model, ckpt, { tokenizerFrom: 'models/stories260K', bitdistill: { task: 'sst2' } });
    model.dispose();
    exportTernary({ from: ckpt, out: st });
    exportGguf({ from: ckpt, out: tq2 });
    exportGguf({ from: ckpt, out: tq1, type: 'TQ1_0' });
  });

  it('@huggingface/gguf parses both files: metadata, tensor table (names, types, shapes), offsets, alignment', async () => {
    for (const [path, typeId, fileType] of [
      [tq2, 35, 37],
      [tq1, 34, 36],
    ] as const) {
      const hf = await gguf(path, { allowLocalFile: true });
      const ours = readGguf(path);
      const m = hf.metadata as unknown as Record<string, unknown>;
      expect(m['version']).to.equal(3);
      expect(m['general.architecture']).to.equal('bitnet');
      expect(m['general.alignment']).to.equal(32);
      expect(m['general.file_type']).to.equal(fileType);
      expect(m['general.quantization_version']).to.equal(2);
      expect(m['bitnet.block_count']).to.equal(2);
      expect(m['bitnet.context_length']).to.equal(256);
      expect(m['bitnet.embedding_length']).to.equal(256);
      expect(m['bitnet.feed_forward_length']).to.equal(512);
      expect(m['bitnet.attention.head_count']).to.equal(4);
      expect(m['bitnet.attention.head_count_kv']).to.equal(2);
      expect(m['bitnet.attention.key_length']).to.equal(64);
      expect(m['bitnet.rope.freq_base']).to.equal(10000);
      expect(m['bitnet.attention.layer_norm_rms_epsilon']).to.equal(Math.fround(1e-5));
      expect(m['bitnet.rope.scaling.type']).to.equal('linear');
      expect(m['tokenizer.ggml.model']).to.equal('llama');
      const tokens = m['tokenizer.ggml.tokens'] as string[];
      expect(tokens.length).to.equal(512);
      expect([tokens[0], tokens[1], tokens[2], tokens[3], tokens[259], tokens[261], tokens[511]]).to.deep.equal([
        '<unk>',
        '<s>',
        '</s>',
        '<0x00>',
        '\u2581t',
        '\u2581a',
        '\u200a',
      ]);
      const types = m['tokenizer.ggml.token_type'] as number[];
      expect([types[0], types[1], types[2], types[3], types[258], types[259]]).to.deep.equal([2, 3, 3, 6, 6, 1]);
      expect((m['tokenizer.ggml.scores'] as number[]).length).to.equal(512);
      expect(m['tokenizer.ggml.bos_token_id']).to.equal(1);
      expect(m['tokenizer.ggml.eos_token_id']).to.equal(2);

      // The tensor table: llama.cpp's bitnet names and shapes (ggml order, ne[0] = input dimension).
      const expected: Record<string, [number, number[]]> = { 'token_embd.weight': [0, [256, 512]], 'output_norm.weight': [0, [256]] };
      for (const l of [0, 1]) {
        Object.assign(expected, {
          [`blk.${l}.attn_norm.weight`]: [0, [256]],
          [`blk.${l}.attn_q.weight`]: [typeId, [256, 256]],
          [`blk.${l}.attn_k.weight`]: [typeId, [256, 128]],
          [`blk.${l}.attn_v.weight`]: [typeId, [256, 128]],
          [`blk.${l}.attn_sub_norm.weight`]: [0, [256]],
          [`blk.${l}.attn_output.weight`]: [typeId, [256, 256]],
          [`blk.${l}.ffn_norm.weight`]: [0, [256]],
          [`blk.${l}.ffn_gate.weight`]: [typeId, [256, 512]],
          [`blk.${l}.ffn_up.weight`]: [typeId, [256, 512]],
          [`blk.${l}.ffn_sub_norm.weight`]: [0, [512]],
          [`blk.${l}.ffn_down.weight`]: [typeId, [512, 256]],
        });
      }
      expect(hf.tensorInfos.map((t) => t.name).sort()).to.deep.equal(Object.keys(expected).sort());
      expect(hf.tensorDataOffset).to.equal(BigInt(ours.dataStart));
      expect(Number(hf.tensorDataOffset) % 32).to.equal(0);
      let end = 0n;
      for (const t of hf.tensorInfos) {
        const [type, shape] = expected[t.name] as [number, number[]];
        expect(t.dtype, t.name).to.equal(type);
        expect(t.shape.map(Number), t.name).to.deep.equal(shape);
        expect(t.n_dims).to.equal(shape.length);
        expect(Number(t.offset) % 32, t.name).to.equal(0);
        expect(t.offset >= end, `${t.name} overlaps`).to.equal(true);
        const mine = ours.tensors.find((x) => x.name === t.name);
        expect(BigInt(mine?.offset ?? -1)).to.equal(t.offset);
        end = t.offset + BigInt(mine?.data.length ?? 0);
      }
      // Data section ends on the file's last (padded) byte.
      expect(Number(hf.tensorDataOffset + end) + 31).to.be.at.least(readFileSync(path).length - 1);
    }
  });

  it("the TQ tensors hold the safetensors export's codes, with its scale (fp16) in every non-zero block", () => {
    const { tensors } = readSafetensors(join(st, 'model.safetensors'));
    for (const [path, type] of [
      [tq2, 'TQ2_0'],
      [tq1, 'TQ1_0'],
    ] as const) {
      const g = readGguf(path);
      const q = g.tensors.find((t) => t.name === 'blk.1.ffn_down.weight');
      const hfw = tensors.get('model.layers.1.mlp.down_proj.weight');
      const scale = tensors.get('model.layers.1.mlp.down_proj.weight_scale');
      if (q === undefined || hfw === undefined || scale === undefined) throw new Error('missing tensor');
      const { codes, d } = unpackTernaryGgml(type, q.data, 256, 512);
      expect(Array.from(codes)).to.deep.equal(Array.from(unpackTernaryHF(hfw.data as Uint8Array, 256, 512)));
      const d16 = f16ToF32(f32ToF16(scale.data[0] as number));
      expect(new Set(d).size).to.equal(1);
      expect(d[0]).to.equal(d16);
    }
  });

  async function sst2Sentences(n: number): Promise<string[]> {
    const examples = await readExamples('datasets/glue/SST-2/dev.tsv', getTask('sst2'), { limit: n });
    return examples.map((e) => e.fields['sentence'] ?? '');
  }

  it('runtime on the GGUF == runtime on the safetensors export with fp16-rounded scales, bit for bit (TQ2_0 and TQ1_0)', async () => {
    // The safetensors export with each weight_scale replaced by its fp16 rounding: the only difference left.
    const st16 = join(root, 'export-f16-scales');
    cpSync(st, st16, { recursive: true });
    const { tensors, metadata } = readSafetensors(join(st, 'model.safetensors'));
    const rounded = new Map<string, TensorEntry>();
    for (const [name, t] of tensors)
      rounded.set(
        name,
        name.endsWith('.weight_scale') ? { dtype: 'F32', shape: t.shape, data: Float32Array.from(t.data as Float32Array, (v) => f16ToF32(f32ToF16(v))) } : t,
      );
    writeSafetensors(join(st16, 'model.safetensors'), rounded, metadata);
    const ref = TernaryRuntime.load(st16);
    const rt2 = TernaryRuntime.load(tq2);
    const rt1 = TernaryRuntime.load(tq1);
    expect(rt2.info.ternaryProjections).to.equal(14);
    expect(rt2.bitdistill['task']).to.equal('sst2');
    for (const s of await sst2Sentences(25)) {
      const ids = ref.tokenizer.encode(s, { addBos: true }).slice(0, 48);
      expect(rt2.tokenizer.encode(s, { addBos: true }).slice(0, 48)).to.deep.equal(ids);
      const want = ref.forward(ids, { allPositions: true });
      expect(rt2.forward(ids, { allPositions: true })).to.deep.equal(want);
      expect(rt1.forward(ids, { allPositions: true })).to.deep.equal(want);
    }
  });

  it('same label predictions on SST-2 dev as the safetensors export (f32 scales)', async () => {
    const { kernelsPredictor } = await import('@bitdistill/runtime');
    const task = getTask('sst2');
    const examples = await readExamples('datasets/glue/SST-2/dev.tsv', task, { limit: 200 });
    const a = await kernelsPredictor(TernaryRuntime.load(st)).predict(task, examples, 'label', 128);
    const b = await kernelsPredictor(TernaryRuntime.load(tq2)).predict(task, examples, 'label', 128);
    const same = a.preds.filter((p, i) => p === b.preds[i]).length;
    console.log(`      label predictions: ${same}/${examples.length} identical`);
    expect(same).to.equal(examples.length);
    // And the logits themselves. The fp16 rounding of a scale changes a projection's output by up to 2^-11
    // relative, i.e. up to 0.06 of an int8 step of the next activation quantization (x * 127 / max|x|): about one
    // activation in ten then rounds to the neighbouring int8 value, and those one-step changes propagate through
    // the layers (see runtime-agreement.test.ts). Measured on this student: median |diff| 8e-3, max 0.08 on
    // logits spanning +-3.5, next-token argmax equal at 98% of positions, label predictions all equal.
    const rs = TernaryRuntime.load(st);
    const rg = TernaryRuntime.load(tq2);
    const diffs: number[] = [];
    let agree = 0;
    let positions = 0;
    const V = rs.config.vocabSize;
    for (const s of await sst2Sentences(20)) {
      const ids = rs.tokenizer.encode(s, { addBos: true }).slice(0, 32);
      const x = rs.forward(ids, { allPositions: true });
      const y = rg.forward(ids, { allPositions: true });
      x.forEach((v, i) => diffs.push(Math.abs(v - (y[i] as number))));
      for (let t = 0; t < ids.length; t++) {
        const row = (a: Float32Array) => a.subarray(t * V, (t + 1) * V).reduce((best, v, j, r) => (v > (r[best] as number) ? j : best), 0);
        if (row(x) === row(y)) agree++;
        positions++;
      }
    }
    diffs.sort((p, q) => p - q);
    const median = diffs[Math.floor(diffs.length / 2)] as number;
    const max = diffs[diffs.length - 1] as number;
    console.log(`      logits: median |diff| ${median.toExponential(2)}, max ${max.toExponential(2)}, argmax ${agree}/${positions}`);
    expect(median).to.be.lessThan(2e-2);
    expect(max).to.be.lessThan(0.25);
    expect(agree / positions).to.be.at.least(0.97);
  });

  it('greedy generation from the GGUF runs with the rebuilt tokenizer', () => {
    const rt = TernaryRuntime.load(tq2);
    const ref = TernaryRuntime.load(st);
    const prompt = rt.tokenizer.encode('Once upon a time', { addBos: true });
    expect(prompt).to.deep.equal(ref.tokenizer.encode('Once upon a time', { addBos: true }));
    expect(rt.generate(prompt, 8, null).ids).to.have.length(8);
    expect(rt.tokenizer.decode(prompt)).to.equal('Once upon a time');
  });

  describe('bad input: a clear error before anything is written', () => {
    function variant(name: string, edit: (c: Record<string, unknown>) => void): string {
      const dir = join(root, name);
      cpSync(ckpt, dir, { recursive: true });
      const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      edit(c);
      writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
      return dir;
    }
    function refused(from: string, pattern: RegExp, extra: Partial<Parameters<typeof exportGguf>[0]> = {}): void {
      const out = join(root, `refused-${Math.random().toString(36).slice(2)}.gguf`);
      try {
        exportGguf({ from, out, ...extra });
        expect.fail('exportGguf did not throw');
      } catch (e) {
        expect(e).to.be.instanceOf(UnsupportedError);
        expect((e as Error).message).to.match(pattern);
      }
      expect(existsSync(out)).to.equal(false);
      expect(readdirSync(root).filter((f) => f.includes('.tmp-'))).to.deep.equal([]);
    }

    it('no quantizer recorded (a teacher checkpoint)', () => {
      refused(
        variant('teacher', (c) => delete c['bitdistill']),
        /not a ternary student/,
      );
    });

    it('allnorm SubLN, untied embeddings, attention biases, qwen2 / qwen3 - all reasons at once', () => {
      const d = variant('allnorm-untied', (c) => {
        (c['bitdistill'] as Record<string, unknown>)['subln'] = 'allnorm';
        c['tie_word_embeddings'] = false;
        c['attention_bias'] = true;
      });
      refused(d, /attention_bias is true[\s\S]*subln allnorm[\s\S]*tie_word_embeddings is false/);
      refused(
        variant('qwen3', (c) => (c['model_type'] = 'qwen3')),
        /q_norm\/k_norm/,
      );
      refused(
        variant('qwen2', (c) => (c['model_type'] = 'qwen2')),
        /biases/,
      );
      refused(
        variant('heads', (c) => (c['head_dim'] = 32)),
        /num_attention_heads x head_dim = 4 x 32 = 128 differs from hidden_size 256/,
      );
    });

    it('an input dimension that is not a multiple of 256: refused, or F16 with --allow-fallback (and named)', async () => {
      // stories260K: hidden 64, intermediate 172.
      const { loadModel } = await import('@bitdistill/model');
      const { model } = loadModel('models/stories260K');
      prepareStudent(model, { subln: 'standard', weightQuant: 'absmean' });
      const small = join(root, 'stories-student');
      await saveModel(model, small, { tokenizerFrom: 'models/stories260K' });
      model.dispose();
      refused(
        small,
        /model\.layers\.0\.self_attn\.q_proj\.weight: input dimension 64 is not a multiple of 256[\s\S]*mlp\.down_proj\.weight: input dimension 172/,
      );
      const out = join(root, 'stories-fallback.gguf');
      const r = exportGguf({ from: small, out, allowFallback: true });
      expect(r.quantizedTensors).to.equal(0);
      expect(r.fallbackTensors).to.have.length(35);
      expect(r.fallbackTensors[0]?.reason).to.match(/not a multiple of 256/);
      const hf = await gguf(out, { allowLocalFile: true });
      expect(hf.tensorInfos.filter((t) => t.dtype === 1)).to.have.length(35); // F16
      const rt = TernaryRuntime.load(out);
      expect(rt.info.denseProjections).to.equal(35);
      expect(rt.forward(rt.tokenizer.encode('Once upon a time', { addBos: true })).length).to.equal(512);
    });

    it('the runtime refuses a corrupted GGUF with a FormatError', () => {
      const bad = join(root, 'corrupt.gguf');
      const bytes = new Uint8Array(readFileSync(tq2));
      writeFileSync(bad, bytes.subarray(0, bytes.length - 1000));
      expect(() => TernaryRuntime.load(bad)).to.throw(FormatError);
      writeFileSync(bad, 'not a gguf');
      expect(() => TernaryRuntime.load(bad)).to.throw(FormatError, /not a GGUF file/);
    });
  });

  describe('safetensors export for Hugging Face transformers (--hf-compat)', () => {
    it('writes BitNetForCausalLM config keys; our runtime reads it with the same logits (autobitlinear)', () => {
      const out = join(root, 'hf-compat');
      exportTernary({ from: ckpt, out, hfCompat: { linearClass: 'autobitlinear' } });
      const c = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(c['model_type']).to.equal('bitnet');
      expect(c['architectures']).to.deep.equal(['BitNetForCausalLM']);
      expect(c).to.include({
        hidden_act: 'silu',
        rope_theta: 10000,
        tie_word_embeddings: true,
        head_dim: 64,
        rms_norm_eps: 1e-5,
        bos_token_id: 1,
        eos_token_id: 2,
      });
      expect(c['quantization_config']).to.deep.equal({
        quant_method: 'bitnet',
        linear_class: 'autobitlinear',
        quantization_mode: 'offline',
        modules_to_not_convert: ['lm_head'],
      });
      const { tensors } = readSafetensors(join(out, 'model.safetensors'));
      expect(tensors.has('model.layers.0.self_attn.attn_sub_norm.weight')).to.equal(true);
      expect(tensors.has('model.layers.0.mlp.ffn_sub_norm.weight')).to.equal(true);
      const ids = [1, 300, 42, 17, 99];
      expect(TernaryRuntime.load(out).forward(ids, { allPositions: true })).to.deep.equal(TernaryRuntime.load(st).forward(ids, { allPositions: true }));
    });

    it('bitlinear, the default, stores 1 / scale (transformers BitLinear divides by it); our runtime inverts it back', () => {
      const out = join(root, 'hf-bitlinear');
      exportTernary({ from: ckpt, out, hfCompat: true });
      const q = (JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>)['quantization_config'];
      expect(q?.['linear_class']).to.equal('bitlinear');
      const a = readSafetensors(join(out, 'model.safetensors')).tensors.get('model.layers.0.self_attn.q_proj.weight_scale');
      const b = readSafetensors(join(st, 'model.safetensors')).tensors.get('model.layers.0.self_attn.q_proj.weight_scale');
      expect(a?.data[0]).to.equal(Math.fround(1 / (b?.data[0] as number)));
      const ids = [1, 300, 42, 17, 99];
      const x = TernaryRuntime.load(out).forward(ids);
      const y = TernaryRuntime.load(st).forward(ids);
      x.forEach((v, i) => expect(Math.abs(v - (y[i] as number))).to.be.lessThan(1e-4));
    });

    it('refuses what transformers cannot express (allnorm, per-row scales), writing nothing', () => {
      const d = join(root, 'hf-allnorm');
      cpSync(ckpt, d, { recursive: true });
      const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
      (c['bitdistill'] as Record<string, unknown>)['subln'] = 'allnorm';
      (c['bitdistill'] as Record<string, unknown>)['weightQuant'] = 'perRow';
      writeFileSync(join(d, 'config.json'), JSON.stringify(c));
      const out = join(root, 'hf-allnorm-out');
      expect(() => exportTernary({ from: d, out, hfCompat: true })).to.throw(UnsupportedError, /subln allnorm[\s\S]*weightQuant perRow/);
      expect(existsSync(out)).to.equal(false);
    });
  });
});
