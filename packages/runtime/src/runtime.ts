/**
 * The packed-ternary runtime: loads an export folder (DESIGN.md "Ternary export") and runs the decoder on the
 * CPU without tfjs. Every quantized projection is int8 activations x ternary weights through kernels-cpu
 * (exact integer accumulation, then acc * weightScale / actScale); SubLN, norms, RoPE, attention (native, over
 * the KV cache) and the lm_head run in float32. The arithmetic mirrors the fake-quantized tfjs student, so
 * predictions agree. Option `embeddings: 'int8'` holds the embeddings / lm_head as int8 rows (one scale each):
 * a quarter of their memory and of the lm_head's reads per token, at a measured cost of 0-3 changed answers in
 * 872 on SST-2 dev (docs/results/inference.md).
 *
 * Loading trusts nothing in the file: every tensor the config implies must be there with exactly the shape and
 * dtype it implies, nothing else may be, and weights and scales must be finite and in range (a malformed export
 * is a FormatError naming the tensor, never a model that computes NaN).
 *
 * Layout of activations: x [T, C] row-major for one sequence; K/V caches [layer][Hkv, maxT, d].
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError, NotFoundError, UnsupportedError, ArgumentError, fusedOpsEnabled, shapeSize } from '@bitdistill/core';
import { inMemoryTensor, isGgufFile, openSafetensorsDir, readJsonObjectFile, tensorToFloat32, type LazyTensor, type TensorEntry } from '@bitdistill/format';
import { parseDecoderConfig, PROJECTIONS, projectionName, projectionShape, sublnName, type DecoderConfig, type Projection } from '@bitdistill/arch';
import { loadTokenizer, type Tokenizer } from '@bitdistill/data';
import { loadGgufModel } from './gguf.ts';
import {
  applyRope,
  attentionCausal,
  argmax,
  attentionKvF16,
  decodeLayer,
  decodeLayerWeights,
  dequantizeRow,
  allocHugePages,
  HugePageArena,
  ternaryLayoutBytes,
  matmulF32,
  matvecF32,
  matvecI8,
  quantizeActivations,
  quantizeRowsInt8,
  repackTernary,
  rmsNorm,
  ropeTables,
  ternaryStack,
  swigluF32,
  ternaryLinear,
  ternaryLinearStacked,
  type DecodeLayerWeights,
  type Int8RowMatrix,
  type QuantizedActivations,
  type TernaryMatrix,
  type TernarySegments,
} from '@bitdistill/kernels-cpu/runtime';

/** A projection as the runtime holds it: ternary (per-tensor scale) or dense fp32 (excluded / other schemes). */
type Linear =
  | { kind: 'ternary'; w: TernaryMatrix; scale: number; rows: number; cols: number; bias: Float32Array | null }
  | { kind: 'dense'; w: Float32Array; rows: number; cols: number; bias: Float32Array | null };

interface Layer {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  proj: Record<Projection, Linear>;
  subln: Partial<Record<Projection, Float32Array>>;
  /** q/k/v and gate/up stacked into one matrix each (same input, one product and one dispatch), when every part
   * is ternary, bias-free, without its own SubLN and of whole 4-row tiles (STACKS); the parts' weights are its slices. */
  qkv: Stacked | null;
  gateUp: Stacked | null;
  /** The whole layer as one native call (kernels-cpu decodeLayer) when every projection is ternary and the addon
   * is loaded (and options.fusedLayers is not false); null runs it op by op, the twin it is tested against. */
  fused: DecodeLayerWeights | null;
}

interface Stacked {
  w: TernaryMatrix;
  seg: TernarySegments;
}

/** Projections that read the same input and are run as one stacked product when they can be. */
const STACKS: readonly (readonly Projection[])[] = [
  ['q_proj', 'k_proj', 'v_proj'],
  ['gate_proj', 'up_proj'],
];

/**
 * How the runtime holds the token embeddings and the lm_head: `fp32` as exported (exact), or `int8` with one
 * float32 scale per row (a quarter of the bytes; the lm_head product reads 4x less memory per token).
 */
export type EmbeddingMode = 'fp32' | 'int8';
export const EMBEDDING_MODES: readonly EmbeddingMode[] = ['fp32', 'int8'];

/**
 * How the KV cache holds keys and values: `f32` (exact: the runtime agrees with the tfjs student) or `f16` (IEEE
 * binary16, rounded to nearest even: half the cache memory and the attention's memory traffic, llama.cpp's
 * default). f16 is not free on a ternary student: the rounding moves activations across int8 quantization steps
 * downstream (stories260K student: median |logit diff| vs the tfjs student 0.10 instead of < 0.005).
 */
export type KvCacheMode = 'f16' | 'f32';
export const KV_CACHE_MODES: readonly KvCacheMode[] = ['f16', 'f32'];

