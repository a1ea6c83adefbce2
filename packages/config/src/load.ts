/**
 * Config file -> validated TrainConfig: read the YAML, apply `dotted.key=value` overrides (the value typed as a
 * YAML scalar or flow collection: `optim.lr=5e-6` is a number, `task.trainLimit=null` null,
 * `stages=[teacher,distill]` a list; `stages.0=teacher` or `stages[0]=teacher` sets one item), then validate.
 * Problems in the file, in the overrides and in the values they set all come back together in one ConfigError.
 */
import { readFileSync } from 'node:fs';
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

/** Parses a YAML file to plain JS; a syntax error is a ConfigError whose issues carry line and column. */
function readYaml(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = errnoCode(e);
    const hint = `paths are relative to the working directory (${process.cwd()}); shipped configs are in configs/`;
    if (code === 'ENOENT') throw new NotFoundError(file, `config file not found: ${file}`, { hint, cause: e });
    if (code === 'EISDIR') throw new NotFoundError(file, `${file} is a folder, not a YAML config file`, { hint, cause: e });
    throw new BitDistillError('E_IO', `cannot read config ${file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const doc = YAML.parseDocument(text);
  const issues = doc.errors.map((e): ConfigIssue => {
    const pos = e.linePos?.[0];
    const first = (e.message.split('\n')[0] ?? '').replace(/\s*at line \d+, column \d+:?$/, '');
    return { path: pos ? `line ${pos.line}, column ${pos.col}` : '', message: `YAML syntax error: ${first}` };
  });
  if (issues.length > 0) throw new ConfigError(file, issues);
  try {
    return doc.toJS();
  } catch (e) {
    throw new ConfigError(file, [{ path: '', message: `YAML error: ${e instanceof Error ? e.message : String(e)}` }]);
  }
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
  overrides.forEach((text, i) => {
    const at = `overrides[${i}]`;
    const eq = text.indexOf('=');
    const segs = eq > 0 ? parseKey(text.slice(0, eq).trim()) : undefined;
    if (segs === undefined || segs.length === 0) {
      issues.push({ path: at, message: `malformed override '${text}': expected dotted.key=value, e.g. optim.lr=5e-6` });
      return;
    }
    let value: unknown;
    try {
      value = YAML.parse(text.slice(eq + 1));
    } catch (e) {
      issues.push({ path: at, message: `override '${text}': the value is not valid YAML (${(e instanceof Error ? e.message : String(e)).split('\n')[0]})` });
      return;
    }
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
  if (!r.ok) issues.push(...blameOverrides(r.issues, applied));
  if (!r.ok || issues.length > 0) throw new ConfigError(file, issues);
  const header = [
    `# bitdistill config resolved from ${file}${overrides.length > 0 ? ` with ${overrides.join(' ')}` : ''}`.replace(/[\r\n]+/g, ' '),
    '# relative paths resolve against the working directory',
  ];
  return { config: r.value, resolvedYaml: `${header.join('\n')}\n${formatConfig(r.value)}` };
}
