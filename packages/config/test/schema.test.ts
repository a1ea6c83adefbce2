import { expect } from 'chai';
import type { ConfigIssue } from '@bitdistill/core';
import { bool, enumOf, enumOrNumber, int, list, nearestName, num, obj, partialShape, record, str, validate, type Infer } from '../src/schema.ts';

function issuesOf(r: { ok: true } | { ok: false; issues: ConfigIssue[] }): ConfigIssue[] {
  return r.ok ? [] : r.issues;
}

describe('config/schema', () => {
  const shape = {
    name: str(),
    lr: num({ exclusiveMin: 0 }).default(5e-5),
    steps: int({ min: 1 }).nullable().default(null),
    quiet: bool().default(false),
    mode: enumOf(['label', 'generate']).default('label'),
    tags: list(str(), { unique: true, minLength: 1 }).optional(),
    inner: obj({ every: int({ min: 0 }).default(10), path: str().default('runs') }),
  };
  const schema = obj(shape, { aliases: { learning_rate: 'lr' } });

  it('fills defaults, leaves optional keys out, and infers the type', () => {
    const r = validate(schema, { name: 'x' });
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    const v: Infer<typeof schema> = r.value;
    expect(v).to.deep.equal({ name: 'x', lr: 5e-5, steps: null, quiet: false, mode: 'label', inner: { every: 10, path: 'runs' } });
    expect('tags' in v).to.equal(false);
    // An empty YAML block (`inner:` -> null) counts as {}.
    const r2 = validate(schema, { name: 'x', inner: null });
    expect(r2.ok && r2.value.inner).to.deep.equal({ every: 10, path: 'runs' });
  });

  it('does not share default objects between results', () => {
    const s = obj({ xs: list(str()).default(['a']) });
    const a = validate(s, {});
    const b = validate(s, {});
    if (!a.ok || !b.ok) throw new Error('unexpected');
    a.value.xs.push('b');
    expect(b.value.xs).to.deep.equal(['a']);
  });

  it('collects every problem with its dotted path instead of stopping at the first', () => {
    const issues = issuesOf(
      validate(schema, { lr: 'fast', steps: 2.5, quiet: 'yes', mode: 'generat', tags: ['a', 'b', 'a'], inner: { every: -1, pth: 'x' }, extra: 1 }),
    );
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i.message]));
    expect(Object.keys(byPath)).to.have.members(['extra', 'name', 'lr', 'steps', 'quiet', 'mode', 'tags[2]', 'inner.pth', 'inner.every']);
    expect(byPath['name']).to.equal("missing required key 'name' (expected a non-empty string)");
    expect(byPath['lr']).to.equal("expected a number > 0, got string 'fast'");
    expect(byPath['steps']).to.equal('expected an integer >= 1 or null, got number 2.5');
    expect(byPath['quiet']).to.equal("expected true or false, got string 'yes'");
    expect(byPath['mode']).to.equal("expected one of label | generate, got string 'generat'; did you mean 'generate'?");
    expect(byPath['tags[2]']).to.equal("'a' appears twice (first at tags[0])");
    expect(byPath['inner.every']).to.equal('must be >= 0, got -1');
    expect(byPath['inner.pth']).to.equal("unknown key 'inner.pth'; did you mean 'inner.path'?");
    expect(byPath['extra']).to.match(/^unknown key 'extra'; valid keys: name, lr, steps/);
  });

  it('reports the type of a wrong container and a too-short list', () => {
    const issues = issuesOf(validate(schema, { name: 'x', inner: [1], tags: [] }));
    expect(issues).to.deep.equal([
      { path: 'tags', message: 'must have at least 1 item' },
      { path: 'inner', message: 'expected a mapping, got a list' },
    ]);
    expect(issuesOf(validate(schema, 'name: x'))).to.deep.equal([{ path: '', message: "expected a mapping, got string 'name: x'" }]);
  });

  it('range bounds: inclusive, exclusive, integer', () => {
    const s = num({ min: 0, exclusiveMax: 1 });
    expect(s.expected).to.equal('a number in [0, 1)');
    expect(validate(s, 0).ok).to.equal(true);
    expect(issuesOf(validate(s, 1))).to.deep.equal([{ path: '', message: 'must be in [0, 1), got 1' }]);
    expect(issuesOf(validate(num(), Infinity))[0]?.message).to.equal('expected a number, got number Infinity');
    expect(validate(int({ min: -3, max: 3 }), -3).ok).to.equal(true);
  });

  it('suggests the nearest key: edit distance <= 3, separators and case ignored, aliases, prefixes', () => {
    const keys = ['lr', 'weightDecay', 'warmupRatio', 'checkpoint', 'eps'];
    expect(nearestName('weight_decay', keys)).to.equal('weightDecay');
    expect(nearestName('warmupRatoi', keys)).to.equal('warmupRatio');
    expect(nearestName('check', keys)).to.equal('checkpoint');
    expect(nearestName('learning_rat', keys, { learning_rate: 'lr' })).to.equal('lr');
    expect(nearestName('zzzzzzzz', keys)).to.equal(undefined);
    // The nearest wins, not the first acceptable.
    expect(nearestName('ep', ['lr', 'eps'])).to.equal('eps');
    expect(issuesOf(validate(schema, { name: 'x', learning_rate: 1 }))[0]?.message).to.equal("unknown key 'learning_rate'; did you mean 'lr'?");
  });

  it('enumOrNumber takes a listed literal or a number in range', () => {
    const s = enumOrNumber(['auto'], int({ min: 1 }));
    expect(validate(s, 'auto')).to.deep.equal({ ok: true, value: 'auto' });
    expect(validate(s, 4)).to.deep.equal({ ok: true, value: 4 });
    expect(issuesOf(validate(s, 0))).to.deep.equal([{ path: '', message: 'must be >= 1, got 0' }]);
    expect(issuesOf(validate(s, 'aut'))[0]?.message).to.equal("expected one of auto, or an integer >= 1, got string 'aut'; did you mean 'auto'?");
  });

  it('record: only listed keys (with suggestions), values checked; partialShape keeps only given keys', () => {
    const optim = { lr: num({ exclusiveMin: 0 }).default(1), epochs: int({ min: 1 }).default(3) };
    const s = obj({ per: record(obj(partialShape(optim)), { keys: ['teacher', 'distill'] }) });
    const ok = validate(s, { per: { distill: { lr: 0.5 } } });
    expect(ok).to.deep.equal({ ok: true, value: { per: { distill: { lr: 0.5 } } } });
    expect(issuesOf(validate(s, { per: { distil: { lr: 1 }, teacher: { epochs: 0 } } }))).to.deep.equal([
      { path: 'per.distil', message: "unknown key 'per.distil'; did you mean 'per.distill'?" },
      { path: 'per.teacher.epochs', message: 'must be >= 1, got 0' },
    ]);
  });

  it('cross-field checks run alongside field errors and see failed fields as undefined', () => {
    const s = obj(
      { a: int().default(1), b: int().default(2) },
      {
        refine: (v, report) => {
          if (v.a !== undefined && v.b !== undefined && v.a > v.b) report('b', `must be >= a (${v.a})`);
          if (v.a === undefined) report('', 'a unknown: not judged');
        },
      },
    );
    expect(issuesOf(validate(s, { a: 5, b: 3 }))).to.deep.equal([{ path: 'b', message: 'must be >= a (5)' }]);
    expect(issuesOf(validate(s, { a: 'x', b: 3 })).map((i) => i.message)).to.deep.equal(["expected an integer, got string 'x'", 'a unknown: not judged']);
  });
});
