/**
 * A small declarative schema: describe a document once, get back its TypeScript type and a checker that walks
 * the WHOLE document, collecting every problem with its dotted path (`optim.lr`, `stages[2]`) instead of
 * stopping at the first (as torchtune's config validation does). Checking never coerces: YAML already typed
 * the scalars, so `lr: "5e-5"` is a string and an error.
 *
 *   const optim = obj({ lr: num({ exclusiveMin: 0 }).default(5e-5), maxSteps: int({ min: 1 }).nullable().default(null) });
 *   type Optim = Infer<typeof optim>;              // { lr: number; maxSteps: number | null }
 *   const r = validate(optim, YAML.parse(text));   // { ok: true, value } | { ok: false, issues }
 *
 * A key absent from a mapping takes its field's default; `.optional()` fields are left out; object fields are
 * checked as `{}` (so their own defaults fill in and their required keys are reported one by one); any other
 * absent field is reported as missing.
 */
import type { ConfigIssue } from '@bitdistill/core';

export type Presence = 'required' | 'default' | 'optional';

/** A checked value, or, when it has problems, whatever could be salvaged of it (for cross-field checks). */
export type Checked<T> = { ok: true; value: T } | { ok: false; partial: unknown };

interface Spec<T> {
  /** What a valid value looks like, for messages: "an integer >= 1". */
  expected: string;
  /** Checks a present value; type mismatches are reported with `expected` (which `.nullable()` widens). */
  check(value: unknown, path: string, issues: ConfigIssue[], expected: string): Checked<T>;
  /** What an absent key means for a field without default; objects check `{}`. Default: "missing". */
  absent?(path: string, issues: ConfigIssue[]): Checked<T>;
}

const INVALID = { ok: false, partial: undefined } as const;

export class Schema<T, P extends Presence = 'required'> {
  readonly expected: string;
  readonly presence: P;
  readonly #spec: Spec<T>;
  readonly #fallback: { value: T } | undefined;

  private constructor(spec: Spec<T>, presence: P, fallback: { value: T } | undefined) {
    this.expected = spec.expected;
    this.presence = presence;
    this.#spec = spec;
    this.#fallback = fallback;
  }

  static of<T>(spec: Spec<T>): Schema<T> {
    return new Schema<T, 'required'>(spec, 'required', undefined);
  }

