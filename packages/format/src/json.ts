/**
 * A strict JSON parser for untrusted headers (safetensors, shard indexes). Unlike JSON.parse it rejects duplicate
 * object keys (JSON.parse silently keeps the last one), keeps integers exact as bigint (so an offset of 2^60 is not
 * rounded into a plausible number), returns objects as Maps (no `__proto__` surprises) and caps nesting depth
 * (no stack overflow on `[[[[...`). Grammar: RFC 8259.
 */
import { readFileSync } from 'node:fs';
import { FormatError } from '@bitdistill/core';

export type JsonValue = null | boolean | string | number | bigint | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** A syntax error; `offset` is the index of the offending character in the text. */
export class JsonSyntaxError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at character ${offset}`);
    this.name = 'JsonSyntaxError';
    this.offset = offset;
  }
}

const MAX_DEPTH = 64;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Parse `text`; integers without fraction or exponent come back as bigint, other numbers as number. */
export function parseStrictJson(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i !== text.length) throw new JsonSyntaxError('unexpected data after the JSON value', p.i);
  return v;
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return v instanceof Map;
}

/** A short rendering of a parsed value for error messages. */
export function showJson(v: JsonValue | undefined, max = 60): string {
  const s = render(v);
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

function render(v: JsonValue | undefined): string {
  if (v === undefined) return '(missing)';
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${v.map(render).join(', ')}]`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${JSON.stringify(k)}: ${render(x)}`).join(', ')}}`;
  return JSON.stringify(v);
}

class Parser {
  i = 0;
  constructor(private readonly s: string) {}

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.i++;
    }
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) throw new JsonSyntaxError(`nesting deeper than ${MAX_DEPTH}`, this.i);
    const c = this.s[this.i];
    if (c === undefined) throw new JsonSyntaxError('unexpected end of input', this.i);
    if (c === '{') return this.object(depth + 1);
    if (c === '[') return this.array(depth + 1);
    if (c === '"') return this.string();
    if (c === 't') return this.literal('true', true);
    if (c === 'f') return this.literal('false', false);
    if (c === 'n') return this.literal('null', null);
    return this.number();
  }

  private object(depth: number): JsonObject {
    const out: JsonObject = new Map();
    this.i++; // '{'
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      if (this.s[this.i] !== '"') throw new JsonSyntaxError('expected a string key', this.i);
      const at = this.i;
      const key = this.string();
      if (out.has(key)) throw new JsonSyntaxError(`duplicate key ${JSON.stringify(key)}`, at);
      this.ws();
      if (this.s[this.i] !== ':') throw new JsonSyntaxError("expected ':'", this.i);
      this.i++;
      this.ws();
      out.set(key, this.value(depth));
      this.ws();
      const c = this.s[this.i];
      this.i++;
      if (c === '}') return out;
      if (c !== ',') throw new JsonSyntaxError("expected ',' or '}'", this.i - 1);
      this.ws();
    }
  }

  private array(depth: number): JsonValue[] {
    const out: JsonValue[] = [];
    this.i++; // '['
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.ws();
      const c = this.s[this.i];
      this.i++;
      if (c === ']') return out;
      if (c !== ',') throw new JsonSyntaxError("expected ',' or ']'", this.i - 1);
      this.ws();
    }
  }

  private string(): string {
    const s = this.s;
    const parts: string[] = [];
    let start = ++this.i; // past the opening quote
    for (;;) {
      if (this.i >= s.length) throw new JsonSyntaxError('unterminated string', this.i);
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        parts.push(s.slice(start, this.i));
        this.i++;
        return parts.join('');
      }
      if (c < 0x20) throw new JsonSyntaxError('control character in string', this.i);
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      parts.push(s.slice(start, this.i));
      const e = s[this.i + 1];
      if (e === 'u') {
        const hex = s.slice(this.i + 2, this.i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError('bad \\u escape', this.i);
        parts.push(String.fromCharCode(parseInt(hex, 16)));
        this.i += 6;
      } else {
        const r = e === undefined ? undefined : ESCAPES[e];
        if (r === undefined) throw new JsonSyntaxError('bad escape', this.i);
        parts.push(r);
        this.i += 2;
      }
      start = this.i;
    }
  }

  private number(): number | bigint {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (m === null) throw new JsonSyntaxError('unexpected character', this.i);
    this.i += m[0].length;
    return m[1] === undefined && m[2] === undefined ? BigInt(m[0]) : Number(m[0]);
  }

  private literal<T>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) throw new JsonSyntaxError('unexpected character', this.i);
    this.i += word.length;
    return v;
  }
}

/**
 * A JSON file that must hold one object (config.json, tokenizer_config.json, a trainer state): text that is not
 * JSON, or JSON that is not an object, is a FormatError naming the file, with `hint` saying what to do.
 */
export function readJsonObjectFile(path: string, hint: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== undefined) throw e;
    throw new FormatError(path, `not valid JSON: ${(e as Error).message}`, { hint, cause: e });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new FormatError(path, `expected a JSON object, found ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`, { hint });
  }
  return raw as Record<string, unknown>;
}
