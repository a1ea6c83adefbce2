/**
 * Config file -> validated TrainConfig: read the YAML, apply `dotted.key=value` overrides (the value typed as a
 * YAML scalar or flow collection: `optim.lr=5e-6` is a number, `task.trainLimit=null` null,
 * `stages=[teacher,distill]` a list; `stages.0=teacher` or `stages[0]=teacher` sets one item), then validate.
 * Problems in the file, in the overrides and in the values they set all come back together in one ConfigError.
 *
 * Budget (issue 21: a 101 KB file with an unclosed `[` gave a 99,001-line error): the file is at most
 * MAX_CONFIG_BYTES; before the parse, yaml's lexer (linear and cheap) counts tokens and nesting, because on broken
 * input the parser spends ~10 us per token, and `[` or `? ` repeated 500,000 times crash it (a RegExp compile
 * out of memory); the parsed value is at most MAX_DEPTH deep; aliases expand at most MAX_ALIASES times; a
 * ConfigError lists at most MAX_PROBLEMS problems, each cut to MAX_MESSAGE characters. Overrides get the same.
 */
import { readFileSync, statSync } from 'node:fs';
import YAML from 'yaml';
import { BitDistillError, ConfigError, NotFoundError, type ConfigIssue } from '@bitdistill/core';
import { validate } from './schema.ts';
import { formatConfig, trainConfigSchema, type TrainConfig } from './train-config.ts';

export interface LoadedConfig {
  config: TrainConfig;
  /** formatConfig(config) under a comment naming the file and the overrides: what a checkpoint stores. */
  resolvedYaml: string;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** A config file larger than this is refused before it is read (the shipped configs are about 2 KB). */
export const MAX_CONFIG_BYTES = 2 ** 20;
/** YAML tokens in a config or an override (a config has about a thousand, spaces and newlines included). */
export const MAX_YAML_TOKENS = 50_000;
/** Nesting of collections, and of `-` `?` `:` indicators on one line. */
export const MAX_DEPTH = 64;
/** Problems listed in a ConfigError; the rest are counted in a last line. */
export const MAX_PROBLEMS = 20;
const MAX_MESSAGE = 300;
const MAX_ALIASES = 100;
const MAX_OVERRIDE_BYTES = 64 * 2 ** 10;
const MAX_OVERRIDES = 1000;
/** Lines a [ or { may stay open: yaml's parser recurses once per line of a flow collection. */
const MAX_FLOW_LINES = 1000;

/**
 * The lexer pass (see the file comment): a problem if the text has too many tokens, flow collections nested
 * deeper than MAX_DEPTH, or more than MAX_DEPTH block indicators on one line; else null.
 */
function yamlBudget(text: string): ConfigIssue | null {
  let tokens = 0;
  let flow = 0;
  let line = 1;
  let indicators = 0;
  let opened = { token: '', line: 0 }; // the outermost open [ or {
  const at = (message: string): ConfigIssue => ({ path: `line ${line}`, message });
  const unclosed = (): ConfigIssue => ({
    path: `line ${opened.line}`,
    message: `the '${opened.token}' here is still open ${line - opened.line} lines later, where reading stopped; close it with '${opened.token === '[' ? ']' : '}'}'`,
  });
  for (const token of new YAML.Lexer().lex(text)) {
    if (++tokens > MAX_YAML_TOKENS) return flow > 0 ? unclosed() : at(`more than ${MAX_YAML_TOKENS} YAML tokens; a config has a few hundred lines`);
    switch (YAML.CST.tokenType(token)) {
      case 'flow-seq-start':
      case 'flow-map-start':
        if (flow === 0) opened = { token, line };
        if (++flow > MAX_DEPTH) return at(`[ and { nested more than ${MAX_DEPTH} deep`);
        break;
      case 'flow-seq-end':
      case 'flow-map-end':
        if (flow > 0) flow--;
        break;
      case 'seq-item-ind':
      case 'explicit-key-ind':
      case 'map-value-ind':
        if (flow === 0 && ++indicators > MAX_DEPTH) return at(`more than ${MAX_DEPTH} '-', '?' or ':' indicators on one line`);
        break;
      case 'doc-mode':
      case 'scalar':
      case 'flow-error-end':
        break; // markers the lexer adds; not text
      default:
        for (let i = token.indexOf('\n'); i >= 0; i = token.indexOf('\n', i + 1)) {
          line++;
          indicators = 0;
        }
        if (flow > 0 && line - opened.line > MAX_FLOW_LINES) return unclosed();
    }
  }
  return null;
}

/** Depth of nested lists and mappings in a plain value, counted without recursion. */
function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const [v, d] = top;
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, d + 1);
    if (deepest > MAX_DEPTH) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}

