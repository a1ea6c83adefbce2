// readModelBlock on a model folder whose config.json is corrupt (issue 21): a FormatError naming the file, not
// the SyntaxError / TypeError that `bitdistill eval` printed as "internal error".
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '@bitdistill/core';
import { readModelBlock } from '../src/index.ts';

describe('readModelBlock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-eval-block-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const withConfig = (text: string) => writeFileSync(join(dir, 'config.json'), text);

  it('returns the bitdistill block, or null when there is none (or no config.json)', () => {
    expect(readModelBlock(join(dir, 'nowhere'))).to.equal(null);
    withConfig(JSON.stringify({ model_type: 'llama', bitdistill: { task: 'sst2', template: '{sentence}' } }));
    expect(readModelBlock(dir)).to.deep.equal({ task: 'sst2', template: '{sentence}' });
    for (const block of ['null', '"sst2"', '[1]', '3']) {
      withConfig(`{"model_type": "llama", "bitdistill": ${block}}`);
      expect(readModelBlock(dir)).to.equal(null);
    }
  });

  it('a config.json that is not JSON, or JSON but not an object, is a FormatError naming it', () => {
    for (const [text, what] of [
      ['{"bitdistill": {', /not valid JSON/],
      ['null', /expected a JSON object/],
      ['[{}]', /expected a JSON object/],
      ['12', /expected a JSON object/],
      ['', /not valid JSON/],
    ] as const) {
      withConfig(text);
      try {
        readModelBlock(dir);
        expect.fail(`accepted ${JSON.stringify(text)}`);
      } catch (e) {
        expect(e).to.be.instanceOf(FormatError);
        expect((e as FormatError).code).to.equal('E_FORMAT');
        expect((e as Error).message).to.contain(join(dir, 'config.json'));
        expect((e as Error).message).to.match(what);
      }
    }
  });
});