  /** The value taken when the key is absent (cloned each time). */
  default(value: T): Schema<T, 'default'> {
    return new Schema<T, 'default'>(this.#spec, 'default', { value });
  }

  /** The key may be absent; it is then left out of the result. */
  optional(): Schema<T, 'optional'> {
    return new Schema<T, 'optional'>(this.#spec, 'optional', undefined);
  }

  /** `null` is a valid value too. */
  nullable(): Schema<T | null, P> {
    const inner = this.#spec;
    const spec: Spec<T | null> = {
      expected: `${inner.expected} or null`,
      check: (v, path, issues, expected) => (v === null ? { ok: true, value: null } : inner.check(v, path, issues, expected)),
    };
    if (inner.absent !== undefined) spec.absent = inner.absent.bind(inner);
    return new Schema<T | null, P>(spec, this.presence, this.#fallback);
  }

  /** Checks a present value (never `undefined`). */
  check(value: unknown, path: string, issues: ConfigIssue[]): Checked<T> {
    return this.#spec.check(value, path, issues, this.expected);
  }

  /** The result for an absent key, or `undefined` when the key is to be left out. */
  whenAbsent(path: string, issues: ConfigIssue[]): Checked<T> | undefined {
    if (this.#fallback !== undefined) return { ok: true, value: structuredClone(this.#fallback.value) };
    if (this.presence === 'optional') return undefined;
    if (this.#spec.absent !== undefined) return this.#spec.absent(path, issues);
    issues.push({ path, message: `missing required key '${path}' (expected ${this.expected})` });
    return INVALID;
  }
}

export type AnySchema = Schema<unknown, Presence>;
export type Infer<S> = S extends Schema<infer T, Presence> ? T : never;
export type Shape = Record<string, AnySchema>;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends Schema<unknown, 'optional'> ? K : never }[keyof S];
export type ObjectOf<S extends Shape> = Simplify<{ [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }>;
/** What a cross-field check sees: fields that failed their own checks are absent (`undefined` = do not judge). */
export type DeepPartial<T> = T extends readonly (infer E)[] ? DeepPartial<E>[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

// ---------------------------------------------------------------- messages

export function joinPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

/** "string 'abc'", "number -1", "a list", ... for "expected X, got Y". */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `string '${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

function typeIssue(issues: ConfigIssue[], path: string, expected: string, v: unknown): Checked<never> {
  issues.push({ path, message: `expected ${expected}, got ${describeValue(v)}` });
  return INVALID;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min(sub, (prev[j] as number) + 1, (row[j - 1] as number) + 1));
    }
    prev = row;
  }
  return prev[b.length] as number;
}

/**
 * The valid name nearest to a wrong one, or undefined: compared case- and separator-insensitively
 * (`weight_decay` -> `weightDecay`), a candidate qualifies by edit distance <= 3 (and not a complete rewrite)
 * or by one being a prefix of the other; the smallest edit distance wins, ties go to the earlier candidate.
 * `aliases` maps names used elsewhere (HF TrainingArguments: `learning_rate`) to ours (`lr`).
 */
export function nearestName(name: string, candidates: readonly string[], aliases: Readonly<Record<string, string>> = {}): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, '');
  const n = norm(name);
  let best: { target: string; d: number } | undefined;
  const pairs: [string, string][] = [...candidates.map((c): [string, string] => [c, c]), ...Object.entries(aliases)];
  for (const [cand, target] of pairs) {
    const m = norm(cand);
    const prefix = Math.min(n.length, m.length) >= 2 && (m.startsWith(n) || n.startsWith(m));
    // The edit distance is at least the length difference (exactly that for a prefix): skip the O(|n| |m|)
    // table when it cannot qualify, so a megabyte-long key costs no more than a short one.
    if (!prefix && Math.abs(n.length - m.length) > 3) continue;
    const d = prefix ? Math.abs(n.length - m.length) : levenshtein(n, m);
    if (!((d <= 3 && d < Math.max(n.length, m.length)) || prefix)) continue;
    if (best === undefined || d < best.d) best = { target, d };
  }
  return best?.target;
}

// ---------------------------------------------------------------- scalars

export interface StringOptions {
  /** Default false: an empty string is almost always a mistake in a config. */
  allowEmpty?: boolean;
  /** With the words that describe it, e.g. `{ re: /^[\w.-]+$/, description: 'letters, digits, . _ -' }`. */
  pattern?: { re: RegExp; description: string };
}

export function str(o: StringOptions = {}): Schema<string> {
  return Schema.of<string>({
    expected: o.allowEmpty ? 'a string' : 'a non-empty string',
    check(v, path, issues, expected) {
      if (typeof v !== 'string' || (!o.allowEmpty && v.length === 0)) return typeIssue(issues, path, expected, v);
      if (o.pattern !== undefined && !o.pattern.re.test(v)) {
        issues.push({ path, message: `'${v}' must contain only ${o.pattern.description}` });
        return INVALID;
      }
      return { ok: true, value: v };
    },
  });
}

export interface NumberOptions {
  min?: number;
  max?: number;
  exclusiveMin?: number;
  exclusiveMax?: number;
  integer?: boolean;
}

function rangeText(o: NumberOptions): string {
  const lo = o.exclusiveMin !== undefined ? { v: o.exclusiveMin, open: true } : o.min !== undefined ? { v: o.min, open: false } : undefined;
  const hi = o.exclusiveMax !== undefined ? { v: o.exclusiveMax, open: true } : o.max !== undefined ? { v: o.max, open: false } : undefined;
  if (lo !== undefined && hi !== undefined) return `in ${lo.open ? '(' : '['}${lo.v}, ${hi.v}${hi.open ? ')' : ']'}`;
  if (lo !== undefined) return `${lo.open ? '>' : '>='} ${lo.v}`;
  if (hi !== undefined) return `${hi.open ? '<' : '<='} ${hi.v}`;
  return '';
}

export function num(o: NumberOptions = {}): Schema<number> {
  const range = rangeText(o);
  const noun = o.integer ? 'an integer' : 'a number';
  return Schema.of<number>({
    expected: range === '' ? noun : `${noun} ${range}`,
    check(v, path, issues, expected) {
      if (typeof v !== 'number' || !Number.isFinite(v) || (o.integer && !Number.isInteger(v))) return typeIssue(issues, path, expected, v);
      const below = (o.min !== undefined && v < o.min) || (o.exclusiveMin !== undefined && v <= o.exclusiveMin);
      const above = (o.max !== undefined && v > o.max) || (o.exclusiveMax !== undefined && v >= o.exclusiveMax);
      if (below || above) {
        issues.push({ path, message: `must be ${range}, got ${v}` });
        return INVALID;
      }
      return { ok: true, value: v };
    },
  });
}

export function int(o: Omit<NumberOptions, 'integer'> = {}): Schema<number> {
  return num({ ...o, integer: true });
}

export function bool(): Schema<boolean> {
  return Schema.of<boolean>({
    expected: 'true or false',
    check: (v, path, issues, expected) => (typeof v === 'boolean' ? { ok: true, value: v } : typeIssue(issues, path, expected, v)),
  });
}

function enumIssue(issues: ConfigIssue[], path: string, values: readonly string[], expected: string, v: unknown): Checked<never> {
  const near = typeof v === 'string' ? nearestName(v, values) : undefined;
  issues.push({ path, message: `expected ${expected}, got ${describeValue(v)}${near === undefined ? '' : `; did you mean '${near}'?`}` });
  return INVALID;
}

/** One of a fixed list of strings. */
export function enumOf<const V extends readonly string[]>(values: V): Schema<V[number]> {
  return Schema.of<V[number]>({
    expected: `one of ${values.join(' | ')}`,
    check: (v, path, issues, expected) => (typeof v === 'string' && values.includes(v) ? { ok: true, value: v } : enumIssue(issues, path, values, expected, v)),
  });
}

/** One of a few literal strings, or a number (`'auto' | 1..64`). */
export function enumOrNumber<const V extends readonly string[]>(values: V, number: Schema<number, Presence>): Schema<V[number] | number> {
  return Schema.of<V[number] | number>({
    expected: `one of ${values.join(' | ')}, or ${number.expected}`,
    check(v, path, issues, expected) {
      if (typeof v === 'number') return number.check(v, path, issues);
      if (typeof v === 'string' && values.includes(v)) return { ok: true, value: v };
      return enumIssue(issues, path, values, expected, v);
    },
  });
}

// ---------------------------------------------------------------- containers

export interface ListOptions {
  minLength?: number;
  /** Report repeated (scalar) items. */
  unique?: boolean;
}

export function list<T>(item: Schema<T, Presence>, o: ListOptions = {}): Schema<T[]> {
  return Schema.of<T[]>({
    expected: `a list, each item ${item.expected}`,
    check(v, path, issues, expected) {
      if (!Array.isArray(v)) return typeIssue(issues, path, expected, v);
      let ok = true;
      const out: unknown[] = [];
      const seen = new Map<unknown, number>();
      v.forEach((x: unknown, i) => {
        const p = joinPath(path, i);
        const r = item.check(x, p, issues);
        if (!r.ok) {
          ok = false;
          if (r.partial !== undefined) out.push(r.partial);
          return;
        }
        out.push(r.value);
        if (o.unique && (typeof x === 'string' || typeof x === 'number')) {
          const first = seen.get(x);
          if (first !== undefined) {
            issues.push({ path: p, message: `'${String(x)}' appears twice (first at ${joinPath(path, first)})` });
            ok = false;
          } else seen.set(x, i);
        }
      });
      if (o.minLength !== undefined && v.length < o.minLength) {
        issues.push({ path, message: `must have at least ${o.minLength} item${o.minLength === 1 ? '' : 's'}` });
        ok = false;
      }
      return ok ? { ok: true, value: out as T[] } : { ok: false, partial: out };
    },
  });
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unknownKeyIssue(path: string, key: string, known: readonly string[], aliases?: Readonly<Record<string, string>>): ConfigIssue {
  const p = joinPath(path, key);
  const near = nearestName(key, known, aliases);
  const message =
    near !== undefined
      ? `unknown key '${p}'; did you mean '${joinPath(path, near)}'?`
      : `unknown key '${p}'; valid keys${path === '' ? '' : ` in '${path}'`}: ${known.join(', ')}`;
  return { path: p, message };
}

export interface ObjectOptions<T> {
  /** Names used elsewhere for our keys, only to suggest the right one (`learning_rate` -> `lr`). */
  aliases?: Readonly<Record<string, string>>;
  /**
   * Cross-field checks, run even when some fields failed (those are then absent from `value`: a check must skip,
   * not guess, when a field it reads is `undefined`). `report` takes a path relative to this object.
   */
  refine?: (value: DeepPartial<T>, report: (path: string, message: string) => void) => void;
}

/** A mapping with known keys; unknown keys are errors that suggest the nearest valid key. YAML `key:` (null) counts as `{}`. */
export function obj<S extends Shape>(shape: S, o: ObjectOptions<ObjectOf<S>> = {}): Schema<ObjectOf<S>> {
  const known = Object.keys(shape);
  const spec: Spec<ObjectOf<S>> = {
    expected: 'a mapping',
    check(v, path, issues, expected) {
      if (v === null) v = {};
      if (!isMapping(v)) return typeIssue(issues, path, expected, v);
      let ok = true;
      for (const key of Object.keys(v)) {
        if (!Object.hasOwn(shape, key)) {
          issues.push(unknownKeyIssue(path, key, known, o.aliases));
          ok = false;
        }
      }
      const out: Record<string, unknown> = {};
      for (const [key, field] of Object.entries(shape)) {
        const p = joinPath(path, key);
        const x = v[key];
        const r = x === undefined ? field.whenAbsent(p, issues) : field.check(x, p, issues);
        if (r === undefined) continue;
        if (r.ok) out[key] = r.value;
        else {
          ok = false;
          if (r.partial !== undefined) out[key] = r.partial;
        }
      }
      if (o.refine !== undefined) {
        const before = issues.length;
        o.refine(out as DeepPartial<ObjectOf<S>>, (rel, message) => issues.push({ path: joinPath(path, rel), message }));
        if (issues.length > before) ok = false;
      }
      return ok ? { ok: true, value: out as ObjectOf<S> } : { ok: false, partial: out };
    },
    absent(path, issues) {
      return spec.check({}, path, issues, 'a mapping');
    },
  };
  return Schema.of(spec);
}

/** Every field of a shape made `.optional()` (for override blocks that name only what they change). */
export function partialShape<S extends Shape>(shape: S): { [K in keyof S]: Schema<Infer<S[K]>, 'optional'> } {
  return Object.fromEntries(Object.entries(shape).map(([k, s]) => [k, s.optional()])) as { [K in keyof S]: Schema<Infer<S[K]>, 'optional'> };
}

/** A mapping from names to values of one schema; with `keys`, only those names are allowed (with suggestions). */
export function record<K extends string, T>(value: Schema<T, Presence>, o: { keys?: readonly K[] } = {}): Schema<Partial<Record<K, T>>> {
  const spec: Spec<Partial<Record<K, T>>> = {
    expected: o.keys ? `a mapping with keys among ${o.keys.join(', ')}` : 'a mapping',
    check(v, path, issues, expected) {
      if (v === null) v = {};
      if (!isMapping(v)) return typeIssue(issues, path, expected, v);
      let ok = true;
      const out: Record<string, unknown> = {};
      for (const [key, x] of Object.entries(v)) {
        if (o.keys !== undefined && !(o.keys as readonly string[]).includes(key)) {
          issues.push(unknownKeyIssue(path, key, o.keys));
          ok = false;
          continue;
        }
        const r = value.check(x, joinPath(path, key), issues);
        if (r.ok) out[key] = r.value;
        else {
          ok = false;
          if (r.partial !== undefined) out[key] = r.partial;
        }
      }
      return ok ? { ok: true, value: out as Partial<Record<K, T>> } : { ok: false, partial: out };
    },
    absent: (path, issues) => spec.check({}, path, issues, spec.expected),
  };
  return Schema.of(spec);
}

// ---------------------------------------------------------------- entry point

export type Validation<T> = { ok: true; value: T } | { ok: false; issues: ConfigIssue[] };

/** Checks a whole document; on failure returns every issue found, in document-walk order. */
export function validate<T>(schema: Schema<T, Presence>, value: unknown): Validation<T> {
  const issues: ConfigIssue[] = [];
  const r = value === undefined ? schema.whenAbsent('', issues) : schema.check(value, '', issues);
  if (r === undefined) return { ok: false, issues: [{ path: '', message: 'no document' }] };
  if (r.ok && issues.length === 0) return { ok: true, value: r.value };
  return { ok: false, issues };
}