export interface RuntimeOptions {
  /** default 'fp32' */
  embeddings?: EmbeddingMode;
  /** default 'f32' */
  kvCache?: KvCacheMode;
  /**
   * The SubLN RMSNorm epsilon to apply instead of the model's own (config `bitdistill.sublnEps`): what the model
   * computes on a target that uses another, e.g. llama.cpp and transformers, which apply rms_norm_eps there.
   */
  sublnEps?: number;
  /**
   * Run each decoder layer as one native call (kernels-cpu decodeLayer: same arithmetic, bit-identical results)
   * where it can: every projection ternary, native addon loaded. false runs every layer op by op. Default: true,
   * unless BITDISTILL_FUSED=0 (@bitdistill/core's fused-ops switch) is set.
   */
  fusedLayers?: boolean;
}

/** A vocabulary-sized matrix [V, C] in either form. */
type VocabMatrix = { kind: 'fp32'; w: Float32Array } | { kind: 'int8'; m: Int8RowMatrix };

export interface RuntimeInfo {
  dir: string;
  config: DecoderConfig;
  embeddings: EmbeddingMode;
  kvCache: KvCacheMode;
  /** Bytes held by weights in memory (ternary layout + fp32 tensors). */
  weightBytes: number;
  ternaryProjections: number;
  denseProjections: number;
  /** Decoder layers that run as one native call (RuntimeOptions.fusedLayers); the others run op by op. */
  fusedLayers: number;
}

const MISMATCH_HINT = 'the weights do not match the config: re-export the checkpoint with `bitdistill export --ternary`';

function hasBias(c: DecoderConfig, pr: Projection): boolean {
  return pr === 'o_proj' ? c.oBias : pr === 'q_proj' || pr === 'k_proj' || pr === 'v_proj' ? c.qkvBias : false;
}

const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/**
 * The largest weight (and weight_scale) accepted: fp16's maximum. No trained decoder has a weight beyond it
 * (checkpoints are routinely stored in fp16); in a file it means corruption, e.g. a flipped exponent bit, which
 * would overflow float32 a few products later and turn every logit into NaN.
 */
const MAX_WEIGHT = 65504;

/**
 * The tensors of an export, taken one by one with the shape and dtype the config implies; every name taken is
 * remembered, so that whatever the file holds beyond the model can be named (`unexpected`). `file` is where the
 * tensors are (model.safetensors or the GGUF), `source` maps a name to the file's own name for the tensor.
 */
class ExportTensors {
  private readonly taken = new Set<string>();
  constructor(
    private readonly tensors: Map<string, LazyTensor>,
    readonly file: string,
    private readonly source: (name: string) => string,
  ) {}

  fail(name: string, message: string): never {
    const own = this.source(name);
    throw new FormatError(this.file, `tensor '${name}'${own === name ? '' : ` ('${own}' in the file)`} ${message}`, { hint: MISMATCH_HINT });
  }

  /** The tensor's header (dtype, shape) and readers; nothing is read yet. */
  lazy(name: string): LazyTensor {
    const t = this.tensors.get(name);
    if (t === undefined) this.fail(name, 'is missing');
    this.taken.add(name);
    return t;
  }

  /** The whole tensor, read now (the runtime keeps only what it derives from it). */
  get(name: string): TensorEntry {
    return this.lazy(name).read();
  }

  /**
   * A float [rows, cols] matrix as int8 rows with one scale each (quantizeRowsInt8), read and quantized a block of
   * rows at a time so that the float matrix (622 MB for a 151,936 x 1,024 fp32 embedding) is never held whole.
   */
  int8Rows(name: string, rows: number, cols: number, what: string): Int8RowMatrix {
    const t = this.lazy(name);
    if (!FLOAT_DTYPES.includes(t.dtype) || !sameShape(t.shape, [rows, cols]))
      this.fail(name, `is ${t.dtype} [${t.shape.join(', ')}]; expected F32, F16 or BF16 [${rows}, ${cols}] (${what})`);
    const qb = allocHugePages(rows * cols); // the lm_head streams it once per token: 2 MiB pages (allocHugePages)
    const q = new Int8Array(qb.buffer, qb.byteOffset, rows * cols);
    const scale = new Float32Array(rows);
    const block = Math.max(1, Math.floor((1 << 20) / cols));
    // One chunk buffer for every block of rows, read into and quantized into the final arrays: the load allocates
    // nothing per block (garbage that V8 would collect only later, raising the peak resident set).
    const raw = new Uint8Array(block * cols * (t.dtype === 'F32' ? 4 : 2));
    const f32 = t.dtype === 'F32' ? new Float32Array(raw.buffer) : new Float32Array(block * cols);
    for (let r0 = 0; r0 < rows; r0 += block) {
      const r1 = Math.min(rows, r0 + block);
      const n = (r1 - r0) * cols;
      const bytes = raw.subarray(0, n * (t.dtype === 'F32' ? 4 : 2));
      t.readRowsInto(r0, r1, bytes);
      const w = f32.subarray(0, n);
      if (t.dtype !== 'F32') w.set(tensorToFloat32({ dtype: t.dtype, shape: [n], data: new Uint16Array(bytes.buffer, 0, n) } as TensorEntry, name));
      try {
        // quantizeRowsInt8 finds a non-finite row in its own (native) pass; each row's scale is its max |w| / 127.
        quantizeRowsInt8(w, r1 - r0, cols, { q: q.subarray(r0 * cols, r1 * cols), scale: scale.subarray(r0, r1) });
      } catch (e) {
        return this.fail(name, `cannot be held as int8 rows: ${(e as Error).message.replace(/row (\d+)/, (_, r: string) => `row ${r0 + Number(r)}`)}`);
      }
    }
    return { q, scale, rows, cols };
  }

