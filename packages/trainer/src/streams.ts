/** Deterministic, resumable batch streams for the SFT stages (task examples) and continual pre-training (corpus). */
import { ArgumentError, Rng } from '@bitdistill/core';
import { CorpusStream, makeSftBatch, type CorpusCursor, type EncodedExample, type Tokenizer } from '@bitdistill/data';
import type { MicroBatch } from './loop.ts';

export interface SftMicroBatch extends MicroBatch {
  B: number;
  T: number;
  inputIds: Int32Array; // [B*T]
  labels: Int32Array; // [B*T] next-token targets
  answerMask: Float32Array; // [B*T] 1 where the target is an answer token
  valid: Float32Array; // [B*T] 1 on non-pad positions
}

export interface SftCursor {
  epoch: number;
  index: number;
}

/** Shuffled (per-epoch permutation from the seed), fixed-size batches; the cursor is (epoch, position). */
export class SftStream {
  private cursor: SftCursor = { epoch: 0, index: 0 };
  private perm: number[] = [];
  private permEpoch = -1;

  constructor(
    private readonly data: readonly EncodedExample[],
    private readonly batchSize: number,
    private readonly maxLen: number,
    private readonly padId: number,
    private readonly seed: number,
  ) {}

  /** Optimizer steps per epoch for a given accumulation. */
  batchesPerEpoch(): number {
    return Math.max(1, Math.floor(this.data.length / this.batchSize));
  }

  private permutation(epoch: number): number[] {
    if (this.permEpoch !== epoch) {
      const rng = new Rng((this.seed * 1000003 + epoch * 7919) >>> 0);
      this.perm = rng.shuffle(Array.from({ length: this.data.length }, (_, i) => i));
      this.permEpoch = epoch;
    }
    return this.perm;
  }

  next(): SftMicroBatch {
    if (this.cursor.index + this.batchSize > this.data.length) this.cursor = { epoch: this.cursor.epoch + 1, index: 0 };
    const perm = this.permutation(this.cursor.epoch);
    const take = Math.min(this.batchSize, this.data.length);
    const items = perm.slice(this.cursor.index, this.cursor.index + take).map((i) => this.data[i] as EncodedExample);
    this.cursor = { epoch: this.cursor.epoch, index: this.cursor.index + take };
    const b = makeSftBatch(items, this.maxLen, this.padId);
    let tokens = 0;
    for (const v of b.attentionMask) tokens += v;
    return { B: b.B, T: b.T, inputIds: b.inputIds, labels: b.labels, answerMask: b.answerMask, valid: b.attentionMask, tokens };
  }

  get epoch(): number {
    return this.cursor.epoch;
  }

  getCursor(): SftCursor {
    return { ...this.cursor };
  }

  setCursor(c: unknown): void {
    const cc = (c !== null && typeof c === 'object' ? c : {}) as Partial<SftCursor>;
    const ok = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
    if (!ok(cc.epoch, Number.MAX_SAFE_INTEGER) || !ok(cc.index, this.data.length)) {
      throw new ArgumentError(`an SFT data cursor is {"epoch": n, "index": 0..${this.data.length}}, got ${JSON.stringify(c)?.slice(0, 80)}`);
    }
    this.cursor = { epoch: cc.epoch, index: cc.index };
  }
}

/** Continual pre-training: packed corpus sequences of seqLen + 1 tokens, batchSize at a time. */
export class LmStream {
  private stream: CorpusStream;

  constructor(
    private readonly paths: readonly string[],
    private readonly tokenizer: Tokenizer,
    private readonly seqLen: number,
    private readonly batchSize: number,
  ) {
    this.stream = new CorpusStream(paths, tokenizer, seqLen);
  }

  async next(): Promise<SftMicroBatch> {
    const B = this.batchSize;
    const T = this.seqLen;
    const inputIds = new Int32Array(B * T);
    const labels = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const seq = await this.stream.next(); // seqLen + 1 tokens
      for (let t = 0; t < T; t++) {
        inputIds[b * T + t] = seq[t] as number;
        labels[b * T + t] = seq[t + 1] as number;
      }
    }
    const ones = new Float32Array(B * T).fill(1);
    return { B, T, inputIds, labels, answerMask: ones, valid: ones, tokens: B * T };
  }

  get epoch(): number {
    return this.stream.cursor().epoch;
  }

  getCursor(): CorpusCursor {
    return this.stream.cursor();
  }

  setCursor(c: unknown): void {
    this.stream.close();
    this.stream = new CorpusStream(this.paths, this.tokenizer, this.seqLen, c as CorpusCursor);
  }

  close(): void {
    this.stream.close();
  }
}
