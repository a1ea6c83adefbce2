/**
 * The one tokenizer interface the rest of the pipeline sees, whatever file it came from:
 *   'bpe' / 'wordpiece'  a Hugging Face tokenizer.json (hf-tokenizer.ts), e.g. Qwen3 byte-level BPE, BERT
 *   'llama2c'            a llama2.c tokenizer.bin (llama2c-tokenizer.ts), e.g. tinyllamas tok512.bin
 * loadTokenizer (load-tokenizer.ts) picks the implementation from the files in a model folder.
 */
import { ArgumentError } from '@bitdistill/core';

export type TokenizerKind = 'bpe' | 'wordpiece' | 'llama2c';

export interface EncodeOptions {
  /** Prepend bosId (unless the tokenizer's own template already put it first). Throws if bosId is null. */
  addBos?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS/EOS/PAD, chat markers, [CLS]...) from the text. Default true. */
  skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** One more than the largest token id (the model's embedding may be padded beyond it). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  /** Token ids of `text`, with whatever the tokenizer's own post-processor adds (BERT: [CLS] ... [SEP]). */
  encode(text: string, options?: EncodeOptions): number[];
  /** The text of `ids`; the inverse of encode up to normalisation (lowercasing, NFC, ...). */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  /**
   * The text one token adds in the middle of a sequence ('' for special tokens). A character split over
   * several byte tokens comes out as U+FFFD here: to stream generated text, use StreamDecoder.
   */
  decodeToken(id: number): string;
  /** The vocabulary entry of `id` as stored in the file (e.g. 'Ġworld', '##ing', ' upon'), or null. */
  idToToken(id: number): string | null;
  tokenToId(token: string): number | null;
}

/**
 * Turns generated ids into text as they arrive: push(id) returns the text that has become final. It decodes a
 * short window (the previous token plus the new ones) rather than single tokens, so context-dependent decoding
 * (the space stripped after BOS, ## pieces, cleanup of " ,") and characters split over several byte tokens
 * (held back while the text ends in U+FFFD) come out right. The offsets scheme is the one of HF
 * text-generation-inference's incremental decoding.
 */
export class StreamDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly tokenizer: Tokenizer) {}

  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (text.length <= prefix.length || text.endsWith('\uFFFD')) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }

  /** The text still held back (an incomplete character at the end of generation). */
  flush(): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }
}

/** Throws ArgumentError unless `id` is a token id of `tokenizer`. */
export function checkTokenId(tokenizer: Tokenizer, id: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= tokenizer.vocabSize || tokenizer.idToToken(id) === null) {
    throw new ArgumentError(`token id ${id} is not in the ${tokenizer.kind} vocabulary (size ${tokenizer.vocabSize})`, {
      hint: 'the ids come from a different tokenizer or model than the one loaded',
    });
  }
}
