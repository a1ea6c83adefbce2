import { expect } from 'chai';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArgumentError, NotFoundError } from '@bitdistill/core';
import { loadTokenizer } from '../src/index.ts';

const MODELS = fileURLToPath(new URL('../../../models/', import.meta.url));
const LLAMA2C_BIN = join(MODELS, 'stories260K/tokenizer.bin');

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('loadTokenizer', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bitdistill-load-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('takes tokenizer.json from a Hugging Face folder', () => {
    const tok = loadTokenizer(join(MODELS, 'bert-base-uncased'));
    expect(tok.kind).to.equal('wordpiece');
    expect(tok.encode('hello world')).to.deep.equal([101, 7592, 2088, 102]);
  });

  it('takes tokenizer.bin, else the one tok*.bin, from a llama2.c folder', () => {
    const tok = loadTokenizer(join(MODELS, 'stories260K'), { vocabSize: 512 });
    expect(tok.kind).to.equal('llama2c');
    expect(tok.encode('Once upon a time', { addBos: true })).to.deep.equal([1, 403, 407, 261, 378]);

    const sub = join(dir, 'tok');
    mkdirSync(sub);
    copyFileSync(LLAMA2C_BIN, join(sub, 'tok512.bin'));
    expect(loadTokenizer(sub).vocabSize).to.equal(512);
    copyFileSync(LLAMA2C_BIN, join(sub, 'tok4096.bin'));
    const e = thrown(() => loadTokenizer(sub));
    expect(e).to.be.instanceOf(ArgumentError);
    expect(e.message).to.match(/tok4096\.bin, tok512\.bin/);
  });

  it('accepts a tokenizer file directly', () => {
    expect(loadTokenizer(LLAMA2C_BIN).kind).to.equal('llama2c');
    expect(loadTokenizer(join(MODELS, 'bert-base-uncased/tokenizer.json')).kind).to.equal('wordpiece');
  });

  it('says what it looked for when the folder has no tokenizer', () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    const e = thrown(() => loadTokenizer(empty));
    expect(e).to.be.instanceOf(NotFoundError);
    expect((e as NotFoundError).hint).to.match(/tokenizer\.json.*tokenizer\.bin.*tok\*\.bin/);
    expect(thrown(() => loadTokenizer(join(dir, 'missing')))).to.be.instanceOf(NotFoundError);
  });
});
