/**
 * Hugging Face tokenizer.json (BPE or WordPiece), run by @huggingface/tokenizers (pure JS, matches the Rust
 * library's ids on Qwen2 BPE and BERT WordPiece; MACHINE.md). That library trusts its input (it silently
 * accepted a corrupted merges list), so the JSON is checked here first:
 *   - model.type is BPE or WordPiece; vocab ids are unique non-negative integers;
 *   - BPE merges are `["a", "b"]` pairs (newer files, Qwen) or `"a b"` strings (older files), normalised to
 *     pairs; for every merge, a, b and a+b are in model.vocab;
 *   - added_tokens have unique ids and contents, and agree with model.vocab where they overlap;
 *   - ids are nearly dense (the largest below 2 x the token count + 1024): the vocabulary size is the largest
 *     id + 1, and the model's embedding is sized from it;
 *   - normalizer, pre_tokenizer, post_processor and decoder are null or objects with a string "type".
 * Files over MAX_TOKENIZER_JSON_BYTES are refused before they are read. Values from the file appear in messages
 * only through preview() (a corrupt file can hold a megabyte token or a list nested 100,000 deep).
 * Special ids come from tokenizer_config.json next to the file when it names them (Qwen3: eos <|im_end|>,
 * pad <|endoftext|>, bos null), else from added_tokens by common names (`<s>`, `</s>`, `<pad>`, `[PAD]`...).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer as LibTokenizer } from '@huggingface/tokenizers';
import { ArgumentError, BitDistillError, FormatError, NotFoundError, UnsupportedError, isBitDistillError } from '@bitdistill/core';
import { preview } from './preview.ts';
import { checkTokenId } from './tokenizer.ts';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './tokenizer.ts';

type JsonObject = Record<string, unknown>;

/**
 * The part of the library's Tokenizer class used here. Its .d.ts files import each other without extensions,
 * which NodeNext resolution cannot follow (the class would be typed `any`), so the surface is declared here.
 */
