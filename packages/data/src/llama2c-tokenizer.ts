/**
 * The llama2.c tokenizer (Karpathy's `tokenizer.bin`, e.g. tinyllamas tok512.bin): a SentencePiece BPE with
 * byte fallback, exported with '▁' already replaced by ' '.
 *
 * File (little-endian): int32 max_token_length, then per token: float32 score, int32 len, len bytes.
 * The vocabulary size is not stored (run.c takes it from the model header): pass it, or the whole file is read
 * and must end exactly after the last token. Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS) and 3..258 the
 * byte tokens <0x00>..<0xFF>, which run.c's byte fallback (+3) relies on, so they are checked.
 *
 * encode() is run.c's encode(): [BOS], the dummy-prefix token " " when the text is not empty, each UTF-8
 * codepoint as its token or as byte tokens, then repeatedly merge the adjacent pair whose concatenation is in the
 * vocabulary with the highest score (the leftmost such pair on ties). run.c rescans all pairs per merge (O(n^2));
 * here a heap gives the same choices in O(n log n). Differences: a NUL character is byte-encoded (<0x00>) where
 * the C string would end.
 * decode() is run.c's decode(): the leading space of the first piece (after BOS) is dropped as SentencePiece
 * does, byte tokens become raw bytes, and the bytes are UTF-8 decoded at the end.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { ArgumentError, BitDistillError, FormatError, NotFoundError } from '@bitdistill/core';
import { preview } from './preview.ts';
import { checkTokenId } from './tokenizer.ts';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './tokenizer.ts';

const BOS = 1;
const EOS = 2;
const BYTE_OFFSET = 3; // <0x00> is token 3
const MIN_SCORE = Math.fround(-1e10); // run.c: a pair scoring at or below this is never merged

export interface Llama2cTokenizerOptions {
  /** Number of tokens (the model's vocab_size); default: read to the end of the file. */
  vocabSize?: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Bytes as a string of char codes 0..255: a Map key that compares and concatenates like C strings. Node's
 * latin1 is that mapping (String.fromCharCode(...bytes) is too, but a spread of a long token overflows the
 * call stack).
 */
function byteKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

export class Llama2cTokenizer implements Tokenizer {
  readonly kind = 'llama2c';
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly padId = null;
  readonly vocabSize: number;
  private readonly keys: string[];
  private readonly lookup = new Map<string, number>();
  private readonly spaceId: number;

