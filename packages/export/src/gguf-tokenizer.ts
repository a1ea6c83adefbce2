/**
 * The `tokenizer.ggml.*` metadata of a GGUF export, as llama.cpp's convert_hf_to_gguf.py writes it:
 *   - llama2.c tokenizer.bin (SentencePiece BPE with byte fallback) -> model "llama" (_set_vocab_sentencepiece):
 *     tokens with ' ' written back as '▁' and BOS/EOS as <s>/</s>, scores, token_type (UNKNOWN <unk>, CONTROL
 *     <s> </s>, BYTE <0xXX>, NORMAL otherwise), bos 1 / eos 2 / unk 0, add_bos_token true;
 *   - Hugging Face byte-level BPE with Qwen2's pre-tokenizer regex -> model "gpt2", pre "qwen2" (_set_vocab_gpt2):
 *     tokens as in tokenizer.json, token_type (CONTROL for added tokens that are special or look like control
 *     tokens, e.g. Qwen's non-special <|fim_prefix|>, as the converter's does_token_look_special decides;
 *     USER_DEFINED for the other added tokens; NORMAL), merges "a b", special ids from tokenizer_config.json
 *     (llama.cpp overrides a control-looking token typed otherwise and warns "probably a bug in the model" at
 *     every load); the whole tokenizer.json is also embedded as
 *     tokenizer.huggingface.json (a standard GGUF key) so that BitDistill's runtime can rebuild the exact tokenizer.
 * Ids between the tokenizer's size and the model's vocab_size become "[PAD<i>]" UNUSED tokens, as the converter
 * pads them. Anything else (WordPiece, other pre-tokenizers) is reported as a problem, not guessed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, FormatError } from '@bitdistill/core';
import { gv, type GgufValue } from '@bitdistill/format';
import { loadLlama2cTokenizer, loadTokenizer } from '@bitdistill/data';

/** gguf-py TokenType / llama.cpp llama_token_type. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** Qwen2/Qwen2.5/Qwen3 tokenizer.json Split regex; llama.cpp names this pre-tokenizer "qwen2". */
export const QWEN2_PRETOKENIZER_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

export interface GgufTokenizer {
  entries: [string, GgufValue][];
  /** Why this tokenizer cannot be written for llama.cpp (empty when it can). */
  problems: string[];
  kind: 'llama' | 'gpt2' | 'none';
}

type Json = Record<string, unknown>;

/**
 * Whether an added token that tokenizer.json does not mark special still reads as a control token, by the rule of
 * llama.cpp's convert_hf_to_gguf.py (does_token_look_special): a few fixed names, <|...|>, <｜...｜>, <unused...>.
 */
export function looksLikeControlToken(text: string): boolean {
  if (['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(text)) return true;
  if (text.startsWith('<|') && text.endsWith('|>')) return true;
  if (text.startsWith('<\uff5c') && text.endsWith('\uff5c>')) return true;
  return text.startsWith('<unused') && text.endsWith('>');
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON file that must hold one object; anything else is a FormatError naming the file. */
function readJsonObject(file: string, text: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `not valid JSON: ${(e as Error).message}`, {
      hint: 'the tokenizer files of the checkpoint are corrupt; copy them again from the base model',
      cause: e,
    });
  }
  if (!isObject(v))
    throw new FormatError(file, 'expected a JSON object', { hint: 'the tokenizer files of the checkpoint are corrupt; copy them again from the base model' });
  return v;
}

/** The tokenizer of checkpoint folder `dir` as GGUF metadata for a model with `vocabSize` embedding rows. */
export function ggufTokenizerMetadata(dir: string, vocabSize: number, config: Json): GgufTokenizer {
  // Ids up to vocabSize are padded one by one: the caller checks it against the embedding first.
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 1 || vocabSize > 1 << 22)
    throw new ArgumentError(`ggufTokenizerMetadata: vocabSize must be an integer in [1, 2^22], got ${vocabSize}`);
  if (existsSync(join(dir, 'tokenizer.json'))) return hfBpe(dir, vocabSize, config);
  const bin = existsSync(join(dir, 'tokenizer.bin')) ? join(dir, 'tokenizer.bin') : null;
  if (bin !== null) return llama2c(bin, vocabSize);
  return { entries: [], problems: [`no tokenizer in ${dir} (tokenizer.json or tokenizer.bin); llama.cpp needs the vocabulary inside the GGUF`], kind: 'none' };
}

function pad(tokens: string[], types: number[], scores: number[] | null, vocabSize: number): void {
  for (let i = tokens.length; i < vocabSize; i++) {
    tokens.push(`[PAD${i}]`);
    types.push(TOKEN_TYPE.UNUSED);
    scores?.push(-1000);
  }
}

