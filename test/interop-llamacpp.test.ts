// Our GGUF exports run by a real llama.cpp: scripts/llamacpp/run_gguf.c compiled at test time against the prebuilt
// libllama / libggml of the optional package @node-llama-cpp/linux-x64 (scripts/llamacpp/gguf-runner.ts), asked to
// tokenize, report token attributes and decode greedily with logits; compared with BitDistill's runtime on the
// same file. Skips, saying why, where that package is absent (it installs on Linux x64 with glibc only).
//
// What can agree exactly and what cannot (docs/interop.md, "Measured"):
//   - the files: tokens, token attributes, metadata, no load warnings; TQ1_0 and TQ2_0 of one student hold the same
//     codes and block scales, so llama.cpp's logits for the two are identical;
//   - the logits: llama.cpp quantizes activations per block of 256 (Q8_K) where we quantize per token, keeps K/V in
//     fp16 and runs F16 weights on fp16-rounded activations; each moves some int8 activations to the neighbouring
//     value, and random-weight students amplify such flips. The tolerances below are 2.5-5x what was measured
//     (printed when the tests run); the two may pick different tokens only where our own top two logits are that
//     close (a near-tie), and greedy continuations may part only there.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadConfig } from '@bitdistill/config';
import { Rng } from '@bitdistill/core';
import { exportGguf } from '@bitdistill/export';
import { initDecoder, loadModel, saveModel, type Decoder } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { TernaryRuntime } from '@bitdistill/runtime';
import { LLAMA_TOKEN_ATTR, llamaCppGgufRunner, type LlamaCppGgufRunner } from '../scripts/llamacpp/gguf-runner.ts';

type Greedy = { tokens: number[]; logits: Float32Array[] };

const TEXTS = [
  'Once upon a time, there was a little girl named Lily.',
  'a gorgeous , witty , seductive movie .',
  'The cat sat on the mat and looked at the dog.',
  'it is a bad film , with bad acting .',
];

interface Agreement {
  median: number;
  max: number;
  argmaxAgree: number;
  positions: number;
  /** Where the argmax differs: our margin between our pick and llama.cpp's (a near-tie if under the tolerance). */
  argmaxMargins: number[];
  /** Greedy steps both decoders took alike, per prompt, and at a divergence our margin between the two picks. */
  prefixes: number[];
  divergenceMargins: number[];
}

/**
 * llama.cpp's greedy run of `steps` tokens after each prompt against our runtime: teacher-forced on llama.cpp's
 * tokens, every logit row llama.cpp returned (last prompt position and each decoded one) is compared.
 */
function agreement(rt: TernaryRuntime, prompts: number[][], runs: Greedy[]): Agreement {
  const V = rt.config.vocabSize;
  const diffs: number[] = [];
  let argmaxAgree = 0;
  let positions = 0;
  const argmaxMargins: number[] = [];
  const prefixes: number[] = [];
  const divergenceMargins: number[] = [];
  const argmax = (a: Float32Array, off: number) => {
    let best = 0;
    for (let i = 1; i < V; i++) if ((a[off + i] as number) > (a[off + best] as number)) best = i;
    return best;
  };
  prompts.forEach((ids, k) => {
    const g = runs[k] as Greedy;
    const ours = rt.generate(ids, g.tokens.length, null).ids;
    let p = 0;
    while (p < g.tokens.length && ours[p] === g.tokens[p]) p++;
    prefixes.push(p);
    const all = rt.forward([...ids, ...g.tokens], { allPositions: true });
    if (p < g.tokens.length) {
      const off = (ids.length - 1 + p) * V;
      divergenceMargins.push(Math.abs((all[off + (g.tokens[p] as number)] as number) - (all[off + (ours[p] as number)] as number)));
    }
    g.logits.forEach((row, s) => {
      const off = (ids.length - 1 + s) * V;
      for (let i = 0; i < V; i++) diffs.push(Math.abs((all[off + i] as number) - (row[i] as number)));
      const ours = argmax(all, off);
      const theirs = argmax(row, 0);
      if (ours === theirs) argmaxAgree++;
      else argmaxMargins.push((all[off + ours] as number) - (all[off + theirs] as number));
      positions++;
    });
  });
  diffs.sort((a, b) => a - b);
  return {
    median: diffs[diffs.length >> 1] as number,
    max: diffs[diffs.length - 1] as number,
    argmaxAgree,
    positions,
    argmaxMargins,
    prefixes,
    divergenceMargins,
  };
}

function report(name: string, a: Agreement): void {
  const ties = [...a.argmaxMargins, ...a.divergenceMargins];
  console.log(
    `      ${name}: |logit diff| median ${a.median.toExponential(2)}, max ${a.max.toExponential(2)}; argmax ${a.argmaxAgree}/${a.positions}; ` +
      `greedy alike for ${a.prefixes.join(', ')} steps${ties.length > 0 ? `; our margin where they part: at most ${Math.max(...ties).toExponential(2)}` : ''}`,
  );
}