  /**
   * A float tensor of exactly `shape` (`what` says where the shape comes from), every value finite and within
   * ±MAX_WEIGHT (unless `checkValues` is false: the caller checks them another way).
   */
  float(name: string, shape: readonly number[], what: string, checkValues = true): Float32Array {
    const t = this.get(name);
    if (!FLOAT_DTYPES.includes(t.dtype) || !sameShape(t.shape, shape))
      this.fail(name, `is ${t.dtype} [${t.shape.join(', ')}]; expected F32, F16 or BF16 [${shape.join(', ')}] (${what})`);
    const a = tensorToFloat32(t, `${this.file}: ${name}`);
    if (checkValues) {
      const bad = firstOutOfRange(a);
      if (bad >= 0) this.badValue(name, a[bad] as number, `index ${bad}`);
    }
    return a;
  }

  badValue(name: string, v: number, where: string): never {
    return this.fail(name, `holds ${v} at ${where}; the weights of a decoder are finite and within ±${MAX_WEIGHT} (fp16's range)`);
  }

  /** Tensors the model has no place for: a layer beyond num_hidden_layers, a bias the config has not... */
  unexpected(c: DecoderConfig): void {
    for (const name of this.tensors.keys())
      if (!this.taken.has(name)) this.fail(name, `is not part of the model the config describes: ${whyUnexpected(name, c)}`);
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Index of the first value that is NaN or beyond ±MAX_WEIGHT, or -1 (one pass, ~1.5 ns per value). */
function firstOutOfRange(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i] as number;
    if (!(v <= MAX_WEIGHT && v >= -MAX_WEIGHT)) return i;
  }
  return -1;
}

function whyUnexpected(name: string, c: DecoderConfig): string {
  const layer = /^model\.layers\.(\d+)\./.exec(name);
  if (layer !== null && Number(layer[1]) >= c.numLayers) return `it belongs to layer ${layer[1]}, and num_hidden_layers is ${c.numLayers}`;
  if (name === 'lm_head.weight') return 'tie_word_embeddings is true, so the logits use model.embed_tokens.weight';
  if (name.endsWith('.bias')) return `model_type ${c.modelType} with attention_bias ${String(c.raw['attention_bias'] ?? false)} has no bias there`;
  if (name.endsWith('.weight_scale')) return 'only a packed (U8) ternary projection has a weight_scale';
  if (/\.(q|k)_norm\.weight$/.test(name)) return 'only model_type qwen3 has q_norm / k_norm';
  if (/_sub_norm\.weight$/.test(name)) return `bitdistill.subln is '${c.subln}', which puts no SubLN gain there`;
  return 'no tensor of this name belongs to the decoder';
}

/**
 * Activation buffers reused across layers and calls, one per role, reallocated only when a size changes.
 * A forward of T tokens used to allocate ~10 fresh arrays per layer (130 MB for a 64-token prefill of a
 * 28-layer model); V8 answered that external-memory pressure with full mark-compact collections of ~60 ms
 * every ~200 ms.
 */
class Buffers {
  private readonly f = new Map<string, Float32Array>();
  private readonly q = new Map<string, QuantizedActivations>();

  f32(role: string, n: number): Float32Array {
    let a = this.f.get(role);
    if (a === undefined || a.length !== n) {
      a = new Float32Array(n);
      this.f.set(role, a);
    }
    return a;
  }

  quant(role: string, rows: number, dim: number): QuantizedActivations {
    let a = this.q.get(role);
    if (a === undefined || a.scale.length !== rows || a.q.length !== rows * dim) {
      a = { q: new Int8Array(rows * dim), scale: new Float32Array(rows) };
      this.q.set(role, a);
    }
    return a;
  }
}

/**
 * x [T, cols] @ W^T for W [rows, cols] in fp32. Small batches (decoding) go to the matrix-vector kernel, which
 * streams W once at memory speed; the blocked GEMM only pays off when many rows share each weight.
 */
function denseProduct(x: Float32Array, w: Float32Array, T: number, cols: number, rows: number, out?: Float32Array): Float32Array {
  return T <= 8 ? matvecF32(w, x, rows, cols, T, out) : matmulF32(x, w, T, cols, rows, { transB: true }, out);
}

export class TernaryRuntime {
  readonly config: DecoderConfig;
  readonly tokenizer: Tokenizer;
  readonly info: RuntimeInfo;
  /** The export's `bitdistill` block (task, template, label words). */
  readonly bitdistill: Record<string, unknown>;
  private readonly embed: VocabMatrix;
  private readonly finalNorm: Float32Array;
  private readonly lmHead: VocabMatrix;
  private readonly layers: Layer[];
  private readonly sublnEps: number;
  private readonly buf = new Buffers();
  private kv: KvCache | null = null;
  private readonly kvMode: KvCacheMode;