const cut = (s: string): string => (s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}...` : s);

/**
 * YAML text -> plain JS within the budget, or the problems found: syntax errors with `line L, column C` (from
 * `where`'s line counter), too many tokens, too deep, too many aliases.
 */
function parseYaml(text: string): { value: unknown } | { issues: ConfigIssue[] } {
  const budget = yamlBudget(text);
  if (budget !== null) return { issues: [budget] };
  const lineCounter = new YAML.LineCounter();
  // logLevel 'error': the library would print its warnings (libraries never print); errors are collected anyway.
  const doc = YAML.parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, logLevel: 'error' });
  if (doc.errors.length > 0) {
    return {
      issues: doc.errors.map((e): ConfigIssue => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { path: `line ${pos.line}, column ${pos.col}`, message: `YAML syntax error: ${cut(e.message.split('\n')[0] ?? '')}` };
      }),
    };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (e) {
    return { issues: [{ path: '', message: `YAML error: ${cut(e instanceof Error ? e.message : String(e))}` }] };
  }
  if (depthOf(value) > MAX_DEPTH) return { issues: [{ path: '', message: `lists and mappings nested more than ${MAX_DEPTH} deep` }] };
  return { value };
}

/** A ConfigError listing the first MAX_PROBLEMS issues, messages cut short; its header counts them all. */
function configError(file: string, issues: readonly ConfigIssue[]): ConfigError {
  return new ConfigError(
    file,
    issues.slice(0, MAX_PROBLEMS).map((i) => ({ path: cut(i.path), message: cut(i.message) })),
    issues.length,
  );
}

/** Parses a YAML file to plain JS; a syntax error is a ConfigError whose issues carry line and column. */
function readYaml(file: string): unknown {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_CONFIG_BYTES) {
      throw new ConfigError(file, [{ path: '', message: `the file is ${size} bytes; a config is at most ${MAX_CONFIG_BYTES / 2 ** 20} MiB` }]);
    }
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const code = errnoCode(e);
    const hint = `paths are relative to the working directory (${process.cwd()}); shipped configs are in configs/`;
    if (code === 'ENOENT') throw new NotFoundError(file, `config file not found: ${file}`, { hint, cause: e });
    if (code === 'EISDIR') throw new NotFoundError(file, `${file} is a folder, not a YAML config file`, { hint, cause: e });
    throw new BitDistillError('E_IO', `cannot read config ${file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const parsed = parseYaml(text);
  if ('issues' in parsed) throw configError(file, parsed.issues);
  return parsed.value;
}

/** `optim.lr`, `stages.0`, `stages[0]` -> segments; undefined if malformed (empty segment, stray bracket). */
function parseKey(key: string): string[] | undefined {
  const out: string[] = [];
  for (const part of key.split('.')) {
    const m = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
    if (m === null) return undefined;
    out.push(m[1] as string);
    for (const idx of (m[2] ?? '').matchAll(/\[(\d+)\]/g)) out.push(idx[1] as string);
  }
  return out;
}

interface Applied {
  /** The override as given, for messages. */
  text: string;
  /** Where it landed, in the validator's path syntax (`stages[0]`, `optim.lr`). */
  path: string;
}

/** The value at `segs` inside a plain document, or undefined. */
function lookup(doc: unknown, segs: readonly string[]): unknown {
  let node = doc;
  for (const seg of segs) {
    if (Array.isArray(node)) node = /^\d+$/.test(seg) ? (node as unknown[])[Number(seg)] : undefined;
    else if (isMapping(node)) node = Object.hasOwn(node, seg) ? node[seg] : undefined;
    else return undefined;
  }
  return node;
}

/**
 * Applies overrides to a parsed document without mutating it: containers along each path are copied (YAML
 * anchors may share them). A container the file leaves out is taken from `filled` (the document with its
 * defaults, so `stages.1=distill` edits the default stage list), else created empty.
 */
