/**
 * The Llama / Qwen2 / Qwen3 decoder, top to bottom in one file (in the spirit of nanoGPT's model.py and
 * transformers' modeling_llama.py). Parameters carry their Hugging Face names. Variants are config flags named
 * like the HF config keys; the SubLN lines (BitNet Distillation stage 1) are marked `// SubLN`.
 *
 * Shapes: B batch, T time, C hidden_size, H query heads, Hkv key/value heads, d head_dim, V vocab.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, FormatError, assertShape } from '@bitdistill/core';
import { expectedTensorShapes, PROJECTIONS, projectionName, sublnName, type DecoderConfig, type Projection } from '@bitdistill/arch';
import {
  ATTENTION_KERNEL,
  DENSE_BLOCK_KERNEL,
  ROPE_HEADS_KERNEL,
  fusedRopeHeads,
  bmm,
  denseLinear,
  fusedAttention,
  fusedKernel,
  matMulT,
  ownedVariable,
  replayedLinear,
  rmsNorm,
  swiglu,
  type LinearFn,
} from './ops.ts';

/** Q, K, V of one layer for attention-relation distillation, each [B, heads, T, d], GQA heads not expanded. */
export interface CapturedQkv {
  q: tf.Tensor4D; // after q_norm and RoPE, [B, H, T, d]
  k: tf.Tensor4D; // after k_norm and RoPE, [B, Hkv, T, d]
  v: tf.Tensor4D; // raw v_proj output, [B, Hkv, T, d]
}

export interface ForwardOptions {
  /** Layers (0-based) whose Q, K, V to return. */
  captureLayers?: readonly number[];
  /**
   * Flat row indices (b * T + t, int32 [M]) at which to compute logits; the output `logits` is then [1, M, V].
   * SFT losses that read only the answer tokens use this to skip the vocabulary projection everywhere else
   * (with a 30k vocabulary that projection is most of the step).
   */
  logitRows?: tf.Tensor1D;
  /**
   * `logits` (default): the vocabulary projection. `hidden`: stop before it and return the final normed hidden
   * rows [N, C] (N = B * T, or M with logitRows) for a loss that applies the head itself in chunks
   * (@bitdistill/losses fusedHeadLoss with `headWeight()`): at a large vocabulary [N, V] logits do not fit.
   */
  output?: 'logits' | 'hidden';
}

export interface ForwardOutput {
  logits: tf.Tensor3D; // [B, T, V], or [1, M, V] with logitRows
  captured: Map<number, CapturedQkv>;
}

export interface HiddenOutput {
  hidden: tf.Tensor2D; // [B * T, C] (row b * T + t), or [M, C] with logitRows; after model.norm
  captured: Map<number, CapturedQkv>;
}

/**
 * Runs fn, which takes gradients (tf.variableGrads), from inside a backward pass. tfjs keeps one active tape:
 * a gradient computation started at depth 0 replaces it and sets it to null when done, and the outer backward
 * pass, still running, then fails to release its own saved tensors. So the outer tape is put back after fn.
 */
function withInnerTape<T>(fn: () => T): T {
  const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
  const outer = state.activeTape;
  try {
    return fn();
  } finally {
    state.activeTape = outer;
  }
}

export class Decoder {
  readonly config: DecoderConfig;
  /** All parameters by Hugging Face name. Variables are trainable unless frozen. */
  readonly params: Map<string, tf.Variable>;
  /** Linear op per projection base name (e.g. `model.layers.0.self_attn.q_proj`); absent -> dense. */
  readonly linears = new Map<string, LinearFn>();
  /** Activation recomputation per decoder block while training (optim.recompute); see recomputedBlock. */
  recompute = false;
  /**
   * While a recomputed block runs: 'record' keeps each projection output of its forward, 'replay' (its backward
   * pass running the block again) uses them instead of running the projection's matmul a second time.
   */
  private projections: { mode: 'record' | 'replay'; outputs: Map<string, tf.Tensor2D> } | null = null;
  /** Projection outputs kept by recomputed blocks whose backward has not run yet (freed by the next forward). */
  private pendingOutputs = new Set<Map<string, tf.Tensor2D>>();
  private ropeCache = new Map<number, { cos: tf.Tensor2D; sin: tf.Tensor2D }>();
  private maskCache = new Map<number, tf.Tensor2D>();