  private constructor(dir: string, config: DecoderConfig, tokenizer: Tokenizer, tensors: ExportTensors, options: RuntimeOptions) {
    this.config = config;
    this.tokenizer = tokenizer;
    const bd = config.raw['bitdistill'];
    this.bitdistill = bd !== null && typeof bd === 'object' && !Array.isArray(bd) ? (bd as Record<string, unknown>) : {};
    const c = config;
    const C = c.hiddenSize;
    let weightBytes = 0;
    let ternary = 0;
    let dense = 0;
    const embeddings = options.embeddings ?? 'fp32';
    if (!EMBEDDING_MODES.includes(embeddings)) throw new ArgumentError(`embeddings must be one of ${EMBEDDING_MODES.join(', ')}, got '${String(embeddings)}'`);
    this.kvMode = options.kvCache ?? 'f32';
    if (!KV_CACHE_MODES.includes(this.kvMode)) throw new ArgumentError(`kvCache must be one of ${KV_CACHE_MODES.join(', ')}, got '${String(this.kvMode)}'`);
    this.sublnEps = options.sublnEps ?? c.sublnEps;
    if (!(this.sublnEps > 0 && Number.isFinite(this.sublnEps))) throw new ArgumentError(`sublnEps must be a finite number > 0, got ${this.sublnEps}`);
    const take = (name: string, shape: readonly number[], what: string) => {
      const a = tensors.float(name, shape, what);
      weightBytes += a.byteLength;
      return a;
    };
    const vocabMatrix = (name: string): VocabMatrix => {
      const what = '[vocab_size, hidden_size]';
      if (embeddings === 'fp32') return { kind: 'fp32', w: take(name, [c.vocabSize, C], what) };
      const m = tensors.int8Rows(name, c.vocabSize, C, what);
      for (let r = 0; r < c.vocabSize; r++)
        if ((m.scale[r] as number) * 127 > MAX_WEIGHT * (1 + 1e-6)) tensors.badValue(name, (m.scale[r] as number) * 127, `row ${r} (its max |w|)`);
      weightBytes += m.q.byteLength + m.scale.byteLength;
      return { kind: 'int8', m };
    };
    this.embed = vocabMatrix('model.embed_tokens.weight');
    this.finalNorm = take('model.norm.weight', [C], '[hidden_size]');
    this.lmHead = c.tieWordEmbeddings ? this.embed : vocabMatrix('lm_head.weight');
    this.layers = [];
    let hfScratch = new Uint8Array(0);
    // Every ternary matrix on shared 2 MiB pages: they are streamed once per token (HugePageArena).
    const arena = new HugePageArena();
    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}`;
      const proj = {} as Record<Projection, Linear>;
      const subln: Layer['subln'] = {};
      const inputNorm = take(`${p}.input_layernorm.weight`, [C], '[hidden_size]');
      const postNorm = take(`${p}.post_attention_layernorm.weight`, [C], '[hidden_size]');
      const qNorm = c.qkNorm ? take(`${p}.self_attn.q_norm.weight`, [c.headDim], '[head_dim]') : null;
      const kNorm = c.qkNorm ? take(`${p}.self_attn.k_norm.weight`, [c.headDim], '[head_dim]') : null;
      // Stacks of this layer, decided from the headers: every part packed ternary, bias-free, without its own
      // SubLN and of whole 4-row tiles; each part is then repacked straight into its slice of the stack.
      const stacks = STACKS.map((prs) => {
        const ok = prs.every((pr) => tensors.lazy(`${projectionName(l, pr)}.weight`).dtype === 'U8' && !hasBias(c, pr) && sublnName(l, pr, c.subln) === null);
        const plan = ok
          ? ternaryStack(
              prs.map((pr) => ({ rows: projectionShape(c, pr)[0], cols: projectionShape(c, pr)[1] })),
              (bytes) => arena.take(bytes),
            )
          : null;
        return plan === null ? null : { prs, plan, scales: new Float64Array(prs.length) };
      });
      const sliceFor = (pr: Projection) => {
        for (const st of stacks) if (st !== null && st.prs.includes(pr)) return { st, i: st.prs.indexOf(pr) };
        return null;
      };
      for (const pr of PROJECTIONS) {
        const base = projectionName(l, pr);
        const [rows, cols] = projectionShape(c, pr);
        const bias = hasBias(c, pr) ? take(`${base}.bias`, [rows], `[${rows}], the projection's output size`) : null;
        const lt = tensors.lazy(`${base}.weight`);
        if (lt.dtype === 'U8') {
          if (!sameShape(lt.shape, [Math.ceil(rows / 4), cols])) {
            tensors.fail(
              `${base}.weight`,
              `is U8 [${lt.shape.join(', ')}]; expected [${Math.ceil(rows / 4)}, ${cols}], a packed [${rows}, ${cols}] ternary matrix (from the config's sizes)`,
            );
          }
          const scale = ternaryScale(tensors, `${base}.weight_scale`, rows, cols);
          // The packed bytes go through one scratch buffer, and the layout straight into its stack slice when
          // stacked: a load leaves no per-projection garbage behind (which would raise the peak resident set).
          const n = Math.ceil(rows / 4) * cols;
          if (hfScratch.length < n) hfScratch = new Uint8Array(n);
          lt.readRowsInto(0, Math.ceil(rows / 4), hfScratch.subarray(0, n));
          const at = sliceFor(pr);
          const dst = at === null ? arena.take(ternaryLayoutBytes(rows, cols)) : at.st.plan.slices[at.i];
          const w = repackTernary(hfScratch.subarray(0, n), rows, cols, `${tensors.file}: ${base}.weight`, dst);
          if (at !== null) at.st.scales[at.i] = scale;
          weightBytes += w.data.byteLength;
          proj[pr] = { kind: 'ternary', w, scale, rows, cols, bias };
          ternary++;
        } else {
          const w = take(`${base}.weight`, [rows, cols], `[${rows}, ${cols}], [out, in] from the config's sizes`);
          proj[pr] = { kind: 'dense', w, rows, cols, bias };
          dense++;
        }
        const s = sublnName(l, pr, c.subln);
        if (s !== null) subln[pr] = take(s, [cols], `[${cols}], the input size of ${pr}`);
      }
      const [qkv, gateUp] = stacks.map((st) => (st === null ? null : { w: st.plan.matrix, seg: { ends: st.plan.seg, scales: st.scales } }));
      const layer: Layer = { inputNorm, postNorm, qNorm, kNorm, proj, subln, qkv: qkv ?? null, gateUp: gateUp ?? null, fused: null };
      if (options.fusedLayers ?? fusedOpsEnabled()) layer.fused = this.fusedLayer(layer);
      this.layers.push(layer);
    }
    tensors.unexpected(c);
    this.info = {
      dir,
      config,
      embeddings,
      kvCache: this.kvMode,
      weightBytes,
      ternaryProjections: ternary,
      denseProjections: dense,
      fusedLayers: this.layers.filter((L) => L.fused !== null).length,
    };
  }

  /**
   * Load an export: a folder (config.json with quantization_config, model.safetensors, tokenizer) or a GGUF file
   * written by `bitdistill export --format gguf` (llama.cpp's bitnet architecture; see gguf.ts).
   */
  static load(dir: string, options: RuntimeOptions = {}): TernaryRuntime {
    const cfgPath = join(dir, 'config.json');
    if (!existsSync(dir)) throw new NotFoundError(dir, `model folder '${dir}' does not exist`, { hint: 'run `bitdistill export --ternary` first' });
    if (statSync(dir).isFile()) {
      if (!isGgufFile(dir))
        throw new FormatError(dir, 'not a GGUF file, and not an export folder', {
          hint: 'pass the folder or the .gguf file written by `bitdistill export --ternary`',
        });
      const g = loadGgufModel(dir);
      const config = parseDecoderConfig(g.raw, dir);
      if (g.tokenizer.vocabSize > config.vocabSize) throw new FormatError(dir, `tokenizer has ${g.tokenizer.vocabSize} tokens, the model ${config.vocabSize}`);
      const lazy = new Map([...g.tensors].map(([name, t]) => [name, inMemoryTensor(t)]));
      return new TernaryRuntime(dir, config, g.tokenizer, new ExportTensors(lazy, dir, (name) => g.fileNames.get(name) ?? name), options);
    }
    if (!existsSync(cfgPath))
      throw new NotFoundError(cfgPath, `expected config.json in '${dir}'`, { hint: 'pass the folder written by `bitdistill export --ternary`' });
    const raw = readConfigJson(cfgPath);
    const config = parseDecoderConfig(fromHfCompat(raw, cfgPath), cfgPath);
    const tokenizer = loadTokenizer(dir);
    if (tokenizer.vocabSize > config.vocabSize) throw new FormatError(dir, `tokenizer has ${tokenizer.vocabSize} tokens, the model ${config.vocabSize}`);
    // Tensors are read one at a time as the model takes them (and the embeddings a block of rows at a time when
    // they become int8), so a load never holds the whole file next to what it derives from it.
    const file = openSafetensorsDir(dir);
    try {
      const tensors = file.tensors;
      const q = raw['quantization_config'];
      if (q !== null && typeof q === 'object' && (q as Record<string, unknown>)['linear_class'] === 'bitlinear') {
        // `export --hf-compat bitlinear` stores 1 / scale, which transformers' BitLinear divides by.
        for (const [name, t] of tensors) {
          if (!name.endsWith('.weight_scale') || t.dtype !== 'F32') continue;
          const e = t.read();
          e.data.forEach((v, i, a) => (a[i] = Math.fround(1 / (v as number))));
          tensors.set(name, inMemoryTensor(e));
        }
      }
      const weights = existsSync(join(dir, 'model.safetensors')) ? join(dir, 'model.safetensors') : join(dir, 'model.safetensors.index.json');
      return new TernaryRuntime(dir, config, tokenizer, new ExportTensors(tensors, weights, (name) => name), options);
    } finally {
      file.close();
    }
  }

  /** The layer's weights for the one-call native layer, or null (a dense projection, or no addon). */
  private fusedLayer(L: Layer): DecodeLayerWeights | null {
    const c = this.config;
    const proj = {} as Parameters<typeof decodeLayerWeights>[0]['proj'];
    for (const pr of PROJECTIONS) {
      const p = L.proj[pr];
      if (p.kind !== 'ternary') return null;
      proj[pr] = { w: p.w, scale: p.scale, bias: p.bias, subln: L.subln[pr] ?? null };
    }
    return decodeLayerWeights({
      hidden: c.hiddenSize,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
      intermediate: c.intermediateSize,
      rmsNormEps: c.rmsNormEps,
      sublnEps: this.sublnEps,
      attnScale: 1 / Math.sqrt(c.headDim),
      inputNorm: L.inputNorm,
      postNorm: L.postNorm,
      qNorm: L.qNorm,
      kNorm: L.kNorm,
      proj,
      qkv: L.qkv,
      gateUp: L.gateUp,
    });
  }

  /**
   * The parts of a stacked product for quantized input xq [T, cols]: [T, rows_i] each, bit-identical to linear()
   * of each part. For one token the parts are views into the product; for more they are copied out of it.
   */
  private stacked(s: Stacked, xq: QuantizedActivations, T: number, prs: readonly Projection[]): Float32Array[] {
    const b = this.buf;
    const R = s.w.rows;
    const y = ternaryLinearStacked(s.w, xq.q, xq.scale, s.seg, T, b.f32(`stack:${R}`, T * R), true);
    let start = 0;
    return prs.map((pr, i) => {
      const end = s.seg.ends[i] as number;
      const n = end - start;
      let out: Float32Array;
      if (T === 1) out = y.subarray(start, end);
      else {
        out = b.f32(pr, T * n);
        for (let t = 0; t < T; t++) out.set(y.subarray(t * R + start, t * R + end), t * n);
      }
      start = end;
      return out;
    });
  }

  /** y [T, rows] = proj(x [T, cols]) with the projection's SubLN, int8 activation quantization and bias. */
  private linear(layer: Layer, pr: Projection, x: Float32Array, T: number, xq?: QuantizedActivations): Float32Array {
    const lin = layer.proj[pr];
    const sub = layer.subln[pr];
    const b = this.buf;
    const y = b.f32(pr, T * lin.rows);
    const xin = sub !== undefined ? rmsNorm(x, sub, T, lin.cols, this.sublnEps, b.f32(`subln:${lin.cols}`, T * lin.cols)) : x;
    if (lin.kind === 'ternary') {
      const q = sub === undefined && xq !== undefined ? xq : quantizeActivations(xin, T, lin.cols, b.quant(`xq:${lin.cols}`, T, lin.cols));
      // Exact int32 products, then y = acc * f32(d / s) in float32: the same two roundings as the tfjs
      // student's integer-form bitLinear, so both give bit-identical projections for identical inputs.
      ternaryLinear(lin.w, q.q, q.scale, lin.scale, T, y, true);
    } else {
      denseProduct(xin, lin.w, T, lin.cols, lin.rows, y);
    }
    if (lin.bias !== null)
      for (let t = 0; t < T; t++) for (let o = 0; o < lin.rows; o++) y[t * lin.rows + o] = (y[t * lin.rows + o] as number) + (lin.bias[o] as number);
    return y;
  }

  /**
   * Run `ids` (one sequence) through the decoder, appending to `cache` (prefill when empty, decoding after).
   * Returns the final hidden states [T, C] of the new positions.
   */
  private run(ids: readonly number[], cache: KvCache): Float32Array {
    const c = this.config;
    const T = ids.length;
    const C = c.hiddenSize;
    const H = c.numHeads;
    const Hkv = c.numKvHeads;
    const d = c.headDim;
    const start = cache.length;
    if (start + T > cache.capacity) throw new ArgumentError(`sequence of ${start + T} tokens exceeds the cache of ${cache.capacity}`);
    const x = new Float32Array(T * C);
    for (let t = 0; t < T; t++) {
      const id = ids[t] as number;
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new ArgumentError(`token id ${id} outside the vocabulary [0, ${c.vocabSize})`);
      if (this.embed.kind === 'fp32') x.set(this.embed.w.subarray(id * C, (id + 1) * C), t * C);
      else dequantizeRow(this.embed.m, id, x, t * C);
    }
    const rope = ropeTables(
      Array.from({ length: T }, (_, i) => start + i),
      d,
      c.ropeTheta,
    );
    const scale = 1 / Math.sqrt(d);
    const b = this.buf;
    const h = b.f32('h', T * C);
    const att = b.f32('att', T * H * d);
    for (let l = 0; l < c.numLayers; l++) {
      const L = this.layers[l] as Layer;
      if (L.fused !== null) {
        // The same steps as below in one native call (kernels-cpu decode.ts), bit for bit.
        const kv =
          cache.mode === 'f16'
            ? { k: cache.k[l] as Uint16Array, v: cache.v[l] as Uint16Array }
            : { k: cache.k[l] as Float32Array, v: cache.v[l] as Float32Array };
        decodeLayer(L.fused, x, T, kv, cache.capacity, start, rope);
        continue;
      }
      rmsNorm(x, L.inputNorm, T, C, c.rmsNormEps, h);
      const shared = L.subln.q_proj === undefined ? quantizeActivations(h, T, C, b.quant('shared', T, C)) : undefined; // q, k, v read the same input
      let q: Float32Array;
      let k: Float32Array;
      let v: Float32Array;
      if (L.qkv !== null && shared !== undefined) {
        [q, k, v] = this.stacked(L.qkv, shared, T, ['q_proj', 'k_proj', 'v_proj']) as [Float32Array, Float32Array, Float32Array];
      } else {
        q = this.linear(L, 'q_proj', h, T, shared);
        k = this.linear(L, 'k_proj', h, T, shared);
        v = this.linear(L, 'v_proj', h, T, shared);
      }
      if (L.qNorm !== null && L.kNorm !== null) {
        rmsNorm(q, L.qNorm, T * H, d, c.rmsNormEps, q);
        rmsNorm(k, L.kNorm, T * Hkv, d, c.rmsNormEps, k);
      }
      applyRope(q, T, H, rope);
      applyRope(k, T, Hkv, rope);
      const shape = { tokens: T, heads: H, kvHeads: Hkv, headDim: d, capacity: cache.capacity, start, scale };
      if (cache.mode === 'f16') {
        // K and V rounded to binary16 into the cache, then causal attention over it: one native call.
        attentionKvF16(q, k, v, cache.k[l] as Uint16Array, cache.v[l] as Uint16Array, shape, att);
      } else {
        const kc = cache.k[l] as Float32Array;
        const vc = cache.v[l] as Float32Array;
        for (let t = 0; t < T; t++) {
          for (let g = 0; g < Hkv; g++) {
            kc.set(k.subarray((t * Hkv + g) * d, (t * Hkv + g + 1) * d), (g * cache.capacity + start + t) * d);
            vc.set(v.subarray((t * Hkv + g) * d, (t * Hkv + g + 1) * d), (g * cache.capacity + start + t) * d);
          }
        }
        // Causal attention over the cache: position start+t sees 0..start+t.
        attentionCausal(q, kc, vc, shape, att);
      }
      const o = this.linear(L, 'o_proj', att, T);
      for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (o[i] as number);
      const h2 = rmsNorm(x, L.postNorm, T, C, c.rmsNormEps, h);
      const shared2 = L.subln.gate_proj === undefined ? quantizeActivations(h2, T, C, b.quant('shared', T, C)) : undefined;
      let gate: Float32Array;
      let up: Float32Array;
      if (L.gateUp !== null && shared2 !== undefined) [gate, up] = this.stacked(L.gateUp, shared2, T, ['gate_proj', 'up_proj']) as [Float32Array, Float32Array];
      else {
        gate = this.linear(L, 'gate_proj', h2, T, shared2);
        up = this.linear(L, 'up_proj', h2, T, shared2);
      }
      const act = swigluF32(gate, up, b.f32('swiglu', gate.length)); // silu(gate) * up: the student's fused SwiGLU kernel
      const down = this.linear(L, 'down_proj', act, T);
      for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (down[i] as number);
    }
    cache.length += T;
    return rmsNorm(x, this.finalNorm, T, C, c.rmsNormEps);
  }

  /** A fresh KV cache for `capacity` positions (in this runtime's kvCache mode): one allocation, each layer's K and V a view into it. */
  newCache(capacity: number): KvCache {
    const c = this.config;
    const cap = Math.min(capacity, c.maxPositionEmbeddings);
    const per = c.numKvHeads * cap * c.headDim;
    const views = <A extends Float32Array | Uint16Array>(all: A): { k: A[]; v: A[] } => ({
      k: Array.from({ length: c.numLayers }, (_, l) => all.subarray(2 * l * per, (2 * l + 1) * per) as A),
      v: Array.from({ length: c.numLayers }, (_, l) => all.subarray((2 * l + 1) * per, (2 * l + 2) * per) as A),
    });
    // On 2 MiB pages (allocHugePages): each decoding step reads every layer's cached rows.
    const bytes = allocHugePages(2 * c.numLayers * per * (this.kvMode === 'f16' ? 2 : 4));
    if (this.kvMode === 'f16')
      return { capacity: cap, length: 0, mode: 'f16', ...views(new Uint16Array(bytes.buffer, bytes.byteOffset, 2 * c.numLayers * per)) };
    return { capacity: cap, length: 0, mode: 'f32', ...views(new Float32Array(bytes.buffer, bytes.byteOffset, 2 * c.numLayers * per)) };
  }

  /**
   * The cache forward() and generate() run on: the previous one emptied when it holds `capacity` positions, else
   * a new one kept for the next call. Reusing it keeps a generation loop from allocating (and the allocator from
   * keeping) a new cache per call: 22 MiB per 96-token generation of the Qwen3-0.6B shape, resident for good.
   */
  private reusableCache(capacity: number): KvCache {
    const cap = Math.min(capacity, this.config.maxPositionEmbeddings);
    if (this.kv === null || this.kv.capacity < cap) this.kv = this.newCache(cap);
    this.kv.length = 0;
    return this.kv;
  }

  /** Logits [rows, V] of the given hidden rows (fp32 or int8 lm_head), into `out` when given. */
  private logitsOf(hidden: Float32Array, rows: number, out?: Float32Array): Float32Array {
    const h = this.lmHead;
    if (h.kind === 'int8') return matvecI8(h.m, hidden, rows, out);
    return denseProduct(hidden, h.w, rows, this.config.hiddenSize, this.config.vocabSize, out);
  }

  /**
   * Logits of every position [T, V] (allPositions) or of the last one [V], for one sequence. With `cache` (from
   * newCache), the ids continue the sequence it holds and are appended to it (decoding step by step); without,
   * they are a whole sequence.
   */
  forward(ids: readonly number[], options: { allPositions?: boolean; cache?: KvCache } = {}): Float32Array {
    if (ids.length === 0) throw new ArgumentError('forward: empty sequence');
    const cache = options.cache ?? this.reusableCache(ids.length);
    if (cache.mode !== this.kvMode || cache.k.length !== this.config.numLayers)
      throw new ArgumentError('forward: the cache is not one of this runtime (newCache)');
    const hidden = this.run(ids, cache);
    const C = this.config.hiddenSize;
    if (options.allPositions === true) return this.logitsOf(hidden, ids.length);
    return this.logitsOf(hidden.subarray((ids.length - 1) * C), 1);
  }

  /** Greedy decoding with a KV cache; returns the new ids (prompt excluded). */
  generate(
    promptIds: readonly number[],
    maxNewTokens: number,
    eosId: number | null = this.tokenizer.eosId,
  ): { ids: number[]; prefillSeconds: number; decodeSeconds: number } {
    const cache = this.reusableCache(promptIds.length + maxNewTokens);
    const C = this.config.hiddenSize;
    const t0 = performance.now();
    let hidden = this.run(promptIds, cache);
    let last = hidden.subarray((promptIds.length - 1) * C);
    const t1 = performance.now();
    const out: number[] = [];
    while (out.length < maxNewTokens && cache.length < cache.capacity) {
      const logits = this.logitsOf(last, 1, this.buf.f32('logits', this.config.vocabSize));
      const best = argmax(logits);
      if (eosId !== null && best === eosId) break;
      out.push(best);
      if (out.length === maxNewTokens) break;
      hidden = this.run([best], cache);
      last = hidden;
    }
    return { ids: out, prefillSeconds: (t1 - t0) / 1000, decodeSeconds: (performance.now() - t1) / 1000 };
  }
}

