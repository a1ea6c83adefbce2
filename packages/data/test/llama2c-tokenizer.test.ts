import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ArgumentError, FormatError } from '@bitdistill/core';
import { loadLlama2cTokenizer, parseLlama2cTokenizer } from '../src/llama2c-tokenizer.ts';
import type { Llama2cTokenizer } from '../src/llama2c-tokenizer.ts';
import { StreamDecoder } from '../src/tokenizer.ts';

const TOKENIZER_BIN = fileURLToPath(new URL('../../../models/stories260K/tokenizer.bin', import.meta.url));
// Made by scripts/reference/llama2c_tokenize.py, an independent Python port of run.c's encode().
const GOLDEN = fileURLToPath(new URL('./golden/llama2c-tokens.json', import.meta.url));

interface GoldenCase {
  text: string;
  bos: boolean;
  ids: number[];
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

/** A llama2.c tokenizer file from (score, piece) pairs. */
function tokenizerBytes(maxLen: number, tokens: [number, string][]): Uint8Array {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeInt32LE(maxLen, 0);
  for (const [score, piece] of tokens) {
    const bytes = Buffer.from(piece, 'utf8');
    const head = Buffer.alloc(8);
    head.writeFloatLE(score, 0);
    head.writeInt32LE(bytes.length, 4);
    parts.push(head, bytes);
  }
  return Buffer.concat(parts);
}

/** The 259 tokens every llama2.c tokenizer starts with. */
function baseTokens(): [number, string][] {
  const out: [number, string][] = [
    [0, '<unk>'],
    [0, '\n<s>\n'],
    [0, '\n</s>\n'],
  ];
  for (let b = 0; b < 256; b++) out.push([0, `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]);
  return out;
}

/** run.c's merge loop written the slow way (rescan every pair per merge), to check the heap version. */
function naiveMerge(tok: Llama2cTokenizer, start: number[]): number[] {
  const tokens = [...start];
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const id = tok.tokenToId(tok.idToToken(tokens[i]!)! + tok.idToToken(tokens[i + 1]!)!);
      if (id !== null && tok.scores[id]! > best) {
        best = tok.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx < 0) return tokens;
    tokens.splice(bestIdx, 2, bestId);
  }
}

describe('llama2.c tokenizer (stories260K tok512.bin)', () => {
  const tok = loadLlama2cTokenizer(TOKENIZER_BIN);
  const golden = JSON.parse(readFileSync(GOLDEN, 'utf8')) as { vocab_size: number; cases: GoldenCase[] };

  it('reads 512 tokens with BOS 1, EOS 2, no pad', () => {
    expect(tok.kind).to.equal('llama2c');
    expect(tok.vocabSize).to.equal(512).and.equal(golden.vocab_size);
    expect(tok.maxTokenLength).to.equal(7);
    expect([tok.bosId, tok.eosId, tok.padId]).to.deep.equal([1, 2, null]);
    expect(tok.idToToken(3)).to.equal('<0x00>');
    expect(tok.idToToken(410)).to.equal(' ');
    expect(tok.tokenToId(' ')).to.equal(410);
    expect(tok.idToToken(512)).to.equal(null);
    expect(tok.tokenToId('not a token')).to.equal(null);
  });

  it('encodes "Once upon a time" with BOS as the reference does', () => {
    expect(tok.encode('Once upon a time', { addBos: true })).to.deep.equal([1, 403, 407, 261, 378]);
    expect(['Once', 'upon', 'a', 'time'].map((w) => tok.idToToken(tok.encode(w)[0]!))).to.deep.equal([' Once', ' upon', ' a', ' time']);
  });

  it('matches the independent Python port of run.c on every golden string', () => {
    expect(golden.cases.length).to.be.greaterThan(10);
    for (const c of golden.cases) {
      expect(tok.encode(c.text, { addBos: c.bos }), JSON.stringify(c.text)).to.deep.equal(c.ids);
    }
  });

  it('picks the same merges as the O(n^2) loop of run.c on random text', () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabet = 'aeht nosild,.!\nLTOé🙂';
    const chars = Array.from(alphabet);
    for (let trial = 0; trial < 200; trial++) {
      const text = Array.from({ length: 1 + rand(60) }, () => chars[rand(chars.length)]).join('');
      const ids = tok.encode(text, { addBos: true });
      // Undo all merges: the starting sequence is BOS, " ", then one token per character or byte.
      const start = [1, 410];
      for (const ch of text) {
        const id = tok.tokenToId(ch);
        if (id !== null) start.push(id);
        else for (const b of Buffer.from(ch, 'utf8')) start.push(b + 3);
      }
      expect(ids, JSON.stringify(text)).to.deep.equal(naiveMerge(tok, start));
    }
  });

  it('decodes back to the text: leading space dropped after BOS, byte tokens assembled into UTF-8', () => {
    for (const c of golden.cases) {
      expect(tok.decode(c.ids), JSON.stringify(c.text)).to.equal(c.text);
    }
    expect(tok.decode(tok.encode('Once upon a time', { addBos: true }))).to.equal('Once upon a time');
    expect(tok.decode([1, 403, 407, 2])).to.equal('Once upon');
    expect(tok.decode([1, 403, 407, 2], { skipSpecialTokens: false })).to.equal('\n<s>\nOnce upon\n</s>\n');
    // The byte token <0x20> keeps its space (run.c tests the stored piece '<0x20>', not the byte).
    expect(tok.decode([1, 0x20 + 3, 403])).to.equal('  Once');
    expect(tok.decode([])).to.equal('');
  });

  it('decodeToken gives the mid-sequence piece; StreamDecoder assembles split characters', () => {
    expect([403, 407, 261, 378].map((id) => tok.decodeToken(id)).join('')).to.equal(' Once upon a time');
    expect(tok.decodeToken(1)).to.equal('');
    const ids = tok.encode('Hi 日本 🙂!', { addBos: true });
    const stream = new StreamDecoder(tok);
    const pieces = ids.map((id) => stream.push(id));
    expect(pieces.join('') + stream.flush()).to.equal('Hi 日本 🙂!');
    expect(pieces.every((p) => !p.includes('\uFFFD'))).to.equal(true);
  });

  it('rejects ids outside the vocabulary', () => {
    expect(thrown(() => tok.decode([1, 512]))).to.be.instanceOf(ArgumentError);
    expect(thrown(() => tok.decodeToken(-1))).to.be.instanceOf(ArgumentError);
    expect(thrown(() => tok.decode([1.5]))).to.be.instanceOf(ArgumentError);
  });
});

describe('llama2.c tokenizer file checks', () => {
  const good = (): [number, string][] => [...baseTokens(), [-1, ' '], [-2, 'a'], [-3, ' a']];

  it('reads a well-formed file, with or without the vocab size', () => {
    const bytes = tokenizerBytes(7, good());
    expect(parseLlama2cTokenizer(bytes, 'x.bin').vocabSize).to.equal(262);
    expect(parseLlama2cTokenizer(bytes, 'x.bin', { vocabSize: 262 }).encode('a aa')).to.deep.equal([261, 261, 260]);
  });

  it('fails on truncation, with the file name and the token index', () => {
    const bytes = tokenizerBytes(7, good());
    for (const cut of [2, 4 + 3, bytes.length - 1]) {
      const e = thrown(() => parseLlama2cTokenizer(bytes.subarray(0, cut), 'cut.bin'));
      expect(e, `cut at ${cut}`).to.be.instanceOf(FormatError);
      expect(e.message).to.match(/^cut\.bin: /);
    }
    expect(thrown(() => parseLlama2cTokenizer(bytes.subarray(0, bytes.length - 1), 'cut.bin')).message).to.match(/truncated in token 261/);
  });

  it('fails on negative and over-long token lengths', () => {
    const bytes = Buffer.from(tokenizerBytes(7, good()));
    const lenOffset = 4 + 4; // token 0: score, then length
    bytes.writeInt32LE(-5, lenOffset);
    expect(thrown(() => parseLlama2cTokenizer(bytes, 'neg.bin')).message).to.match(/token 0: length -5/);
    const long = tokenizerBytes(3, good()); // '<unk>' is 5 bytes > 3
    const e = thrown(() => parseLlama2cTokenizer(long, 'long.bin'));
    expect(e).to.be.instanceOf(FormatError);
    expect(e.message).to.match(/token 0: length 5 exceeds max_token_length 3/);
  });

  it('checks the token count against the vocab size given', () => {
    const bytes = tokenizerBytes(7, good());
    expect(thrown(() => parseLlama2cTokenizer(bytes, 'v.bin', { vocabSize: 300 })).message).to.match(/truncated at token 262 of 300/);
    expect(thrown(() => parseLlama2cTokenizer(bytes, 'v.bin', { vocabSize: 261 })).message).to.match(/bytes remain after 261 tokens/);
    expect(thrown(() => parseLlama2cTokenizer(bytes, 'v.bin', { vocabSize: 0 }))).to.be.instanceOf(ArgumentError);
  });

  it('requires the byte tokens, the " " token and unique pieces that run.c relies on', () => {
    const noBytes = good();
    noBytes[3 + 65] = [0, 'A'];
    expect(thrown(() => parseLlama2cTokenizer(tokenizerBytes(7, noBytes), 'b.bin')).message).to.match(/token 68 is "A"; expected the byte token <0x41>/);
    const noSpace = good().filter(([, p]) => p !== ' ');
    expect(thrown(() => parseLlama2cTokenizer(tokenizerBytes(7, noSpace), 's.bin')).message).to.match(/no " " token/);
    const dup = [...good(), [-4, 'a'] as [number, string]];
    expect(thrown(() => parseLlama2cTokenizer(tokenizerBytes(7, dup), 'd.bin')).message).to.match(/tokens 260 and 262 are both "a"/);
  });
});