  constructor(config: DecoderConfig, params: Map<string, tf.Variable>) {
    this.config = config;
    this.params = params;
    this.checkParams();
  }

  /** The tensor names this config needs, with their shapes (@bitdistill/arch expectedTensorShapes). */
  static expectedShapes(c: DecoderConfig): Map<string, number[]> {
    return expectedTensorShapes(c);
  }

  private checkParams(): void {
    const expected = Decoder.expectedShapes(this.config);
    const missing: string[] = [];
    for (const [name, shape] of expected) {
      const p = this.params.get(name);
      if (p === undefined) {
        missing.push(name);
        continue;
      }
      if (p.shape.length !== shape.length || p.shape.some((d, i) => d !== shape[i])) {
        throw new FormatError('weights', `tensor '${name}' has shape [${p.shape.join(', ')}], config.json implies [${shape.join(', ')}]`, {
          hint: 'the weights do not belong to this config.json',
        });
      }
    }
    if (missing.length > 0) {
      throw new FormatError('weights', `${missing.length} tensor(s) missing, e.g. '${missing.slice(0, 3).join("', '")}'`, {
        hint: 'the weights do not match config.json (wrong folder, or a different architecture)',
      });
    }
  }

  param(name: string): tf.Variable {
    const p = this.params.get(name);
    if (p === undefined) throw new ArgumentError(`no parameter '${name}'`);
    return p;
  }

  numParameters(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.size;
    return n;
  }

  /**
   * Switch the SubLN mode: gains the new mode needs and the model lacks are added, initialised to 1; gains it
   * does not use are dropped; gains it keeps (e.g. loaded from a checkpoint) are left as they are. `eps` is the
   * SubLN RMSNorm epsilon (default: the one the config has). Returns the names of the added gains.
   */
  setSubln(mode: DecoderConfig['subln'], eps: number = this.config.sublnEps): string[] {
    if (!(eps > 0 && Number.isFinite(eps)))
      throw new ArgumentError(`setSubln: the SubLN epsilon must be a finite number > 0, got ${eps}`, {
        hint: "student.sublnEps is e.g. 1e-8 (the official code) or the model's rms_norm_eps",
      });
    const oldNames = new Set<string>();
    for (let l = 0; l < this.config.numLayers; l++) {
      for (const proj of PROJECTIONS) {
        const s = sublnName(l, proj, this.config.subln);
        if (s !== null) oldNames.add(s);
      }
    }
    (this.config as { subln: DecoderConfig['subln'] }).subln = mode;
    (this.config as { sublnEps: number }).sublnEps = eps;
    const expected = Decoder.expectedShapes(this.config);
    for (const name of oldNames) {
      if (!expected.has(name)) {
        this.params.get(name)?.dispose();
        this.params.delete(name);
      }
    }
    const added: string[] = [];
    for (const [name, shape] of expected) {
      if (!this.params.has(name)) {
        this.params.set(name, ownedVariable(tf.ones(shape), true));
        added.push(name);
      }
    }
    return added;
  }