/**
 * An `export --hf-compat` config.json says model_type `bitnet` (transformers' BitNetForCausalLM): that is a Llama
 * decoder with standard SubLN, which is how this runtime reads it.
 */
function fromHfCompat(raw: Record<string, unknown>, file: string): Record<string, unknown> {
  if (raw['model_type'] !== 'bitnet') return raw;
  const bd = raw['bitdistill'] !== null && typeof raw['bitdistill'] === 'object' ? (raw['bitdistill'] as Record<string, unknown>) : {};
  if (bd['subln'] !== undefined && bd['subln'] !== 'standard')
    throw new FormatError(file, `model_type bitnet with bitdistill.subln ${JSON.stringify(bd['subln'])}; BitNet models have standard SubLN`);
  return { ...raw, model_type: 'llama', bitdistill: { ...bd, subln: 'standard' } };
}

/** An export's config.json as an object (a FormatError naming the file otherwise). */
function readConfigJson(path: string): Record<string, unknown> {
  return readJsonObjectFile(path, 'config.json is corrupt: re-export the checkpoint with `bitdistill export --ternary`');
}

/**
 * The per-tensor scale of a packed ternary projection: F32 with one value, finite and > 0. One value per row
 * (perRow) or per block of 256 (block256) is a valid export this runtime cannot run.
 */