function llama2c(file: string, vocabSize: number): GgufTokenizer {
  const tok = loadLlama2cTokenizer(file);
  if (tok.vocabSize > vocabSize)
    return { entries: [], problems: [`${file} has ${tok.vocabSize} tokens, more than the model's vocab_size ${vocabSize}`], kind: 'llama' };
  const tokens: string[] = [];
  const types: number[] = [];
  const scores: number[] = Array.from(tok.scores);
  for (let id = 0; id < tok.vocabSize; id++) {
    const piece = tok.idToToken(id) ?? '';
    // llama2.c's tokenizer.py wrote '▁' as ' ' and BOS/EOS as '\n<s>\n' / '\n</s>\n'; SentencePiece's own pieces
    // (what llama.cpp's "llama" tokenizer expects) are restored here.
    if (id === tok.bosId) {
      tokens.push('<s>');
      types.push(TOKEN_TYPE.CONTROL);
    } else if (id === tok.eosId) {
      tokens.push('</s>');
      types.push(TOKEN_TYPE.CONTROL);
    } else if (id === 0) {
      tokens.push(piece);
      types.push(TOKEN_TYPE.UNKNOWN);
    } else if (/^<0x[0-9A-F]{2}>$/.test(piece)) {
      tokens.push(piece);
      types.push(TOKEN_TYPE.BYTE);
    } else {
      tokens.push(piece.replaceAll(' ', '\u2581'));
      types.push(TOKEN_TYPE.NORMAL);
    }
  }
  pad(tokens, types, scores, vocabSize);
  return {
    kind: 'llama',
    problems: [],
    entries: [
      ['tokenizer.ggml.model', gv.str('llama')],
      ['tokenizer.ggml.pre', gv.str('default')],
      ['tokenizer.ggml.tokens', gv.strings(tokens)],
      ['tokenizer.ggml.scores', gv.f32s(scores)],
      ['tokenizer.ggml.token_type', gv.i32s(types)],
      ['tokenizer.ggml.bos_token_id', gv.u32(tok.bosId)],
      ['tokenizer.ggml.eos_token_id', gv.u32(tok.eosId)],
      ['tokenizer.ggml.unknown_token_id', gv.u32(0)],
      ['tokenizer.ggml.add_bos_token', gv.bool(true)],
      ['tokenizer.ggml.add_eos_token', gv.bool(false)],
    ],
  };
}

function hfBpe(dir: string, vocabSize: number, config: Json): GgufTokenizer {
  const file = join(dir, 'tokenizer.json');
  const tok = loadTokenizer(dir); // validates the file (vocab, merges, added tokens) and finds the special ids
  const text = readFileSync(file, 'utf8');
  const json = readJsonObject(file, text);
  const model = isObject(json['model']) ? json['model'] : {};
  const problems: string[] = [];
  if (tok.kind !== 'bpe')
    problems.push(`${file} is a ${tok.kind} tokenizer; llama.cpp's decoder GGUFs take SentencePiece ("llama") or byte-level BPE ("gpt2") vocabularies`);
  const pre = json['pre_tokenizer'];
  const split =
    isObject(pre) && Array.isArray(pre['pretokenizers']) ? (pre['pretokenizers'] as unknown[]).find((p) => isObject(p) && p['type'] === 'Split') : undefined;
  const regex = isObject(split) && isObject(split['pattern']) ? split['pattern']['Regex'] : undefined;
  if (tok.kind === 'bpe' && regex !== QWEN2_PRETOKENIZER_REGEX) {
    problems.push(
      `${file}: its pre-tokenizer is not Qwen2's (llama.cpp "qwen2"); llama.cpp picks a pre-tokenizer by name, and naming the wrong one would tokenize differently`,
    );
  }
  if (tok.vocabSize > vocabSize) problems.push(`${file} has ${tok.vocabSize} tokens, more than the model's vocab_size ${vocabSize}`);
  if (problems.length > 0) return { entries: [], problems, kind: 'gpt2' };

  const added = new Map<number, boolean>();
  for (const a of Array.isArray(json['added_tokens']) ? (json['added_tokens'] as unknown[]) : [])
    if (isObject(a) && typeof a['id'] === 'number') added.set(a['id'], a['special'] === true);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    const t = tok.idToToken(id);
    if (t === null) {
      tokens.push(`[PAD${id}]`);
      types.push(TOKEN_TYPE.UNUSED);
    } else {
      tokens.push(t);
      types.push(added.has(id) ? (added.get(id) === true || looksLikeControlToken(t) ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED) : TOKEN_TYPE.NORMAL);
    }
  }
  pad(tokens, types, null, vocabSize);
  const merges: string[] = [];
  for (const m of (Array.isArray(model['merges']) ? model['merges'] : []) as unknown[]) {
    const pair = Array.isArray(m) ? (m as string[]) : String(m).split(' ');
    if (pair.length !== 2 || pair.some((p) => p.includes(' ')))
      return { entries: [], problems: [`${file}: merge ${JSON.stringify(m)} cannot be written as "a b"`], kind: 'gpt2' };
    merges.push(pair.join(' '));
  }
  const configFile = join(dir, 'tokenizer_config.json');
  const tcfg = existsSync(configFile) ? readJsonObject(configFile, readFileSync(configFile, 'utf8')) : {};
  const bos = tok.bosId ?? (typeof config['bos_token_id'] === 'number' ? config['bos_token_id'] : null);
  const entries: [string, GgufValue][] = [
    ['tokenizer.ggml.model', gv.str('gpt2')],
    ['tokenizer.ggml.pre', gv.str('qwen2')],
    ['tokenizer.ggml.tokens', gv.strings(tokens)],
    ['tokenizer.ggml.token_type', gv.i32s(types)],
    ['tokenizer.ggml.merges', gv.strings(merges)],
  ];
  if (tok.eosId !== null) entries.push(['tokenizer.ggml.eos_token_id', gv.u32(tok.eosId)]);
  if (tok.padId !== null) entries.push(['tokenizer.ggml.padding_token_id', gv.u32(tok.padId)]);
  if (bos !== null) entries.push(['tokenizer.ggml.bos_token_id', gv.u32(bos)]);
  entries.push(['tokenizer.ggml.add_bos_token', gv.bool(tcfg['add_bos_token'] === true)]);
  entries.push(['tokenizer.huggingface.json', gv.str(text)]);
  if (existsSync(configFile)) entries.push(['bitdistill.tokenizer_config_json', gv.str(readFileSync(configFile, 'utf8'))]);
  return { kind: 'gpt2', problems: [], entries };
}