function applyOverrides(
  root: Record<string, unknown>,
  filled: unknown,
  overrides: readonly string[],
  issues: ConfigIssue[],
): { doc: Record<string, unknown>; applied: Applied[] } {
  const doc = { ...root };
  const applied: Applied[] = [];
  if (overrides.length > MAX_OVERRIDES) {
    issues.push({ path: 'overrides', message: `${overrides.length} overrides; at most ${MAX_OVERRIDES} (put the settings in the config file)` });
    return { doc, applied };
  }
  overrides.forEach((text, i) => {
    const at = `overrides[${i}]`;
    if (text.length > MAX_OVERRIDE_BYTES) {
      issues.push({ path: at, message: `override '${cut(text)}' is ${text.length} characters; at most ${MAX_OVERRIDE_BYTES}` });
      return;
    }
    const eq = text.indexOf('=');
    const segs = eq > 0 ? parseKey(text.slice(0, eq).trim()) : undefined;
    if (segs === undefined || segs.length === 0 || segs.length > MAX_DEPTH) {
      issues.push({ path: at, message: `malformed override '${text}': expected dotted.key=value, e.g. optim.lr=5e-6` });
      return;
    }
    const parsed = parseYaml(text.slice(eq + 1));
    if ('issues' in parsed) {
      const first = parsed.issues[0] as ConfigIssue;
      issues.push({ path: at, message: `override '${text}': the value is not valid YAML (${first.message.replace(/^YAML (syntax )?error: /, '')})` });
      return;
    }
    const value = parsed.value;
    let node: Record<string, unknown> | unknown[] = doc;
    let path = '';
    for (let s = 0; s < segs.length; s++) {
      const seg = segs[s] as string;
      const last = s === segs.length - 1;
      let child: unknown;
      const current = (x: unknown): unknown => copyContainer(x === undefined ? lookup(filled, segs.slice(0, s + 1)) : x);
      if (Array.isArray(node)) {
        const idx = /^\d+$/.test(seg) ? Number(seg) : -1;
        if (idx < 0 || idx > node.length) {
          issues.push({ path: at, message: `override '${text}': '${path}' is a list of ${node.length}; use an index 0..${node.length}` });
          return;
        }
        path = `${path}[${idx}]`;
        if (last) node[idx] = value;
        else node[idx] = child = current(node[idx]);
      } else {
        path = path === '' ? seg : `${path}.${seg}`;
        if (last) node[seg] = value;
        else node[seg] = child = current(node[seg]);
      }
      if (last) break;
      if (!isMapping(child) && !Array.isArray(child)) {
        issues.push({ path: at, message: `override '${text}': cannot set a key inside '${path}', which is not a mapping` });
        return;
      }
      node = child;
    }
    applied.push({ text, path });
  });
  return { doc, applied };
}

/** A shallow copy of a mapping or list, `{}` for absent/null, the value itself for a scalar. */
function copyContainer(v: unknown): unknown {
  if (v === undefined || v === null) return {};
  if (Array.isArray(v)) return [...(v as unknown[])];
  if (isMapping(v)) return { ...v };
  return v;
}

/** Says which override set a value that has a problem (the last one that touched the path). */
function blameOverrides(issues: readonly ConfigIssue[], applied: readonly Applied[]): ConfigIssue[] {
  const within = (inner: string, outer: string): boolean => inner === outer || inner.startsWith(`${outer}.`) || inner.startsWith(`${outer}[`);
  return issues.map((issue) => {
    const by = [...applied].reverse().find((a) => within(issue.path, a.path) || (issue.path !== '' && within(a.path, issue.path)));
    return by === undefined ? issue : { path: issue.path, message: `${issue.message} (from override '${by.text}')` };
  });
}

/**
 * Reads, overrides and validates a training config. Throws NotFoundError if the file is missing, ConfigError
 * with every problem (YAML syntax with line/column, malformed overrides, schema and cross-field issues).
 */
export function loadConfig(file: string, overrides: readonly string[] = []): LoadedConfig {
  const raw = readYaml(file);
  const issues: ConfigIssue[] = [];
  let doc: unknown = raw;
  let applied: Applied[] = [];
  if (raw === null || raw === undefined || isMapping(raw)) {
    const root = isMapping(raw) ? raw : {};
    const filled = trainConfigSchema.check(root, '', []);
    ({ doc, applied } = applyOverrides(root, filled.ok ? filled.value : filled.partial, overrides, issues));
  }
  const r = validate(trainConfigSchema, doc);
  if (!r.ok) for (const issue of blameOverrides(r.issues, applied)) issues.push(issue);
  if (!r.ok || issues.length > 0) throw configError(file, issues);
  const header = [
    `# bitdistill config resolved from ${file}${overrides.length > 0 ? ` with ${overrides.join(' ')}` : ''}`.replace(/[\r\n]+/g, ' '),
    '# relative paths resolve against the working directory',
  ];
  return { config: r.value, resolvedYaml: `${header.join('\n')}\n${formatConfig(r.value)}` };
}