function ternaryScale(tensors: ExportTensors, name: string, rows: number, cols: number): number {
  const s = tensors.get(name);
  const n = shapeSize(s.shape);
  if (s.dtype !== 'F32' || s.shape.length > 1) tensors.fail(name, `is ${s.dtype} [${s.shape.join(', ')}]; expected F32 [1]`);
  if (n > 1 && (n === rows || n === Math.ceil((rows * cols) / 256))) {
    throw new UnsupportedError(`${tensors.file}: '${name}' has ${n} values; the kernels runtime supports one scale per tensor (weightQuant absmean)`, {
      hint: 'evaluate perRow / block256 students with --runtime tfjs, or train with student.weightQuant=absmean',
    });
  }
  if (n !== 1) tensors.fail(name, `has ${n} values; expected one scale per tensor`);
  const v = s.data[0] as number;
  if (!(v > 0 && v <= MAX_WEIGHT)) tensors.fail(name, `is ${v}; a ternary weight scale is > 0 and at most ${MAX_WEIGHT} (a mean |weight|)`);
  return v;
}

export type KvCache = {
  capacity: number;
  length: number;
} & ({ mode: 'f32'; k: Float32Array[]; v: Float32Array[] } | { mode: 'f16'; k: Uint16Array[]; v: Uint16Array[] });
