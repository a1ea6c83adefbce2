import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArgumentError, FormatError, UnsupportedError } from '@bitdistill/core';
import { loadHfTokenizer, validateTokenizerJson } from '../src/hf-tokenizer.ts';
import type { HfTokenizer } from '../src/hf-tokenizer.ts';
import { StreamDecoder } from '../src/tokenizer.ts';

const MODELS = fileURLToPath(new URL('../../../models/', import.meta.url));
const QWEN3 = join(MODELS, 'qwen3-tokenizer/tokenizer.json');
const BERT = join(MODELS, 'bert-base-uncased/tokenizer.json');

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('Hugging Face tokenizer.json: Qwen3 byte-level BPE', function () {
  this.timeout(60_000);
  let qwen: HfTokenizer;
  before(() => {
    qwen = loadHfTokenizer(QWEN3);
  });

  it('has the Qwen3 vocabulary and special tokens (from tokenizer_config.json)', () => {
    expect(qwen.kind).to.equal('bpe');
    expect(qwen.vocabSize).to.equal(151669); // 151,643 BPE tokens + 26 added (151643..151668)
    expect(qwen.bosId).to.equal(null);
    expect(qwen.eosId).to.equal(151645).and.equal(qwen.tokenToId('<|im_end|>'));
    expect(qwen.padId).to.equal(151643).and.equal(qwen.tokenToId('<|endoftext|>'));
    expect(qwen.idToToken(1879)).to.equal('Ġworld');
    expect(qwen.tokenToId('!')).to.equal(0);
  });

  it('encodes the known ids', () => {
    expect(qwen.encode('Hello')).to.deep.equal([9707]);
    expect(qwen.encode(' world')).to.deep.equal([1879]);
    expect(qwen.encode('Hello world')).to.deep.equal([9707, 1879]);
    expect(qwen.encode('<|im_start|>user\nHi<|im_end|>').slice(0, 1)).to.deep.equal([151644]);
    expect(qwen.encode('')).to.deep.equal([]);
  });

  it('round-trips text through decode, including unicode and emoji', () => {
    for (const s of ['Hello world', 'naïve café, déjà vu', 'Größe 日本語のテキスト', 'emoji 🙂👍🏽 and 🇫🇷', '  spaces\tand\nlines  ']) {
      expect(qwen.decode(qwen.encode(s)), s).to.equal(s);
    }
  });

  it('skips special tokens when decoding unless asked', () => {
    const ids = qwen.encode('<|im_start|>user\nHi<|im_end|>');
    expect(qwen.decode(ids)).to.equal('user\nHi');
    expect(qwen.decode(ids, { skipSpecialTokens: false })).to.equal('<|im_start|>user\nHi<|im_end|>');
    expect(qwen.decodeToken(151645)).to.equal('');
    expect(qwen.decode([])).to.equal('');
  });

  it('streams: decodeToken per token, StreamDecoder across split characters', () => {
    expect(qwen.encode('Hello world').map((id) => qwen.decodeToken(id))).to.deep.equal(['Hello', ' world']);
    const text = 'I like 🦜 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.';
    const stream = new StreamDecoder(qwen);
    const out = qwen.encode(text).map((id) => stream.push(id));
    expect(out.join('') + stream.flush()).to.equal(text);
    expect(out.some((p) => p.includes('\uFFFD'))).to.equal(false);
  });

  it('refuses addBos (Qwen has no BOS) and unknown ids', () => {
    expect(thrown(() => qwen.encode('x', { addBos: true }))).to.be.instanceOf(ArgumentError);
    expect(thrown(() => qwen.decode([151669]))).to.be.instanceOf(ArgumentError);
  });
});

describe('Hugging Face tokenizer.json: bert-base-uncased WordPiece', () => {
  const bert = loadHfTokenizer(BERT);
  // A token's id is its 0-based line number in vocab.txt: the ids below are checked against the file itself.
  const vocabLines = readFileSync(join(MODELS, 'bert-base-uncased/vocab.txt'), 'utf8').split('\n');
  const lineId = (token: string): number => vocabLines.indexOf(token);

  it('has the vocab.txt ids', () => {
    expect(bert.kind).to.equal('wordpiece');
    expect(bert.vocabSize).to.equal(30522);
    expect([bert.bosId, bert.eosId, bert.padId]).to.deep.equal([null, null, 0]);
    const known: Record<string, number> = { '[PAD]': 0, '[UNK]': 100, '[CLS]': 101, '[SEP]': 102, hello: 7592, world: 2088 };
    for (const [token, id] of Object.entries(known)) {
      expect(lineId(token), token).to.equal(id);
      expect(bert.tokenToId(token), token).to.equal(id);
    }
  });

  it('encodes [CLS] ... [SEP] with lowercasing, accent stripping, punctuation split and ## pieces', () => {
    expect(bert.encode('hello world')).to.deep.equal([101, 7592, 2088, 102]);
    expect(bert.encode('Hello, World!')).to.deep.equal([101, 7592, 1010, 2088, 999, 102]);
    // Greedy longest match: "unaffable" is not in vocab.txt; "una", then "##ffa", then "##ble" are.
    const pieces = ['una', '##ffa', '##ble'];
    expect(bert.encode('unaffable')).to.deep.equal([101, ...pieces.map(lineId), 102]);
    expect(pieces.map(lineId)).to.deep.equal([14477, 20961, 3468]);
    expect(bert.encode('Café NAÏVE')).to.deep.equal([101, lineId('cafe'), lineId('naive'), 102]);
    expect(bert.encode('🙂')).to.deep.equal([101, 100, 102]); // not in the vocabulary: [UNK]
  });

  it('decodes by joining ## pieces', () => {
    expect(bert.decode(bert.encode('unaffable'))).to.equal('unaffable');
    expect(bert.decode(bert.encode('Hello, World!'))).to.equal('hello, world!');
    expect(bert.decode([101, 7592, 2088, 102], { skipSpecialTokens: false })).to.equal('[CLS] hello world [SEP]');
    expect([14477, 20961, 3468, 2088].map((id) => bert.decodeToken(id)).join('')).to.equal(' unaffable world');
  });
});