  constructor(
    readonly file: string,
    readonly maxTokenLength: number,
    private readonly pieces: Uint8Array[],
    readonly scores: Float32Array,
  ) {
    this.vocabSize = pieces.length;
    this.keys = pieces.map(byteKey);
    this.keys.forEach((k, id) => this.lookup.set(k, id));
    this.spaceId = this.lookup.get(' ') ?? -1;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const tokens: number[] = [];
    if (options.addBos) tokens.push(BOS);
    const bytes = new TextEncoder().encode(text);
    if (bytes.length > 0) tokens.push(this.spaceId); // add_dummy_prefix
    // One codepoint = a byte plus the continuation bytes (10xxxxxx) after it, at most 4 bytes.
    for (let i = 0; i < bytes.length;) {
      let end = i + 1;
      while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80 && end - i < 4) end++;
      const piece = bytes.subarray(i, end);
      const id = this.lookup.get(byteKey(piece));
      if (id !== undefined) tokens.push(id);
      else for (const b of piece) tokens.push(b + BYTE_OFFSET); // byte fallback
      i = end;
    }
    return this.merge(tokens);
  }

  /**
   * run.c's merge loop. Tokens form a linked list over their starting positions; the heap holds candidate pairs
   * keyed by (score desc, position asc), which is the pair run.c's left-to-right scan with `>` picks. A pair is
   * stale once either side has changed (its version moved on).
   */
  private merge(tokens: number[]): number[] {
    const n = tokens.length;
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const version = new Int32Array(n);
    const heap = new PairHeap();
    const consider = (left: number): void => {
      const right = left < 0 ? -1 : next[left]!;
      if (right < 0) return;
      const id = this.lookup.get(this.keys[tokens[left]!]! + this.keys[tokens[right]!]!);
      if (id === undefined || !(this.scores[id]! > MIN_SCORE)) return;
      heap.push({ score: this.scores[id]!, left, right, id, leftVersion: version[left]!, rightVersion: version[right]! });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    for (let c = heap.pop(); c !== undefined; c = heap.pop()) {
      if (version[c.left] !== c.leftVersion || version[c.right] !== c.rightVersion) continue;
      tokens[c.left] = c.id;
      version[c.left]!++;
      version[c.right]!++; // removed
      const after = next[c.right]!;
      next[c.left] = after;
      if (after >= 0) prev[after] = c.left;
      consider(prev[c.left]!);
      consider(c.left);
    }
    const out: number[] = [];
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) out.push(tokens[i]!);
    return out;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const chunks: Uint8Array[] = [];
    let prev = BOS; // the first piece loses its dummy-prefix space, as after BOS
    for (const id of Array.from(ids)) {
      checkTokenId(this, id);
      if ((id === BOS || id === EOS) && skip) {
        prev = id;
        continue;
      }
      // As run.c: the space test is on the stored piece, so the byte token <0x20> keeps its space.
      const stripSpace = prev === BOS && this.pieces[id]![0] === 0x20;
      chunks.push(stripSpace ? this.pieces[id]!.subarray(1) : this.pieceBytes(id));
      prev = id;
    }
    return utf8.decode(Buffer.concat(chunks));
  }

  decodeToken(id: number): string {
    checkTokenId(this, id);
    return id === BOS || id === EOS ? '' : utf8.decode(this.pieceBytes(id));
  }

  idToToken(id: number): string | null {
    const piece = this.pieces[id];
    return piece === undefined ? null : utf8.decode(piece);
  }

  tokenToId(token: string): number | null {
    return this.lookup.get(byteKey(new TextEncoder().encode(token))) ?? null;
  }

  /** The bytes a token stands for: the raw byte for <0xXX> tokens, else its piece. */
  private pieceBytes(id: number): Uint8Array {
    if (id >= BYTE_OFFSET && id < BYTE_OFFSET + 256) return Uint8Array.of(id - BYTE_OFFSET);
    return this.pieces[id]!;
  }
}

interface PairCandidate {
  score: number;
  left: number;
  right: number;
  id: number;
  leftVersion: number;
  rightVersion: number;
}

/** Binary max-heap on (score, then smaller left position). */
class PairHeap {
  private readonly items: PairCandidate[] = [];

  private static before(a: PairCandidate, b: PairCandidate): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }

  push(c: PairCandidate): void {
    const items = this.items;
    items.push(c);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!PairHeap.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): PairCandidate | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    items[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < items.length && PairHeap.before(items[l]!, items[best]!)) best = l;
      if (r < items.length && PairHeap.before(items[r]!, items[best]!)) best = r;
      if (best === i) break;
      [items[i], items[best]] = [items[best]!, items[i]!];
      i = best;
    }
    return top;
  }
}