interface HfLibTokenizer {
  encode(text: string): { ids: (number | undefined)[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  /** The library's tokenizer model (its BPE keeps `merges` after building its rank Map from them). */
  model?: { merges?: unknown };
}
const HfLib = LibTokenizer as new (tokenizer: object, config: object) => HfLibTokenizer;

interface AddedTokenEntry {
  id: number;
  content: string;
  special: boolean;
}

/** A tokenizer.json that passed validateTokenizerJson. */
interface CheckedTokenizerJson {
  kind: 'bpe' | 'wordpiece';
  /** The JSON to hand to the library: as read, with BPE merges normalised to pairs. */
  json: JsonObject;
  vocab: Map<string, number>;
  added: AddedTokenEntry[];
  /** WordPiece continuing_subword_prefix ('##'); '' for BPE. */
  subwordPrefix: string;
}

// Looked up in added_tokens when there is no tokenizer_config.json (or it does not name the token).
const COMMON_NAMES = {
  bos_token: ['<s>', '<bos>', '<|begin_of_text|>', '<|startoftext|>'],
  eos_token: ['</s>', '<eos>', '<|end_of_text|>', '<|endoftext|>'],
  pad_token: ['<pad>', '[PAD]', '<|pad|>'],
} as const;
type SpecialKey = keyof typeof COMMON_NAMES;

const CORRUPT_HINT = 'the file is corrupted or was edited by hand; fetch the original tokenizer.json of the model';

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The largest tokenizer.json / tokenizer_config.json read (Gemma 3's tokenizer.json is 33 MB). */
export const MAX_TOKENIZER_JSON_BYTES = 256 * 2 ** 20;

function readJsonObject(file: string): JsonObject {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_TOKENIZER_JSON_BYTES) {
      throw new FormatError(file, `${size} bytes; a tokenizer file is at most ${MAX_TOKENIZER_JSON_BYTES / 2 ** 20} MiB`, { hint: CORRUPT_HINT });
    }
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof BitDistillError) throw e;
    throw new BitDistillError('E_IO', `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new FormatError(file, `not valid JSON (${message.length > 200 ? `${message.slice(0, 200)}...` : message})`, { hint: CORRUPT_HINT, cause: e });
  }
  if (!isObject(parsed)) throw new FormatError(file, 'expected a JSON object at the top level', { hint: CORRUPT_HINT });
  return parsed;
}

/** Checks a parsed tokenizer.json (see the file comment); `file` names it in errors. */
export function validateTokenizerJson(raw: unknown, file: string): CheckedTokenizerJson {
  const fail = (message: string): never => {
    throw new FormatError(file, message, { hint: CORRUPT_HINT });
  };
  if (!isObject(raw)) return fail('expected a JSON object at the top level');
  const model = raw.model;
  if (!isObject(model)) return fail('no "model" object');
  if (model.type !== 'BPE' && model.type !== 'WordPiece') {
    throw new UnsupportedError(`${file}: tokenizer model type ${preview(model.type)} is not supported`, {
      hint: 'supported tokenizer.json models are BPE (GPT-2/Llama-3/Qwen style) and WordPiece (BERT)',
    });
  }

  if (!isObject(model.vocab)) return fail('model.vocab must be an object of token -> id');
  const vocab = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      return fail(`model.vocab: token ${preview(token)} has id ${preview(id)}, not an integer >= 0`);
    }
    const other = byId.get(id);
    if (other !== undefined) return fail(`model.vocab: tokens ${preview(other)} and ${preview(token)} both have id ${id}`);
    vocab.set(token, id);
    byId.set(id, token);
  }
  if (vocab.size === 0) return fail('model.vocab is empty');

  let json = raw;
  let subwordPrefix = '';
  if (model.type === 'BPE') {
    if (model.unk_token != null && (typeof model.unk_token !== 'string' || !vocab.has(model.unk_token))) {
      return fail(`model.unk_token ${preview(model.unk_token)} is not in model.vocab`);
    }
    json = { ...raw, model: { ...model, merges: checkMerges(model.merges, vocab, file) } };
  } else {
    if (typeof model.unk_token !== 'string' || !vocab.has(model.unk_token)) {
      return fail(`model.unk_token ${preview(model.unk_token)} is not in model.vocab (WordPiece needs one)`);
    }
    const prefix = model.continuing_subword_prefix;
    if (prefix !== undefined && prefix !== null && typeof prefix !== 'string') {
      return fail(`model.continuing_subword_prefix is ${preview(prefix)}, expected a string`);
    }
    subwordPrefix = typeof prefix === 'string' ? prefix : '##';
  }
  for (const key of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
    const v = raw[key];
    if (v !== undefined && v !== null && !(isObject(v) && typeof v.type === 'string')) {
      return fail(`${key} is ${preview(v)}, expected null or an object with a "type"`);
    }
  }

  const added = checkAddedTokens(raw.added_tokens ?? [], vocab, byId, file);
  // The vocabulary size is the largest id + 1: a stray huge id would size the model's embedding from it.
  let maxId = -1;
  for (const id of byId.keys()) if (id > maxId) maxId = id;
  for (const t of added) if (t.id > maxId) maxId = t.id;
  const tokens = vocab.size + added.filter((t) => !vocab.has(t.content)).length;
  if (maxId >= 2 * tokens + 1024) fail(`ids go up to ${maxId} for ${tokens} tokens; token ids are numbered from 0 without large gaps`);
  return { kind: model.type === 'BPE' ? 'bpe' : 'wordpiece', json, vocab, added, subwordPrefix };
}

/** BPE merges as [a, b] pairs, each of a, b, a+b in the vocabulary. */
function checkMerges(merges: unknown, vocab: Map<string, number>, file: string): [string, string][] {
  if (!Array.isArray(merges)) {
    throw new FormatError(file, 'model.merges must be a list', { hint: CORRUPT_HINT });
  }
  const pairs: [string, string][] = new Array(merges.length);
  for (let i = 0; i < merges.length; i++) {
    const m: unknown = merges[i];
    let pair: [string, string] | null = null;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      pair = m as [string, string]; // already a pair: kept, not copied (151k arrays for Qwen3)
    } else if (typeof m === 'string') {
      // The old format cannot hold a space inside a token: exactly one space separates the two parts.
      const parts = m.split(' ');
      if (parts.length === 2 && parts[0] && parts[1]) pair = [parts[0], parts[1]];
    }
    if (pair === null) {
      throw new FormatError(file, `model.merges[${i}] is ${preview(m)}; expected ["a", "b"] or "a b"`, {
        hint: CORRUPT_HINT,
      });
    }
    for (const token of [pair[0], pair[1], pair[0] + pair[1]]) {
      if (!vocab.has(token)) {
        throw new FormatError(file, `model.merges[${i}] (${preview(pair[0])} + ${preview(pair[1])}): token ${preview(token)} is not in model.vocab`, {
          hint: 'the merges list does not belong to this vocabulary (corrupted or mixed-up file); ' + CORRUPT_HINT,
        });
      }
    }
    pairs[i] = pair;
  }
  return pairs;
}

function checkAddedTokens(list: unknown, vocab: Map<string, number>, byId: Map<number, string>, file: string): AddedTokenEntry[] {
  const fail = (message: string): never => {
    throw new FormatError(file, message, { hint: CORRUPT_HINT });
  };
  if (!Array.isArray(list)) return fail('added_tokens must be a list');
  const out: AddedTokenEntry[] = [];
  const seenIds = new Map<number, string>();
  const seenContents = new Set<string>();
  for (const [i, t] of (list as unknown[]).entries()) {
    if (!isObject(t) || typeof t.content !== 'string' || typeof t.id !== 'number' || !Number.isSafeInteger(t.id) || t.id < 0) {
      return fail(`added_tokens[${i}] must be {"id": integer >= 0, "content": string, ...}`);
    }
    const { id, content } = t;
    const where = `added_tokens[${i}] (${preview(content)}, id ${id})`;
    if (t.special !== undefined && typeof t.special !== 'boolean') fail(`${where}: "special" is ${preview(t.special)}, expected true or false`);
    if (seenIds.has(id)) fail(`${where}: id ${id} is also used by ${preview(seenIds.get(id))}`);
    if (seenContents.has(content)) fail(`${where}: the same content is added twice`);
    const vocabId = vocab.get(content);
    if (vocabId !== undefined && vocabId !== id) fail(`${where}: model.vocab gives this token id ${vocabId}`);
    const vocabToken = byId.get(id);
    if (vocabToken !== undefined && vocabToken !== content) fail(`${where}: model.vocab uses id ${id} for ${preview(vocabToken)}`);
    seenIds.set(id, content);
    seenContents.add(content);
    out.push({ id, content, special: t.special === true });
  }
  return out;
}

/** A tokenizer.json model; build it with loadHfTokenizer. */
export class HfTokenizer implements Tokenizer {
  readonly kind: 'bpe' | 'wordpiece';
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  private readonly lib: HfLibTokenizer;
  private readonly specialIds: Set<number>;
  private readonly subwordPrefix: string;

  constructor(
    readonly file: string,
    checked: CheckedTokenizerJson,
    lib: HfLibTokenizer,
    special: { bosId: number | null; eosId: number | null; padId: number | null },
  ) {
    this.kind = checked.kind;
    this.lib = lib;
    this.subwordPrefix = checked.subwordPrefix;
    let maxId = -1;
    for (const id of checked.vocab.values()) maxId = Math.max(maxId, id);
    for (const t of checked.added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
    this.specialIds = new Set(checked.added.filter((t) => t.special).map((t) => t.id));
    this.bosId = special.bosId;
    this.eosId = special.eosId;
    this.padId = special.padId;
  }

  /**
   * Calls into @huggingface/tokenizers, whose pipeline parts (normalizer, pre-tokenizer with its regexes,
   * post-processor templates, decoder) are only exercised here: a malformed part of the file surfaces as a
   * FormatError naming it, not as the library's TypeError.
   */
  private run<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (isBitDistillError(e)) throw e;
      const message = e instanceof Error ? e.message : String(e);
      throw new FormatError(
        this.file,
        `@huggingface/tokenizers cannot ${what} with this tokenizer (${message.length > 200 ? `${message.slice(0, 200)}...` : message})`,
        {
          hint: 'its normalizer, pre_tokenizer, post_processor or decoder block is malformed; restore tokenizer.json from the model',
          cause: e,
        },
      );
    }
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const encoded = this.run('encode', () => this.lib.encode(text).ids);
    const ids = encoded.filter((id): id is number => id !== undefined);
    if (ids.length !== encoded.length) {
      throw new ArgumentError(`${this.file}: text ${JSON.stringify(text.slice(0, 40))} has characters this tokenizer cannot encode`, {
        hint: 'its model has no unk_token; remove or replace those characters',
      });
    }
    if (options.addBos) {
      if (this.bosId === null) {
        throw new ArgumentError(`${this.file}: this tokenizer has no BOS token`, {
          hint: 'encode without addBos (Qwen models start without BOS), or name bos_token in tokenizer_config.json',
        });
      }
      if (ids[0] !== this.bosId) ids.unshift(this.bosId);
    }
    return ids;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const kept: number[] = [];
    for (const id of Array.from(ids)) {
      checkTokenId(this, id);
      if (!(skip && this.specialIds.has(id))) kept.push(id);
    }
    // The library throws on an empty list.
    return kept.length === 0 ? '' : this.run('decode', () => this.lib.decode(kept));
  }

  decodeToken(id: number): string {
    checkTokenId(this, id);
    if (this.specialIds.has(id)) return '';
    if (this.kind === 'wordpiece') {
      // As the WordPiece decoder treats every token after the first: '##' pieces glue, others get a space.
      const token = this.idToToken(id) ?? '';
      return this.subwordPrefix && token.startsWith(this.subwordPrefix) ? token.slice(this.subwordPrefix.length) : ' ' + token;
    }
    // Byte-level BPE pieces decode on their own; cleanup (" ." -> ".") only makes sense on whole texts.
    return this.run('decode', () => this.lib.decode([id], { clean_up_tokenization_spaces: false }));
  }

  idToToken(id: number): string | null {
    return this.lib.id_to_token(id) ?? null;
  }

  tokenToId(token: string): number | null {
    return this.lib.token_to_id(token) ?? null;
  }
}

/** Reads and checks `file` (a tokenizer.json) and tokenizer_config.json next to it, if there is one. */
export function loadHfTokenizer(file: string): HfTokenizer {
  if (!existsSync(file)) {
    throw new NotFoundError(file, `tokenizer file ${file} does not exist`, {
      hint: "copy the model's tokenizer.json (and tokenizer_config.json) into its folder",
    });
  }
  const checked = validateTokenizerJson(readJsonObject(file), file);
  const configFile = join(dirname(file), 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJsonObject(configFile) : null;

  let lib: HfLibTokenizer;
  try {
    lib = new HfLib(checked.json, config ?? {});
    // The library keeps the tokenizer.json object it was given, whose model.vocab (an object of ~150k keys for
    // Qwen3) it has already copied into its own Map and array: drop that copy (6 MiB of retained heap for Qwen3,
    // 46 -> 40 MiB). Its BPE model also keeps the merges list, which it reads only in its constructor (to build
    // its rank Map): drop both references to it (another 151k pairs for Qwen3).
    const model = checked.json.model as JsonObject;
    if (model.type === 'BPE') {
      delete model.vocab;
      delete model.merges;
      if (lib.model !== undefined && Array.isArray(lib.model.merges)) lib.model.merges = [];
    }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new UnsupportedError(
      `${file}: @huggingface/tokenizers cannot build this tokenizer (${message.length > 200 ? `${message.slice(0, 200)}...` : message})`,
      {
        hint: 'a normalizer, pre-tokenizer or decoder type it does not implement; see its README for the list',
        cause: e,
      },
    );
  }
  const lookup = (token: string): number | null => lib.token_to_id(token) ?? null;

  if (config !== null) checkConfigAddedTokens(config, configFile, lookup);
  const special = (key: SpecialKey): number | null => {
    if (config !== null && key in config) {
      const v = config[key];
      const content = isObject(v) ? v.content : v;
      if (content === null) return null;
      if (typeof content !== 'string') {
        throw new FormatError(configFile, `${key} must be a token string, {"content": ...} or null`, { hint: CORRUPT_HINT });
      }
      const id = lookup(content);
      if (id === null) {
        throw new FormatError(configFile, `${key} ${preview(content)} is not a token of ${file}`, {
          hint: 'tokenizer_config.json belongs to another tokenizer; copy the pair from the same model',
        });
      }
      return id;
    }
    for (const name of COMMON_NAMES[key]) {
      const t = checked.added.find((a) => a.content === name);
      if (t) return t.id;
    }
    return null;
  };
  const tok = new HfTokenizer(file, checked, lib, {
    bosId: special('bos_token'),
    eosId: special('eos_token'),
    padId: special('pad_token'),
  });
  // The library builds its pipeline parts lazily: run each once now, so a broken one fails at load.
  tok.decode(tok.encode('Probe: héllo, world 123!'), { skipSpecialTokens: false });
  return tok;
}

/** tokenizer_config.json's added_tokens_decoder (id -> {content}) must agree with tokenizer.json. */
function checkConfigAddedTokens(config: JsonObject, configFile: string, lookup: (t: string) => number | null): void {
  const decoder = config.added_tokens_decoder;
  if (decoder === undefined) return;
  if (!isObject(decoder)) throw new FormatError(configFile, 'added_tokens_decoder must be an object', { hint: CORRUPT_HINT });
  for (const [key, entry] of Object.entries(decoder)) {
    const content = isObject(entry) ? entry.content : undefined;
    if (typeof content !== 'string' || lookup(content) !== Number(key)) {
      throw new FormatError(
        configFile,
        `added_tokens_decoder[${preview(key)}] (${preview(content)}) does not match tokenizer.json, which gives it id ${typeof content === 'string' ? lookup(content) : 'none'}`,
        { hint: 'tokenizer_config.json belongs to another tokenizer; copy the pair from the same model' },
      );
    }
  }
}