describe('tokenizer.json checks', () => {
  /** A small BPE tokenizer.json: vocab a b c ab abc, merges a+b, ab+c. */
  function bpe(merges: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      added_tokens: [{ id: 5, content: '<|endoftext|>', special: true }],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: 'BPE', vocab: { a: 0, b: 1, c: 2, ab: 3, abc: 4 }, merges },
      ...extra,
    };
  }

  it('accepts merges as ["a","b"] pairs or "a b" strings, and normalises them to pairs', () => {
    const fromPairs = validateTokenizerJson(
      bpe([
        ['a', 'b'],
        ['ab', 'c'],
      ]),
      't.json',
    );
    const fromStrings = validateTokenizerJson(bpe(['a b', 'ab c']), 't.json');
    const merges = (j: { json: Record<string, unknown> }): unknown => (j.json.model as Record<string, unknown>).merges;
    expect(merges(fromStrings))
      .to.deep.equal([
        ['a', 'b'],
        ['ab', 'c'],
      ])
      .and.deep.equal(merges(fromPairs));
  });

  it('names the file, the merge index and the missing token for a corrupted merges list', () => {
    const e = thrown(() =>
      validateTokenizerJson(
        bpe([
          ['a', 'b'],
          ['b', 'c'],
        ]),
        'bad.json',
      ),
    );
    expect(e).to.be.instanceOf(FormatError);
    expect(e.message).to.equal('bad.json: model.merges[1] ("b" + "c"): token "bc" is not in model.vocab');
    expect(thrown(() => validateTokenizerJson(bpe(['a b', 'ab x']), 'bad.json')).message).to.match(/merges\[1\].*token "x"/);
    expect(thrown(() => validateTokenizerJson(bpe(['a b c']), 'bad.json')).message).to.match(/merges\[0\] is "a b c"/);
  });

  it('rejects unsupported models, duplicate vocab ids and inconsistent added tokens', () => {
    const unigram = thrown(() => validateTokenizerJson({ model: { type: 'Unigram', vocab: [] } }, 'u.json'));
    expect(unigram).to.be.instanceOf(UnsupportedError);
    expect(unigram.message).to.match(/"Unigram"/);
    const dup = bpe([]);
    (dup.model as Record<string, unknown>).vocab = { a: 0, b: 0 };
    expect(thrown(() => validateTokenizerJson(dup, 'd.json')).message).to.match(/"a" and "b" both have id 0/);
    const clash = bpe([], { added_tokens: [{ id: 1, content: '<x>' }] });
    expect(thrown(() => validateTokenizerJson(clash, 'c.json')).message).to.match(/model.vocab uses id 1 for "b"/);
    const moved = bpe([], { added_tokens: [{ id: 9, content: 'abc' }] });
    expect(thrown(() => validateTokenizerJson(moved, 'm.json')).message).to.match(/model.vocab gives this token id 4/);
    const twice = bpe([], {
      added_tokens: [
        { id: 5, content: '<s>' },
        { id: 5, content: '</s>' },
      ],
    });
    expect(thrown(() => validateTokenizerJson(twice, 't.json')).message).to.match(/id 5 is also used by "<s>"/);
  });

  describe('special tokens from tokenizer_config.json or added_tokens', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'bitdistill-tok-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('uses common added-token names without a config, and the config when there is one', () => {
      const json = bpe(
        [
          ['a', 'b'],
          ['ab', 'c'],
        ],
        {
          added_tokens: [
            { id: 5, content: '<s>', special: true },
            { id: 6, content: '</s>', special: true },
            { id: 7, content: '<pad>', special: true },
          ],
        },
      );
      const file = join(dir, 'tokenizer.json');
      writeFileSync(file, JSON.stringify(json));
      const plain = loadHfTokenizer(file);
      expect([plain.bosId, plain.eosId, plain.padId, plain.vocabSize]).to.deep.equal([5, 6, 7, 8]);
      expect(plain.encode('abcab', { addBos: true })).to.deep.equal([5, 4, 3]);

      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: null, eos_token: { content: '<pad>' } }));
      const configured = loadHfTokenizer(file);
      expect([configured.bosId, configured.eosId, configured.padId]).to.deep.equal([null, 7, 7]);

      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|im_end|>' }));
      const e = thrown(() => loadHfTokenizer(file));
      expect(e).to.be.instanceOf(FormatError);
      expect(e.message).to.match(/tokenizer_config\.json: eos_token "<\|im_end\|>" is not a token of/);
    });
  });
});
