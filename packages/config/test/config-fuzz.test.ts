// Seeded fuzzing of loadConfig (issue 21, item 4: a 101 KB YAML with an unclosed `[` took 63 s and gave a
// 99,001-line error). Every mutated config, with or without mutated overrides, must load into a config or raise a
// BitDistillError quickly, with at most MAX_PROBLEMS problems listed in a message of bounded length.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BitDistillError, ConfigError, Rng } from '@bitdistill/core';
import { loadConfig } from '../src/index.ts';
import { MAX_CONFIG_BYTES, MAX_PROBLEMS } from '../src/load.ts';

const SEED = 20250125;
const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng.int(a.length)] as T;

const TOKENS = [
  '[',
  ']',
  '{',
  '}',
  ':',
  ': ',
  '- ',
  '? ',
  '&a ',
  '*a',
  '!!str ',
  '!!binary ',
  '"',
  "'",
  '|',
  '>-',
  '#',
  '\t',
  '\n',
  '  ',
  ',',
  '---\n',
  '...\n',
  '%YAML 1.2\n---\n',
  '<<: *a\n',
  '\0',
  '\uFEFF',
  '\\',
];
const VALUES = [
  '-1',
  '1e999',
  '.nan',
  '-.inf',
  'null',
  '~',
  'yes',
  '0x10',
  "''",
  '[]',
  '{}',
  'x'.repeat(100_000),
  '['.repeat(1000) + ']'.repeat(1000),
  '&a [1, *a]',
  '!!int abc',
  '2001-12-14t21:59:43.10-05:00',
];
const BOMB =
  'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n' + Array.from({ length: 8 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]\n`).join('');

type Mutation = (rng: Rng, text: string) => [string, string];

const at = (rng: Rng, text: string): number => rng.int(text.length + 1);
const MUTATIONS: Mutation[] = [
  (rng, t) => {
    const n = rng.int(t.length);
    return [`truncate to ${n}`, t.slice(0, n)];
  },
  (rng, t) => {
    const i = at(rng, t);
    const tok = pick(rng, TOKENS);
    return [`insert ${JSON.stringify(tok)} at ${i}`, t.slice(0, i) + tok + t.slice(i)];
  },
  (rng, t) => {
    const i = rng.int(t.length);
    const tok = pick(rng, TOKENS);
    return [`replace char ${i} by ${JSON.stringify(tok)}`, t.slice(0, i) + tok + t.slice(i + 1)];
  },
  (rng, t) => {
    // A token repeated: unclosed brackets, nested indicators, anchors, stray closers, many short lines.
    const i = at(rng, t);
    const tok = pick(rng, ['[', '{', ']', '? ', '- ', '&a ', '""', '*a,', 'a\n', ' k: v\n', ',']);
    const n = pick(rng, [100, 10_000, 300_000]);
    return [`${JSON.stringify(tok)} x ${n} at ${i}`, t.slice(0, i) + tok.repeat(n) + t.slice(i)];
  },
  (rng, t) => {
    // A value after ': ' replaced.
    const spots = [...t.matchAll(/: +([^\n#]*)/g)];
    if (spots.length === 0) return ['no value', t];
    const m = pick(rng, spots);
    const start = (m.index as number) + m[0].length - (m[1] as string).length;
    const v = pick(rng, VALUES);
    return [
      `value ${JSON.stringify((m[1] as string).slice(0, 20))} -> ${JSON.stringify(v.slice(0, 20))}`,
      t.slice(0, start) + v + t.slice(start + (m[1] as string).length),
    ];
  },
  (rng, t) => {
    // A line's indentation changed, or a line duplicated or dropped.
    const lines = t.split('\n');
    const i = rng.int(lines.length);
    const what = rng.int(3);
    if (what === 0) lines[i] = ' '.repeat(rng.int(5)) + (lines[i] as string).trimStart();
    else if (what === 1) lines.splice(i, 0, lines[i] as string);
    else lines.splice(i, 1);
    return [`line ${i + 1}: ${['indent', 'duplicate', 'drop'][what]}`, lines.join('\n')];
  },
  (rng, t) => [`alias bomb at the end`, `${t}\n${BOMB}`],
  (rng, t) => {
    // Invalid UTF-8 and control bytes: the file is read as UTF-8 text.
    const i = at(rng, t);
    return [`bytes at ${i}`, t.slice(0, i) + pick(rng, ['\uFFFD', '\u0001', '\u0085', '\u2028', '\uD800']) + t.slice(i)];
  },
];

const OVERRIDES = [
  'optim.lr=5e-6',
  'optim.lr=[',
  'optim.lr=' + '['.repeat(100_000),
  'stages[0]=teacher',
  'stages[99]=x',
  '=1',
  'a.b.c.d=1',
  'x'.repeat(70_000) + '=1',
  `${'a.'.repeat(100)}b=1`,
  'seed=*a',
  'seed=&a [*a]',
  `name=${'y'.repeat(1000)}`,
  'task=null',
  'optim={lr: 1, lr: 2}',
];

describe('config fuzz', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'config-fuzz-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every mutated config loads or throws a BitDistillError quickly, with at most 20 problems listed (seeded, 700 cases)', () => {
    const seeds = [
      ...readdirSync(repo('configs'))
        .filter((f) => f.endsWith('.yaml'))
        .map((f) => repo(`configs/${f}`)),
      ...readdirSync(repo('configs/experiments'))
        .filter((f) => f.endsWith('.yaml'))
        .map((f) => repo(`configs/experiments/${f}`)),
      fileURLToPath(new URL('./fixtures/sst2-tiny.yaml', import.meta.url)),
    ].map((f) => readFileSync(f, 'utf8'));
    expect(seeds.length).to.be.greaterThan(3);
    const rng = new Rng(SEED);
    const file = join(dir, 'case.yaml');
    const tally = { loaded: 0, rejected: 0, maxMs: 0, slowest: '' };
    for (let k = 0; k < 700; k++) {
      const m = rng.int(MUTATIONS.length);
      const [what, text] = (MUTATIONS[m] as Mutation)(rng, pick(rng, seeds));
      const overrides = rng.int(3) === 0 ? [pick(rng, OVERRIDES)] : [];
      writeFileSync(file, text);
      const t0 = performance.now();
      try {
        const { config, resolvedYaml } = loadConfig(file, overrides);
        expect(config.name).to.be.a('string');
        expect(resolvedYaml.length).to.be.below(MAX_CONFIG_BYTES);
        tally.loaded++;
      } catch (e) {
        if (!(e instanceof BitDistillError)) {
          throw new Error(
            `case ${k} (seed ${SEED}, mutation ${m}: ${what}, overrides ${overrides.map((o) => o.slice(0, 30)).join(' ')}) threw ${(e as Error).name}: ${(e as Error).message.slice(0, 300)}`,
            { cause: e },
          );
        }
        if (e instanceof ConfigError) expect(e.issues.length, what).to.be.at.most(MAX_PROBLEMS + 1);
        expect(e.message.length, what).to.be.below(MAX_PROBLEMS * 700 + 500);
        tally.rejected++;
      }
      const ms = performance.now() - t0;
      if (ms > tally.maxMs) Object.assign(tally, { maxMs: ms, slowest: `case ${k}: ${what}` });
    }
    expect(tally.rejected, 'rejected').to.be.greaterThan(200);
    expect(tally.loaded, 'loaded').to.be.greaterThan(100);
    expect(tally.maxMs, `slowest: ${tally.slowest}`).to.be.below(2000);
  });

  it('the 101 KB unclosed-[ config of issue 21 fails fast, pointing at the [', () => {
    const text = readFileSync(repo('configs/sst2.yaml'), 'utf8').replace(/^stages: \[(.*)\]$/m, 'stages: [$1') + 'a\n'.repeat(49_000);
    expect(text.length).to.be.greaterThan(100_000);
    const file = join(dir, 'unclosed.yaml');
    writeFileSync(file, text);
    const t0 = performance.now();
    let e: unknown;
    try {
      loadConfig(file);
    } catch (err) {
      e = err;
    }
    expect(performance.now() - t0).to.be.below(1000);
    expect(e).to.be.instanceOf(ConfigError);
    const line = text.split('\n').findIndex((l) => l.startsWith('stages: [')) + 1;
    expect((e as ConfigError).issues).to.have.length(1);
    expect((e as ConfigError).issues[0]?.path).to.equal(`line ${line}`);
    expect((e as ConfigError).issues[0]?.message).to.match(/^the '\[' here is still open \d+ lines later, where reading stopped; close it with '\]'$/);
  });

  it('a config over 1 MiB is refused before it is read; many problems are listed 20 at a time', () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`);
    expect(() => loadConfig(big)).to.throw(ConfigError, 'a config is at most 1 MiB');
    const many = join(dir, 'many.yaml');
    writeFileSync(many, `name: x\n${Array.from({ length: 100 }, (_, i) => `unknown${i}: 1`).join('\n')}\n`);
    let e: ConfigError | undefined;
    try {
      loadConfig(many);
    } catch (err) {
      e = err as ConfigError;
    }
    expect(e?.issues).to.have.length(MAX_PROBLEMS);
    expect(e?.total).to.be.at.least(100);
    expect(e?.message).to.match(new RegExp(`^${many.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${e?.total} problems in the config\n`));
    expect(e?.message).to.match(new RegExp(`\\.\\.\\. and ${(e?.total ?? 0) - MAX_PROBLEMS} more not listed$`));
  });

  it('an alias bomb, deep nesting and a YAML-bomb override are ConfigErrors', () => {
    const file = join(dir, 'bomb.yaml');
    writeFileSync(file, `name: x\n${BOMB}`);
    expect(() => loadConfig(file)).to.throw(ConfigError, 'Excessive alias count');
    writeFileSync(file, `name: ${'['.repeat(65)}${']'.repeat(65)}\n`);
    expect(() => loadConfig(file)).to.throw(ConfigError, 'nested more than 64 deep');
    writeFileSync(file, `name: ${'- '.repeat(70)}x\n`);
    expect(() => loadConfig(file)).to.throw(ConfigError, "more than 64 '-', '?' or ':' indicators on one line");
    const tiny = fileURLToPath(new URL('./fixtures/sst2-tiny.yaml', import.meta.url));
    expect(() => loadConfig(tiny, [`seed=${'['.repeat(200)}`])).to.throw(ConfigError, 'overrides[0]');
  });
});