/** Logits within `tol`; where the two pick different tokens, our own top two are within `tol` of each other. */
function expectAgreement(a: Agreement, tol: number): void {
  expect(a.max).to.be.lessThan(tol);
  for (const m of a.argmaxMargins) expect(m, 'argmax differs only at a near-tie').to.be.lessThan(tol);
  for (const m of a.divergenceMargins) expect(m, 'greedy runs part only at a near-tie').to.be.lessThan(tol);
}

describe('llama.cpp (prebuilt libllama of @node-llama-cpp/linux-x64) runs our GGUF exports', function () {
  this.timeout(180_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-llamacpp-'));
  let llama: LlamaCppGgufRunner;
  after(() => rmSync(root, { recursive: true, force: true }));

  before(function () {
    const r = llamaCppGgufRunner();
    if (typeof r === 'string') {
      console.log(`      skipped: no llama.cpp to run (${r})`);
      this.skip();
    }
    llama = r;
    console.log(`      llama.cpp from ${llama.source}, CPU backend ${llama.variant}`);
  });

  /** A student of `arch` with the given SubLN epsilon; norm gains off 1 so that misplaced norms would show. */
  async function student(arch: Record<string, unknown>, seed: number, sublnEps: number, dir: string, tokenizerFrom: string): Promise<void> {
    await initBackend('wasm');
    const model: Decoder = initDecoder(arch, seed);
    prepareStudent(model, { subln: 'standard', weightQuant: 'absmean', sublnEps });
    const rng = new Rng(seed + 1);
    for (const [name, v] of model.params)
      if (name.endsWith('norm.weight'))
        v.assign(
          tf.tensor(
            Float32Array.from({ length: v.size }, () => 1 + 0.1 * rng.normal()),
            v.shape,
          ),
        );
    await saveModel(model, dir, { tokenizerFrom });
    model.dispose();
  }

  describe('the bundled 256-wide student (configs/sst2-tiny256.yaml), TQ2_0 and TQ1_0', () => {
    const ckpt = join(root, 'tiny256');
    const files = { TQ2_0: join(root, 'tiny256-tq2_0.gguf'), TQ1_0: join(root, 'tiny256-tq1_0.gguf') };
    let rt: TernaryRuntime;
    let prompts: number[][];

    before(async function () {
      const { config } = loadConfig('configs/sst2-tiny256.yaml');
      const arch = JSON.parse(readFileSync('configs/arch/tiny256.json', 'utf8')) as Record<string, unknown>;
      expect(config.student.subln).to.equal('standard');
      // The config trains with sublnEps = rms_norm_eps, so llama.cpp computes the SubLN exactly as trained.
      expect(config.student.sublnEps).to.equal(arch['rms_norm_eps']);
      await student(arch, 7, config.student.sublnEps, ckpt, 'models/stories260K');
      for (const [type, out] of Object.entries(files)) {
        const r = exportGguf({ from: ckpt, out, type: type as 'TQ2_0' | 'TQ1_0' });
        expect(r.fileType).to.equal(type);
        expect(r.quantizedTensors).to.equal(14);
        expect(r.sublnEps).to.equal(null);
      }
      rt = TernaryRuntime.load(files.TQ2_0);
      prompts = TEXTS.map((t) => rt.tokenizer.encode(t, { addBos: true }));
    });

    it('load without a warning; the model llama.cpp describes is the one exported; same tokens as ours', () => {
      for (const [type, file] of Object.entries(files)) {
        const r = llama.run(file, [
          ...TEXTS.map((text) => ({ kind: 'tokenize' as const, text })),
          { kind: 'meta', key: 'general.file_type' },
          { kind: 'attr', ids: [0, 1, 2, 3, 300] },
        ]);
        expect(r.log, `${type}: llama.cpp warnings`).to.deep.equal([]);
        expect(r.model.desc).to.equal(`bitnet ?B ${type} - ${type === 'TQ2_0' ? '2.06' : '1.69'} bpw ternary`);
        expect([r.model.n_vocab, r.model.n_embd, r.model.n_layer, r.model.n_ctx]).to.deep.equal([512, 256, 2, 256]);
        TEXTS.forEach((t, i) => expect(r.answers[i], t).to.deep.equal(prompts[i]));
        expect(r.answers[TEXTS.length]).to.equal(type === 'TQ2_0' ? '37' : '36');
        const A = LLAMA_TOKEN_ATTR;
        expect(r.answers[TEXTS.length + 1]).to.deep.equal([A.UNKNOWN, A.CONTROL, A.CONTROL, A.BYTE, A.NORMAL]);
      }
    });

    it('TQ1_0 and TQ2_0 give llama.cpp identical logits; they agree with our runtime within the stated tolerance', () => {
      const req = prompts.map((ids) => ({ kind: 'greedy' as const, ids, steps: 16 }));
      const tq2 = llama.run(files.TQ2_0, req).answers as Greedy[];
      const tq1 = llama.run(files.TQ1_0, req).answers as Greedy[];
      tq2.forEach((g, k) => {
        expect((tq1[k] as Greedy).tokens).to.deep.equal(g.tokens);
        g.logits.forEach((row, s) => expect(Array.from((tq1[k] as Greedy).logits[s] as Float32Array)).to.deep.equal(Array.from(row)));
      });
      const a = agreement(rt, prompts, tq2);
      report('TQ2_0 vs our runtime', a);
      // Measured on this student: median 5.4e-3, max 3.7e-2, argmax 65/68 (the three at near-ties).
      expect(a.median).to.be.lessThan(1.5e-2);
      expectAgreement(a, 0.1);
      expect(a.argmaxAgree / a.positions).to.be.at.least(0.9);
    });
  });

  it('the stories260K student with --allow-fallback: an F16 file says so, and its logits agree', async () => {
    const ckpt = join(root, 'stories');
    await initBackend('wasm');
    const { model } = loadModel('models/stories260K');
    prepareStudent(model, { subln: 'standard', weightQuant: 'absmean' });
    await saveModel(model, ckpt, { tokenizerFrom: 'models/stories260K' });
    model.dispose();
    const out = join(root, 'stories-f16.gguf');
    const r = exportGguf({ from: ckpt, out, allowFallback: true });
    expect([r.fileType, r.quantizedTensors, r.fallbackTensors.length]).to.deep.equal(['F16', 0, 35]);
    // The student keeps the official SubLN epsilon 1e-8; llama.cpp applies rms_norm_eps 1e-5: measured and reported.
    expect(r.sublnEps?.trained).to.equal(1e-8);
    expect(r.sublnEps?.target).to.equal(1e-5);
    expect(r.sublnEps?.maxLogitDiff).to.be.greaterThan(0);
    const prompts = TEXTS.slice(0, 2).map((t) => TernaryRuntime.load(out).tokenizer.encode(t, { addBos: true }));
    const run = llama.run(
      out,
      prompts.map((ids) => ({ kind: 'greedy' as const, ids, steps: 24 })),
    );
    expect(run.log).to.deep.equal([]);
    expect(run.model.desc).to.equal('bitnet ?B F16');
    // Compared as llama.cpp computes (SubLN with rms_norm_eps): dense F16 products on fp16-rounded activations and
    // an fp16 KV cache are the difference left. Measured: max 4.4e-2 on logits of rms 4.9, argmax 50/50.
    const a = agreement(TernaryRuntime.load(out, { sublnEps: 1e-5 }), prompts, run.answers as Greedy[]);
    report('F16 fallback vs our runtime', a);
    expectAgreement(a, 0.15);
    expect(a.argmaxAgree).to.equal(a.positions);
    expect(a.prefixes).to.deep.equal([24, 24]); // a trained model: the same story, token for token
  });

  it('a Qwen byte-level BPE vocabulary: control-looking added tokens are CONTROL, no converter-bug warnings, same tokens', async () => {
    const arch = {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: 151936,
      hidden_size: 256,
      intermediate_size: 256,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 64,
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000,
      tie_word_embeddings: true,
      attention_bias: false,
      hidden_act: 'silu',
      bos_token_id: 151643,
      eos_token_id: 151645,
    };
    const ckpt = join(root, 'qwen');
    await student(arch, 3, 1e-6, ckpt, 'models/qwen3-tokenizer');
    const out = join(root, 'qwen.gguf');
    exportGguf({ from: ckpt, out, dtype: 'F16' });
    const rt = TernaryRuntime.load(out);
    const texts = [
      'Hello world, how are you?',
      '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
      '<|fim_prefix|>def f(x):<|fim_suffix|>\n<|fim_middle|>',
      '<think>naïve café 東京 🙂</think>',
    ];
    const prompt = rt.tokenizer.encode(texts[0] as string);
    const r = llama.run(out, [
      ...texts.map((text) => ({ kind: 'tokenize' as const, text })),
      { kind: 'attr', ids: [151643, 151645, 151657, 151659, 151664, 151667] },
      { kind: 'greedy', ids: prompt, steps: 4 },
    ]);
    // llama.cpp's converter writes Qwen's '</s>' (id 128247, a plain BPE token) as NORMAL too, and llama.cpp
    // warns about it for any conversion of this vocabulary; the six non-special <|fim_*|>, <|repo_name|>,
    // <|file_sep|> no longer draw the warning.
    const bugs = r.log.filter((l) => l.includes('probably a bug in the model'));
    expect(bugs).to.have.length(1);
    expect(bugs[0]).to.include("128247 '</s>'");
    texts.forEach((t, i) => expect(r.answers[i], t).to.deep.equal(rt.tokenizer.encode(t)));
    const A = LLAMA_TOKEN_ATTR;
    expect(r.answers[texts.length]).to.deep.equal([A.CONTROL, A.CONTROL, A.USER_DEFINED, A.CONTROL, A.CONTROL, A.USER_DEFINED]);
    // A random student over 151,936 tokens has near-ties everywhere: agreement is judged by the margins.
    const a = agreement(rt, [prompt], [r.answers[texts.length + 1] as Greedy]);
    report('Qwen-vocabulary student vs our runtime', a);
    expectAgreement(a, 0.1);
  });
});