/** Parses a llama2.c tokenizer file's bytes, checking every length against the file and the header. */
export function parseLlama2cTokenizer(bytes: Uint8Array, file: string, options: Llama2cTokenizerOptions = {}): Llama2cTokenizer {
  const { vocabSize } = options;
  if (vocabSize !== undefined && (!Number.isSafeInteger(vocabSize) || vocabSize <= 0)) {
    throw new ArgumentError(`vocabSize must be a positive integer, got ${vocabSize}`);
  }
  const hint = 'expected a llama2.c tokenizer.bin (as written by llama2.c tokenizer.py export); the file is truncated, corrupted or another format';
  const fail = (message: string): never => {
    throw new FormatError(file, message, { hint });
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) fail(`${bytes.length} bytes is too short for the 4-byte header`);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0) fail(`max_token_length is ${maxTokenLength}; expected a positive number`);
  // run.c allocates buffers from it: no token can be longer than the file.
  if (maxTokenLength > bytes.length) fail(`max_token_length is ${maxTokenLength}, more than the ${bytes.length}-byte file`);
  if (vocabSize !== undefined && vocabSize > (bytes.length - 4) / 9) {
    fail(`vocab size ${vocabSize} needs at least ${vocabSize * 9 + 4} bytes (score, length, one byte a token); the file has ${bytes.length}`);
  }

  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let off = 4;
  while (vocabSize === undefined ? off < bytes.length : pieces.length < vocabSize) {
    const i = pieces.length;
    const expected = vocabSize === undefined ? '' : ` of ${vocabSize}`;
    if (off + 8 > bytes.length) fail(`truncated at token ${i}${expected}: its score and length need 8 bytes at offset ${off}, the file has ${bytes.length}`);
    const score = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    off += 8;
    if (!Number.isFinite(score)) fail(`token ${i}: score is ${score}`);
    if (len <= 0) fail(`token ${i}: length ${len}; expected 1..max_token_length (${maxTokenLength})`);
    if (len > maxTokenLength) fail(`token ${i}: length ${len} exceeds max_token_length ${maxTokenLength}`);
    if (off + len > bytes.length) fail(`truncated in token ${i}${expected}: ${len} bytes at offset ${off}, the file has ${bytes.length}`);
    const piece = bytes.slice(off, off + len);
    off += len;
    if (piece.includes(0)) fail(`token ${i} contains a NUL byte, which llama2.c's C strings cannot hold`);
    try {
      strictUtf8.decode(piece);
    } catch {
      fail(`token ${i} is not valid UTF-8`);
    }
    pieces.push(piece);
    scores.push(score);
  }
  if (off !== bytes.length) {
    fail(`${bytes.length - off} bytes remain after ${pieces.length} tokens; the vocab size given (${vocabSize}) does not match the file`);
  }

  // run.c hard-codes BOS=1, EOS=2 and byte fallback to id byte+3, and looks up " " for the dummy prefix.
  if (pieces.length < BYTE_OFFSET + 256) fail(`${pieces.length} tokens; expected at least 259 (<unk>, <s>, </s>, 256 byte tokens)`);
  for (let b = 0; b < 256; b++) {
    const want = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    const got = utf8.decode(pieces[b + BYTE_OFFSET]);
    if (got !== want) fail(`token ${b + BYTE_OFFSET} is ${preview(got)}; expected the byte token ${want}`);
  }
  const seen = new Map<string, number>();
  pieces.forEach((p, id) => {
    const key = byteKey(p);
    const first = seen.get(key);
    if (first !== undefined) fail(`tokens ${first} and ${id} are both ${preview(utf8.decode(p))}; lookups would be ambiguous`);
    seen.set(key, id);
  });
  if (!seen.has(' ')) fail('no " " token (the dummy prefix that encode puts before the text)');
  return new Llama2cTokenizer(file, maxTokenLength, pieces, Float32Array.from(scores));
}

/** Reads a llama2.c tokenizer file (tokenizer.bin, tok512.bin, ...). */
export function loadLlama2cTokenizer(file: string, options: Llama2cTokenizerOptions = {}): Llama2cTokenizer {
  if (!existsSync(file)) {
    throw new NotFoundError(file, `tokenizer file ${file} does not exist`, {
      hint: 'llama2.c models ship their tokenizer separately (tokenizer.bin, or tok512.bin for stories260K)',
    });
  }
  let bytes: Uint8Array;
  try {
    const size = statSync(file).size;
    if (size > MAX_TOKENIZER_BIN_BYTES) {
      throw new FormatError(file, `${size} bytes; a llama2.c tokenizer is at most ${MAX_TOKENIZER_BIN_BYTES / 2 ** 20} MiB`, {
        hint: 'is this a model checkpoint rather than its tokenizer.bin?',
      });
    }
    bytes = readFileSync(file);
  } catch (e) {
    if (e instanceof BitDistillError) throw e;
    throw new BitDistillError('E_IO', `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return parseLlama2cTokenizer(bytes, file, options);
}

/** The largest tokenizer.bin read (a 256k vocabulary takes a few MB). */
export const MAX_TOKENIZER_BIN_BYTES = 256 * 2 ** 20;