  /** Additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above. Cached per T. */
  private causalMask(T: number): tf.Tensor2D {
    let m = this.maskCache.get(T);
    if (m === undefined) {
      const a = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) a[i * T + j] = -1e9;
      m = tf.keep(tf.tensor2d(a, [T, T]));
      this.maskCache.set(T, m);
    }
    return m;
  }

  private rope(T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    let r = this.ropeCache.get(T);
    if (r === undefined) {
      // HF rotate_half convention: inv_freq over the first d/2 dims, duplicated to d.
      const d = this.config.headDim;
      const half = d / 2;
      const cos = new Float32Array(T * d);
      const sin = new Float32Array(T * d);
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < half; i++) {
          const invFreq = 1 / Math.pow(this.config.ropeTheta, (2 * i) / d);
          const a = t * invFreq;
          cos[t * d + i] = cos[t * d + i + half] = Math.cos(a);
          sin[t * d + i] = sin[t * d + i + half] = Math.sin(a);
        }
      }
      r = { cos: tf.keep(tf.tensor2d(cos, [T, d])), sin: tf.keep(tf.tensor2d(sin, [T, d])) };
      this.ropeCache.set(T, r);
    }
    return r;
  }

  /** x [B, h, T, d] -> x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1). */
  private applyRope(x: tf.Tensor4D, T: number): tf.Tensor4D {
    const { cos, sin } = this.rope(T);
    const half = this.config.headDim / 2;
    const [x1, x2] = tf.split(x, [half, half], -1) as [tf.Tensor4D, tf.Tensor4D];
    const rot = tf.concat([tf.neg(x2), x1], -1);
    return tf.add(tf.mul(x, cos), tf.mul(rot, sin)) as tf.Tensor4D;
  }

  /** A projection: optional SubLN on its input, then the (possibly quantized) linear op, then the bias. */
  private project(x: tf.Tensor2D, layer: number, proj: Projection): tf.Tensor2D {
    const base = projectionName(layer, proj);
    const sub = sublnName(layer, proj, this.config.subln);
    const linear = this.linears.get(base) ?? denseLinear;
    const w = this.param(`${base}.weight`) as tf.Tensor as tf.Tensor2D;
    const rec = this.projections;
    const bias = this.params.get(`${base}.bias`);
    // SubLN and the projection as one fused op where the linear op has one (not under activation recomputation,
    // which records and replays the linear op's own output).
    const fusedOut =
      sub !== null && rec === null && linear.normed !== undefined
        ? linear.normed(x, this.param(sub) as tf.Tensor as tf.Tensor1D, this.config.sublnEps, w)
        : null;
    if (fusedOut !== null) return bias === undefined ? fusedOut : tf.add(fusedOut, bias);
    const xin = sub === null ? x : (rmsNorm(x, this.param(sub), this.config.sublnEps) as tf.Tensor2D); // SubLN (PAPER.md section 3)
    const kept = rec?.mode === 'replay' ? rec.outputs.get(base) : undefined;
    let y: tf.Tensor2D;
    if (kept !== undefined) {
      y = replayedLinear(linear, kept, xin, w);
    } else {
      y = linear(xin, w);
      if (rec?.mode === 'record' && linear.backward !== undefined && (linear.replayable?.() ?? true)) rec.outputs.set(base, tf.keep(y));
    }
    return bias === undefined ? y : tf.add(y, bias);
  }

  /** The output head [V, C]: the tied token embedding, or lm_head. */
  headWeight(): tf.Variable {
    return this.config.tieWordEmbeddings ? this.param('model.embed_tokens.weight') : this.param('lm_head.weight');
  }

  /**
   * Whether layer l can run as one BitDistillDenseBlock kernel: nothing is being recorded for a backward pass (a
   * frozen teacher's forward under `untaped`, evaluation), the backend has the kernel and fused attention, and the
   * layer is the plain dense decoder layer (no SubLN, no quantized or replaced projection, float32).
   */
  private denseBlockReady(l: number, x: tf.Tensor2D): boolean {
    const c = this.config;
    if (tf.engine().isTapeOn() || this.projections !== null || c.subln !== 'none' || c.headDim % 2 !== 0 || x.dtype !== 'float32') return false;
    if (!fusedKernel(DENSE_BLOCK_KERNEL) || !fusedKernel(ATTENTION_KERNEL)) return false;
    for (const proj of PROJECTIONS) {
      const linear = this.linears.get(projectionName(l, proj));
      if (linear !== undefined && linear !== denseLinear) return false;
    }
    return true;
  }

  /** block() as one BitDistillDenseBlock kernel (see denseBlockReady): bit-identical to the op-by-op forward. */
  private denseBlock(x: tf.Tensor2D, l: number, B: number, T: number, captured: Map<number, CapturedQkv> | null): tf.Tensor2D {
    const c = this.config;
    const p = `model.layers.${l}`;
    const { cos, sin } = this.rope(T);
    const inputs: tf.NamedTensorMap = {
      x,
      cos,
      sin,
      inLn: this.param(`${p}.input_layernorm.weight`),
      postLn: this.param(`${p}.post_attention_layernorm.weight`),
    };
    const keys: Record<string, Projection> = { wq: 'q_proj', wk: 'k_proj', wv: 'v_proj', wo: 'o_proj', wg: 'gate_proj', wu: 'up_proj', wd: 'down_proj' };
    for (const [key, proj] of Object.entries(keys)) {
      const base = projectionName(l, proj);
      inputs[key] = this.param(`${base}.weight`);
      const bias = this.params.get(`${base}.bias`);
      if (bias !== undefined) inputs[`b${key.slice(1)}`] = bias; // bq .. bd
    }
    if (c.qkNorm) {
      inputs['qNorm'] = this.param(`${p}.self_attn.q_norm.weight`);
      inputs['kNorm'] = this.param(`${p}.self_attn.k_norm.weight`);
    }
    const attrs = {
      B,
      T,
      H: c.numHeads,
      Hkv: c.numKvHeads,
      d: c.headDim,
      eps: c.rmsNormEps,
      scale: Math.fround(1 / Math.sqrt(c.headDim)),
      capture: captured !== null,
    };
    const out = tf.engine().runKernel(DENSE_BLOCK_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
    if (captured === null) return out as tf.Tensor2D;
    const [y, q, k, v] = out as [tf.Tensor2D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    this.captureQkv(captured, l, q, k, v, cos, sin, T);
    tf.dispose([q, k, v]);
    return y;
  }

  /** The relation KD's view of layer l's q, k, v ([B, T, heads, d], before RoPE) into `captured`: [B, heads, T, d], RoPE'd q and k. */
  private captureQkv(
    captured: Map<number, CapturedQkv>,
    l: number,
    q: tf.Tensor4D,
    k: tf.Tensor4D,
    v: tf.Tensor4D,
    cos: tf.Tensor2D,
    sin: tf.Tensor2D,
    T: number,
  ): void {
    // Transposes and RoPE of q, k, v only (the T x T attention itself stays one kernel each way): one fused op
    // each where the backend has it, else the op-by-op twin.
    if (fusedKernel(ROPE_HEADS_KERNEL)) {
      captured.set(l, { q: fusedRopeHeads(q, cos, sin, true), k: fusedRopeHeads(k, cos, sin, true), v: fusedRopeHeads(v, cos, sin, false) });
    } else {
      const byHead = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 1, 3]) as tf.Tensor4D;
      captured.set(l, { q: this.applyRope(byHead(q), T), k: this.applyRope(byHead(k), T), v: byHead(v) });
    }
  }

  /** Decoder layer l on x [N, C] (N = B * T): attention and SwiGLU MLP with their residuals. */
  private block(x: tf.Tensor2D, l: number, B: number, T: number, captured: Map<number, CapturedQkv> | null): tf.Tensor2D {
    if (this.denseBlockReady(l, x)) return this.denseBlock(x, l, B, T, captured);
    const c = this.config;
    const H = c.numHeads;
    const Hkv = c.numKvHeads;
    const d = c.headDim;
    const N = B * T;
    const mask = this.causalMask(T);
    const p = `model.layers.${l}`;
    // --- attention ---
    const h = rmsNorm(x, this.param(`${p}.input_layernorm.weight`), c.rmsNormEps) as tf.Tensor2D;
    // Fused attention (RoPE, scores, causal softmax and the weighted sum in one kernel each way) reads the
    // projections in their [B, T, heads, d] layout; the op-by-op path, its twin, wants [B, heads, T, d]. q/k-norm
    // is over d, so it applies in either layout.
    const fused = d % 2 === 0 && fusedKernel(ATTENTION_KERNEL);
    const heads = (t: tf.Tensor2D, n: number) => (fused ? tf.reshape(t, [B, T, n, d]) : tf.transpose(tf.reshape(t, [B, T, n, d]), [0, 2, 1, 3])) as tf.Tensor4D;
    let q = heads(this.project(h, l, 'q_proj'), H);
    let k = heads(this.project(h, l, 'k_proj'), Hkv);
    const v = heads(this.project(h, l, 'v_proj'), Hkv);
    if (c.qkNorm) {
      q = rmsNorm(q, this.param(`${p}.self_attn.q_norm.weight`), c.rmsNormEps) as tf.Tensor4D;
      k = rmsNorm(k, this.param(`${p}.self_attn.k_norm.weight`), c.rmsNormEps) as tf.Tensor4D;
    }
    if (fused) {
      const { cos, sin } = this.rope(T);
      // The relation KD reads RoPE'd q, k and v as [B, heads, T, d], formed beside the fused kernel.
      if (captured !== null) this.captureQkv(captured, l, q, k, v, cos, sin, T);
      const y4 = fusedAttention(q, k, v, cos, sin, Math.fround(1 / Math.sqrt(d)));
      x = tf.add(x, this.project(tf.reshape(y4, [N, H * d]) as tf.Tensor2D, l, 'o_proj'));
      return this.mlp(x, l);
    }
    q = this.applyRope(q, T);
    k = this.applyRope(k, T);
    if (captured !== null) captured.set(l, { q, k, v });
    // GQA: query head j reads key/value head floor(j / r), r = H / Hkv. The r query heads of a key/value head
    // are adjacent, so q [B, H, T, d] is [B * Hkv, r * T, d] as it lies: one product per key/value head, no
    // copy of K or V per query head (a tiled K/V and its gradient cost more than the attention itself).
    const r = H / Hkv;
    const q3 = tf.reshape(q, [B * Hkv, r * T, d]) as tf.Tensor3D;
    const k3 = tf.reshape(k, [B * Hkv, T, d]) as tf.Tensor3D;
    const v3 = tf.reshape(v, [B * Hkv, T, d]) as tf.Tensor3D;
    const raw = tf.reshape(matMulT(q3, k3, false, true), [B * H, T, T]); // [BH, T, T]
    const scores = tf.add(tf.mul(raw, 1 / Math.sqrt(d)), mask);
    const att = tf.reshape(tf.softmax(scores, -1), [B * Hkv, r * T, T]) as tf.Tensor3D;
    const y = bmm(att, v3); // [B * Hkv, r * T, d] = [B, H, T, d]
    const yc = tf.reshape(tf.transpose(tf.reshape(y, [B, H, T, d]), [0, 2, 1, 3]), [N, H * d]) as tf.Tensor2D;
    x = tf.add(x, this.project(yc, l, 'o_proj'));
    return this.mlp(x, l);
  }

  /** The SwiGLU MLP of layer l with its residual. */
  private mlp(x: tf.Tensor2D, l: number): tf.Tensor2D {
    const h2 = rmsNorm(x, this.param(`model.layers.${l}.post_attention_layernorm.weight`), this.config.rmsNormEps) as tf.Tensor2D;
    const gate = this.project(h2, l, 'gate_proj');
    const gated = swiglu(gate, this.project(h2, l, 'up_proj')) as tf.Tensor2D; // silu(gate) * up
    return tf.add(x, this.project(gated, l, 'down_proj'));
  }

  /** Parameters of layer l (names `model.layers.{l}.*`), in a fixed order. */
  private layerParams(l: number): tf.Variable[] {
    const prefix = `model.layers.${l}.`;
    return [...this.params].filter(([name]) => name.startsWith(prefix)).map(([, v]) => v);
  }

  /**
   * block(x, l) with activation recomputation (optim.recompute): the forward runs inside a tf.customGrad, so
   * its intermediates are not kept for backward (tfjs does not record ops run inside a custom gradient's
   * forward); only x is saved. The backward pass runs the block again on the saved x with the tape on and
   * takes the gradients of sum(block(x) * dy) with respect to x and the layer's parameters: one block's
   * activations are alive at a time instead of every layer's.
   */
  private recomputedBlock(x: tf.Tensor2D, l: number, B: number, T: number): tf.Tensor2D {
    const vars = this.layerParams(l);
    // Selective recomputation: with a gradient tape recording, the forward keeps the block's projection outputs
    // (~40 MB per layer at Qwen3-0.6B, batch 8 x 128), so the backward replays only the cheap ops around them
    // (norms, RoPE, attention, SwiGLU) and no projection matmul runs twice.
    const state = (tf.engine() as unknown as { state: { gradientDepth: number; kernelDepth: number } }).state;
    const outputs = state.gradientDepth > 0 && state.kernelDepth === 0 ? new Map<string, tf.Tensor2D>() : null;
    if (outputs !== null) this.pendingOutputs.add(outputs);
    const release = (): void => {
      if (outputs === null) return;
      for (const t of outputs.values()) t.dispose();
      outputs.clear();
      this.pendingOutputs.delete(outputs);
    };
    const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const save = args[args.length - 1] as tf.GradSaveFunc;
      const xin = args[0] as tf.Tensor2D;
      save([xin]);
      this.projections = outputs === null ? null : { mode: 'record', outputs };
      let value: tf.Tensor2D;
      try {
        value = this.block(xin, l, B, T, null);
      } finally {
        this.projections = null;
      }
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          withInnerTape(() => {
            const xv = tf.variable(saved[0] as tf.Tensor, true);
            this.projections = outputs === null ? null : { mode: 'replay', outputs };
            try {
              const trainable = vars.filter((v) => v.trainable);
              const { value, grads } = tf.variableGrads(
                () => tf.sum(tf.mul(this.block(xv as tf.Tensor as tf.Tensor2D, l, B, T, null), dy)) as tf.Scalar,
                [xv, ...trainable],
              );
              value.dispose();
              return [grads[xv.name] as tf.Tensor, ...vars.map((v) => grads[v.name] ?? tf.zerosLike(v))];
            } finally {
              this.projections = null;
              xv.dispose();
              release();
            }
          }),
      };
    });
    return run(x, ...vars) as tf.Tensor2D;
  }

  /** Frees projection outputs kept by recomputed blocks whose backward never ran (a forward without backward). */
  private releasePendingOutputs(): void {
    for (const m of this.pendingOutputs) for (const t of m.values()) t.dispose();
    this.pendingOutputs.clear();
  }

  /** ids: int32 [B, T]. Right padding needs no mask: the causal mask keeps real tokens from seeing it. */
  forward(ids: tf.Tensor2D, options: ForwardOptions & { output: 'hidden' }): HiddenOutput;
  forward(ids: tf.Tensor2D, options?: ForwardOptions & { output?: 'logits' }): ForwardOutput;
  forward(ids: tf.Tensor2D, options: ForwardOptions = {}): ForwardOutput | HiddenOutput {
    const c = this.config;
    assertShape('Decoder.forward: ids', ids.shape, [null, null]);
    if (ids.dtype !== 'int32') throw new ArgumentError(`Decoder.forward: ids must be int32, got ${ids.dtype}`);
    const [B, T] = ids.shape;
    const C = c.hiddenSize;
    const N = B * T;
    const capture = new Set(options.captureLayers ?? []);
    for (const l of capture) {
      if (!Number.isInteger(l) || l < 0 || l >= c.numLayers) {
        throw new ArgumentError(`captureLayers: layer ${l} out of range [0, ${c.numLayers})`);
      }
    }
    const captured = new Map<number, CapturedQkv>();
    this.releasePendingOutputs();

    let x = tf.reshape(tf.gather(this.param('model.embed_tokens.weight'), tf.reshape(ids, [N])), [N, C]) as tf.Tensor2D; // [N, C]
    for (let l = 0; l < c.numLayers; l++) {
      // Recomputation keeps only the block's input for backward; a captured layer runs as usual (its Q/K/V are
      // read by a loss).
      // Otherwise each block runs in a tidy, so its intermediates are freed as soon as it returns (those autograd
      // needs are kept by the tape): a forward without gradients (the frozen teacher, dev evaluation) then
      // holds one block's intermediates, not every layer's (~5.6 GB at Qwen3-0.6B, batch 8 x 128).
      const xin = x;
      if (this.recompute && !capture.has(l)) x = this.recomputedBlock(xin, l, B, T);
      else if (capture.has(l)) x = this.block(xin, l, B, T, captured);
      else x = tf.tidy(() => this.block(xin, l, B, T, null));
    }
    const rows = options.logitRows;
    if (rows !== undefined && (rows.rank !== 1 || rows.dtype !== 'int32'))
      throw new ArgumentError(`Decoder.forward: logitRows must be int32 [M], got ${rows.dtype} [${rows.shape.join(', ')}]`);
    const xo = rows === undefined ? x : (tf.gather(x, rows) as tf.Tensor2D);
    const hf = rmsNorm(xo, this.param('model.norm.weight'), c.rmsNormEps) as tf.Tensor2D;
    if (options.output === 'hidden') return { hidden: hf, captured };
    const head = this.headWeight();
    const outShape: [number, number, number] = rows === undefined ? [B, T, c.vocabSize] : [1, rows.shape[0], c.vocabSize];
    const logits = tf.reshape(denseLinear(hf, head as tf.Tensor as tf.Tensor2D), outShape) as tf.Tensor3D;
    return { logits, captured };
  }

  dispose(): void {
    this.releasePendingOutputs();
    for (const p of this.params.values()) p.dispose();
    this.params.clear();
    for (const r of this.ropeCache.values()) {
      r.cos.dispose();
      r.sin.dispose();
    }
    this.ropeCache.clear();
    for (const m of this.maskCache.values()) m.dispose();
    this.maskCache.clear();
  }
}
