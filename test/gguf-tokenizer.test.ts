// tokenizer.ggml.* metadata for the two vocabulary families the GGUF export writes, and the tokenizer our runtime
// rebuilds from it: SentencePiece-style (llama2.c tokenizer.bin -> "llama") and byte-level BPE (Qwen
// tokenizer.json -> "gpt2" with pre-tokenizer "qwen2").
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '@bitdistill/data';
import { gv, readGguf, writeGguf, type GgufValue } from '@bitdistill/format';
import { ggufTokenizerMetadata, TOKEN_TYPE } from '@bitdistill/export';
import { tokenizerFromGguf } from '@bitdistill/runtime';

const TEXTS = ['Once upon a time, there was a little girl.', 'a gorgeous , witty , seductive movie .', 'naïve café — 東京 🙂\n\ttabs', ''];

function metaOf(entries: [string, GgufValue][]): Map<string, GgufValue> {
  return new Map(entries);
}

function strings(m: Map<string, GgufValue>, key: string): string[] {
  const v = m.get(key);
  if (v === undefined || v.type !== 'array') throw new Error(`${key} missing`);
  return v.items.map((i) => (i.type === 'string' ? i.value : ''));
}

function numbers(m: Map<string, GgufValue>, key: string): number[] {
  const v = m.get(key);
  if (v === undefined || v.type !== 'array') throw new Error(`${key} missing`);
  return v.items.map((i) => (i.type === 'int32' || i.type === 'float32' ? i.value : NaN));
}

describe('GGUF tokenizer metadata and the tokenizer rebuilt from it', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-ggtok-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  function roundTrip(entries: [string, GgufValue][]) {
    const path = join(dir, `${Math.random().toString(36).slice(2)}.gguf`);
    writeGguf(path, entries, []);
    return tokenizerFromGguf(readGguf(path), path);
  }

  it('llama2.c tokenizer.bin -> "llama": SentencePiece pieces, scores, types; rebuilt tokenizer encodes identically', () => {
    const t = ggufTokenizerMetadata('models/stories260K', 520, {});
    expect(t.problems).to.deep.equal([]);
    const m = metaOf(t.entries);
    expect(m.get('tokenizer.ggml.model')).to.deep.equal(gv.str('llama'));
    const tokens = strings(m, 'tokenizer.ggml.tokens');
    expect(tokens.length).to.equal(520); // padded to the model's vocab_size
    expect(tokens.slice(512)).to.deep.equal(['[PAD512]', '[PAD513]', '[PAD514]', '[PAD515]', '[PAD516]', '[PAD517]', '[PAD518]', '[PAD519]']);
    expect(tokens.some((x) => x.includes(' '))).to.equal(false);
    const types = numbers(m, 'tokenizer.ggml.token_type');
    expect(types.filter((x) => x === TOKEN_TYPE.BYTE)).to.have.length(256);
    expect(types.slice(512).every((x) => x === TOKEN_TYPE.UNUSED)).to.equal(true);
    const original = loadTokenizer('models/stories260K');
    const rebuilt = roundTrip(t.entries);
    for (const s of TEXTS) {
      const ids = original.encode(s, { addBos: true });
      expect(rebuilt.encode(s, { addBos: true }), s).to.deep.equal(ids);
      expect(rebuilt.decode(ids)).to.equal(original.decode(ids));
    }
  });

  it('Qwen byte-level BPE -> "gpt2" + pre "qwen2": tokens, merges, special ids; rebuilt tokenizer encodes identically', () => {
    const t = ggufTokenizerMetadata('models/qwen3-tokenizer', 151936, { bos_token_id: 151643 });
    expect(t.problems).to.deep.equal([]);
    const m = metaOf(t.entries);
    expect(m.get('tokenizer.ggml.model')).to.deep.equal(gv.str('gpt2'));
    expect(m.get('tokenizer.ggml.pre')).to.deep.equal(gv.str('qwen2'));
    const tokens = strings(m, 'tokenizer.ggml.tokens');
    expect(tokens.length).to.equal(151936);
    expect([tokens[220], tokens[151643], tokens[151645], tokens[151669]]).to.deep.equal(['Ġ', '<|endoftext|>', '<|im_end|>', '[PAD151669]']);
    const types = numbers(m, 'tokenizer.ggml.token_type');
    expect([types[220], types[151643], types[151668], types[151669]]).to.deep.equal([
      TOKEN_TYPE.NORMAL,
      TOKEN_TYPE.CONTROL,
      TOKEN_TYPE.USER_DEFINED,
      TOKEN_TYPE.UNUSED,
    ]);
    // Added tokens not marked special but shaped <|...|> are CONTROL, as llama.cpp's converter writes them (issue 18);
    // <think> / <tool_call> stay USER_DEFINED.
    expect(types.slice(151657, 151669)).to.deep.equal([4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4]);
    const merges = strings(m, 'tokenizer.ggml.merges');
    expect(merges.length).to.equal(151387);
    expect(merges[0]).to.equal('Ġ Ġ');
    expect(m.get('tokenizer.ggml.eos_token_id')).to.deep.equal(gv.u32(151645));
    expect(m.get('tokenizer.ggml.padding_token_id')).to.deep.equal(gv.u32(151643));
    expect(m.get('tokenizer.ggml.bos_token_id')).to.deep.equal(gv.u32(151643));
    expect(m.get('tokenizer.ggml.add_bos_token')).to.deep.equal(gv.bool(false));
    const original = loadTokenizer('models/qwen3-tokenizer');
    const rebuilt = roundTrip(t.entries);
    expect([rebuilt.eosId, rebuilt.padId, rebuilt.bosId]).to.deep.equal([original.eosId, original.padId, original.bosId]);
    for (const s of TEXTS) expect(rebuilt.encode(s), s).to.deep.equal(original.encode(s));
  });

  it('reports what llama.cpp cannot take: WordPiece, an unknown pre-tokenizer, a vocabulary larger than the model', () => {
    expect(ggufTokenizerMetadata('models/bert-base-uncased', 30522, {}).problems.join()).to.match(/wordpiece tokenizer/);
    const odd = join(dir, 'odd');
    cpSync('models/qwen3-tokenizer', odd, { recursive: true });
    const j = JSON.parse(readFileSync(join(odd, 'tokenizer.json'), 'utf8')) as { pre_tokenizer: { pretokenizers: { pattern?: { Regex: string } }[] } };
    const split = j.pre_tokenizer.pretokenizers[0];
    if (split?.pattern) split.pattern.Regex = '\\s+';
    writeFileSync(join(odd, 'tokenizer.json'), JSON.stringify(j));
    expect(ggufTokenizerMetadata(odd, 151936, {}).problems.join()).to.match(/not Qwen2's/);
    expect(ggufTokenizerMetadata('models/stories260K', 300, {}).problems.join()).to.match(/512 tokens, more than the model's vocab_size 300/);
  });
});
