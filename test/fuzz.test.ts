// The reader fuzz campaign in CI (issue 21): every reader gets a few hundred seeded mutations of real files, each
// run in a watched worker process; every outcome must be a typed project error or a plausible load. Longer runs:
// `npm run fuzz -- --cases 10000`. A self-test first shows that the campaign does see each kind of defect.
import { expect } from 'chai';
import { formatTable, runFuzz, type Result } from '../scripts/fuzz/index.ts';

const CASES = 200;

describe('reader fuzz campaign', function () {
  this.timeout(600_000);

  it('sees each kind of defect: a generic exception, garbage accepted, a hang, runaway memory and a crash', async () => {
    const prev = process.env['BITDISTILL_FUZZ_SELFTEST'];
    process.env['BITDISTILL_FUZZ_SELFTEST'] = '1';
    try {
      const kinds: [string, Result][] = [
        ['selftest-generic', 'generic'],
        ['selftest-garbage', 'garbage'],
        ['selftest-hang', 'hang'],
        ['selftest-oom', 'oom'],
        ['selftest-crash', 'crash'],
      ];
      const rows = await runFuzz({ cases: 2, targets: kinds.map(([t]) => t), timeoutMs: 3000, rssMb: 768 });
      for (const [t, want] of kinds) {
        const row = rows.find((r) => r.target === t);
        expect(row?.counts[want], `${t}: ${JSON.stringify(row?.counts)}`).to.equal(2);
      }
    } finally {
      if (prev === undefined) delete process.env['BITDISTILL_FUZZ_SELFTEST'];
      else process.env['BITDISTILL_FUZZ_SELFTEST'] = prev;
    }
  });

  it('refuses to run a target whose reader does not load its own unmutated seed', async () => {
    const prev = process.env['BITDISTILL_FUZZ_SELFTEST'];
    process.env['BITDISTILL_FUZZ_SELFTEST'] = 'badseed';
    try {
      await runFuzz({ cases: 1, targets: ['selftest-badseed'] });
      expect.fail('a target with a bad seed ran');
    } catch (e) {
      expect((e as Error).message).to.match(/fuzz seeds that do not load unmutated:\n {2}selftest-badseed seed 'x' does not load: seed: non-finite value at 0/);
    } finally {
      if (prev === undefined) delete process.env['BITDISTILL_FUZZ_SELFTEST'];
      else process.env['BITDISTILL_FUZZ_SELFTEST'] = prev;
    }
  });

  it('replays the defects an earlier 10,000-case run found: each is now a typed error', async () => {
    // npm run fuzz -- --cases 10000 --seed 20261204 (2026-12-04): a parquet schema column without a name (the
    // missing-columns message read its length), a tokenizer.json post-processor without its template and a
    // pre-tokenizer regex the library could not compile (both only run at the first encode).
    const found: Record<string, number[]> = { parquet: [3216, 3706, 4683, 5338, 5586], 'tokenizer.json': [4604, 9810] };
    const rows = await runFuzz({ cases: 0, seed: 20261204, targets: Object.keys(found), indices: Object.values(found).flat() });
    for (const r of rows) {
      // Each target replays every index; the indices of the other target are ordinary cases and must be good too.
      expect(
        r.examples.map((e) => `${e.result} #${e.index}: ${e.what} -> ${e.detail}`),
        r.target,
      ).to.deep.equal([]);
      expect(r.counts.typed, r.target).to.be.at.least((found[r.target] as number[]).length);
    }
  });

  it(`${CASES} mutations per reader: only typed errors and plausible loads, none slower than 5 s`, async () => {
    const rows = await runFuzz({ cases: CASES, seed: 20261204 });
    const table = formatTable(rows);
    console.log(`${table}\n`);
    expect(rows.map((r) => r.target)).to.include.members([
      'safetensors',
      'export',
      'gguf',
      'tokenizer.json',
      'llama2c-model',
      'llama2c-tokenizer',
      'tsv',
      'jsonl',
      'parquet',
      'arrow',
      'yaml-config',
      'model-folder',
      'checkpoint',
    ]);
    for (const r of rows) {
      expect(r.cases).to.equal(CASES);
      const defects = r.examples.map((e) => `${e.result} #${e.index}: ${e.what} -> ${e.detail}`);
      expect(defects, `${r.target}\n${table}`).to.deep.equal([]);
      // Both kinds of good outcome occur: the mutations reach past the first check, and they do break things.
      expect(r.counts.typed, r.target).to.be.greaterThan(0);
    }
  });
});
