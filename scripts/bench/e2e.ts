/**
 * `npm run bench -- e2e [--layers N] [--prompt N] [--gen N] [--out DIR]`
 *
 * End-to-end inference through the packed-ternary runtime (@bitdistill/runtime on @bitdistill/kernels-cpu) for a
 * randomly initialised Qwen3-0.6B-shaped student (hidden 1024, 28 layers, 16/8 heads, head_dim 128, ffn 3072,
 * vocab 151,936, tied embeddings), next to the same weights in fp32 through the same runtime, in one run:
 * prefill and generation tokens/s and resident memory. The ternary model runs twice: with the embeddings /
 * lm_head as exported (fp32) and as int8 rows (`--embeddings int8` of `bitdistill eval`). Each variant runs in its own child process (so the
 * resident-set numbers do not mix); the model folders are written once under .tmp/bench-e2e/ (the fp32 one as
 * BF16 on disk to save space; the runtime holds fp32 in memory either way).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@bitdistill/core';
import { f32ArrayToBf16, packTernaryHF, writeSafetensors, type TensorEntry } from '@bitdistill/format';

const SHAPE = {
  architectures: ['Qwen3ForCausalLM'],
  model_type: 'qwen3',
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  vocab_size: 151936,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  attention_bias: false,
  hidden_act: 'silu',
  bos_token_id: null,
  eos_token_id: 151645,
};

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** Write the ternary export and the fp32 (bf16 on disk) twin of one random student. */
function writeModels(root: string, layers: number): { ternary: string; fp32: string; params: number } {
  const cfg = { ...SHAPE, num_hidden_layers: layers };
  const ternary = join(root, `ternary-${layers}`);
  const fp32 = join(root, `fp32-${layers}`);
  const C = cfg.hidden_size;
  const F = cfg.intermediate_size;
  const qd = cfg.num_attention_heads * cfg.head_dim;
  const kvd = cfg.num_key_value_heads * cfg.head_dim;
  const shapes: Record<string, [number, number]> = {
    'self_attn.q_proj': [qd, C],
    'self_attn.k_proj': [kvd, C],
    'self_attn.v_proj': [kvd, C],
    'self_attn.o_proj': [C, qd],
    'mlp.gate_proj': [F, C],
    'mlp.up_proj': [F, C],
    'mlp.down_proj': [C, F],
  };
  let params = cfg.vocab_size * C;
  if (existsSync(join(ternary, 'model.safetensors')) && existsSync(join(fp32, 'model.safetensors'))) {
    for (const [r, c] of Object.values(shapes)) params += layers * r * c;
    return { ternary, fp32, params };
  }
  const rng = new Rng(1);
  const t = new Map<string, TensorEntry>();
  const f = new Map<string, TensorEntry>();
  const both = (name: string, data: Float32Array, shape: number[]) => {
    t.set(name, { dtype: 'F32', shape, data });
    f.set(name, { dtype: 'BF16', shape, data: f32ArrayToBf16(data) });
  };
  both('model.embed_tokens.weight', Float32Array.from({ length: cfg.vocab_size * C }, () => rng.normal() * 0.02), [cfg.vocab_size, C]);
  both('model.norm.weight', new Float32Array(C).fill(1), [C]);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    both(`${p}.input_layernorm.weight`, new Float32Array(C).fill(1), [C]);
    both(`${p}.post_attention_layernorm.weight`, new Float32Array(C).fill(1), [C]);
    both(`${p}.self_attn.q_norm.weight`, new Float32Array(cfg.head_dim).fill(1), [cfg.head_dim]);
    both(`${p}.self_attn.k_norm.weight`, new Float32Array(cfg.head_dim).fill(1), [cfg.head_dim]);
    for (const [proj, [rows, cols]] of Object.entries(shapes)) {
      params += rows * cols;
      const codes = Int8Array.from({ length: rows * cols }, () => rng.int(3) - 1);
      const scale = 0.02;
      t.set(`${p}.${proj}.weight`, { dtype: 'U8', shape: [Math.ceil(rows / 4), cols], data: packTernaryHF(codes, rows, cols) });
      t.set(`${p}.${proj}.weight_scale`, { dtype: 'F32', shape: [1], data: Float32Array.of(scale) });
      f.set(`${p}.${proj}.weight`, { dtype: 'BF16', shape: [rows, cols], data: f32ArrayToBf16(Float32Array.from(codes, (v) => v * scale)) });
    }
  }
  for (const [dir, tensors, extra] of [
    [ternary, t, { quantization_config: { quant_method: 'bitnet', linear_class: 'autobitlinear', quantization_mode: 'offline' }, bitdistill: { subln: 'none', weightQuant: 'absmean' } }],
    [fp32, f, {}],
  ] as const) {
    mkdirSync(dir, { recursive: true });
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    writeFileSync(join(dir, 'config.json'), `${JSON.stringify({ ...cfg, ...extra }, null, 2)}\n`);
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join('models/qwen3-tokenizer', file), join(dir, file));
  }
  return { ternary, fp32, params };
}

interface ChildResult {
  /** every run's tokens/s (medians are taken over all rounds) */
  prefill: number[];
  generation: number[];
  residentBytes: number;
  weightBytes: number;
  prefillTokensPerSecond: number;
  generationTokensPerSecond: number;
  loadSeconds: number;
}

/** One variant in a fresh process: load, settle, measure RSS, prefill `prompt` tokens, generate `gen`. */
const CHILD = `
import { TernaryRuntime } from '@bitdistill/runtime';
import { initKernels, nativeStatus } from '@bitdistill/kernels-cpu';
const [dir, embeddings, prompt, gen, runs] = process.argv.slice(-5);
initKernels();
const base = process.memoryUsage().rss;
const t0 = performance.now();
const rt = TernaryRuntime.load(dir, { embeddings });
const loadSeconds = (performance.now() - t0) / 1000;
// Let V8 free the file buffers the loader read (several collections, with the event loop turning between).
for (let i = 0; i < 3; i++) { globalThis.gc?.(); await new Promise((r) => setTimeout(r, 100)); }
const residentBytes = process.memoryUsage().rss;
const ids = Array.from({ length: Number(prompt) }, (_, i) => 1000 + ((i * 7919) % 50000));
const pre = []; const dec = [];
for (let r = 0; r < Number(runs); r++) {
  const g = rt.generate(ids, Number(gen), null);
  pre.push(Number(prompt) / g.prefillSeconds);
  dec.push((g.ids.length - 1) / g.decodeSeconds);
}
const med = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(JSON.stringify({ kernels: nativeStatus(), residentBytes, baseRss: base, weightBytes: rt.info.weightBytes, prefillTokensPerSecond: med(pre), generationTokensPerSecond: med(dec), prefill: pre, generation: dec, loadSeconds }));
`;

function runChild(dir: string, embeddings: 'fp32' | 'int8', prompt: number, gen: number, runs: number): ChildResult {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', CHILD, dir, embeddings, String(prompt), String(gen), String(runs)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`bench child failed for ${dir}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as ChildResult;
}

export async function main(args: string[]): Promise<void> {
  const layers = arg(args, 'layers', 28);
  const prompt = arg(args, 'prompt', 64);
  const gen = arg(args, 'gen', 32);
  const runs = arg(args, 'runs', 2);
  const rounds = arg(args, 'rounds', 3);
  const outDir = args.includes('--out') ? (args[args.indexOf('--out') + 1] as string) : 'bench/results';
  const root = '.tmp/bench-e2e';
  mkdirSync(root, { recursive: true });
  const load0 = loadavg()[0];
  const m = writeModels(root, layers);
  // Rounds of the three variants in turn, so that a slow spell of the machine (other tenants' memory traffic
  // moves these numbers by tens of percent here) hits every variant alike; medians over every run of every round.
  const all: Record<'ternary' | 'int8' | 'fp32', ChildResult[]> = { ternary: [], int8: [], fp32: [] };
  for (let r = 0; r < rounds; r++) {
    all.ternary.push(runChild(m.ternary, 'fp32', prompt, gen, runs));
    all.int8.push(runChild(m.ternary, 'int8', prompt, gen, runs));
    all.fp32.push(runChild(m.fp32, 'fp32', prompt, gen, runs));
  }
  const med = (v: number[]): number => {
    const s = [...v].sort((a, b) => a - b);
    const h = s.length >> 1;
    return s.length % 2 === 1 ? (s[h] as number) : ((s[h - 1] as number) + (s[h] as number)) / 2;
  };
  const combine = (rs: ChildResult[]): ChildResult => ({
    ...(rs[0] as ChildResult),
    prefill: rs.flatMap((c) => c.prefill),
    generation: rs.flatMap((c) => c.generation),
    prefillTokensPerSecond: med(rs.flatMap((c) => c.prefill)),
    generationTokensPerSecond: med(rs.flatMap((c) => c.generation)),
    residentBytes: med(rs.map((c) => c.residentBytes)),
  });
  const ternary = combine(all.ternary);
  const ternaryInt8 = combine(all.int8);
  const fp32 = combine(all.fp32);
  const bf16Bytes = m.params * 2;
  const result = {
    bench: 'e2e',
    date: new Date().toISOString(),
    command: `npm run bench -- e2e ${args.join(' ')}`.trim(),
    machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpus: cpus().length, node: process.version, loadAverage1mAtStart: load0 },
    model: { shape: 'Qwen3-0.6B (random ternary student)', layers, parameters: m.params, bf16Bytes, prompt, generated: gen, runs, rounds },
    allRuns: {
      ternary: { prefill: ternary.prefill, generation: ternary.generation },
      ternaryInt8Embeddings: { prefill: ternaryInt8.prefill, generation: ternaryInt8.generation },
      fp32: { prefill: fp32.prefill, generation: fp32.generation },
    },
    tokensPerSecond: {
      ternary: { prefill: ternary.prefillTokensPerSecond, generation: ternary.generationTokensPerSecond },
      ternaryInt8Embeddings: { prefill: ternaryInt8.prefillTokensPerSecond, generation: ternaryInt8.generationTokensPerSecond },
      fp32: { prefill: fp32.prefillTokensPerSecond, generation: fp32.generationTokensPerSecond },
    },
    residentBytes: { ternary: ternary.residentBytes, ternaryInt8Embeddings: ternaryInt8.residentBytes, fp32: fp32.residentBytes },
    weightBytes: { ternary: ternary.weightBytes, ternaryInt8Embeddings: ternaryInt8.weightBytes, fp32: fp32.weightBytes },
    loadSeconds: { ternary: ternary.loadSeconds, ternaryInt8Embeddings: ternaryInt8.loadSeconds, fp32: fp32.loadSeconds },
    ratios: {
      generationSpeedup: ternary.generationTokensPerSecond / fp32.generationTokensPerSecond,
      prefillSpeedup: ternary.prefillTokensPerSecond / fp32.prefillTokensPerSecond,
      ternaryResidentOverBf16: ternary.residentBytes / bf16Bytes,
      int8Embeddings: {
        generationSpeedup: ternaryInt8.generationTokensPerSecond / fp32.generationTokensPerSecond,
        prefillSpeedup: ternaryInt8.prefillTokensPerSecond / fp32.prefillTokensPerSecond,
        residentOverBf16: ternaryInt8.residentBytes / bf16Bytes,
      },
    },
  };
  mkdirSync(outDir, { recursive: true });
  const stamp = result.date.slice(0, 10);
  writeFileSync(join(outDir, `e2e-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(outDir, 'e2e-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const md = [
    `# e2e inference benchmark (${stamp})`,
    '',
    `\`${result.command}\` on ${result.machine.cpuModel}, ${result.machine.cpus} cores, load ${load0.toFixed(2)} at start.`,
    `Model: random Qwen3-0.6B-shaped student, ${layers} layers, ${m.params.toLocaleString('en-US')} parameters; prompt ${prompt} tokens, ${gen} generated; ${rounds} rounds of the three variants in turn (a fresh process each), ${runs} runs each: medians of ${rounds * runs} runs.`,
    '',
    '| runtime weights | prefill tok/s | generation tok/s | resident | weights in memory |',
    '|---|---:|---:|---:|---:|',
    `| ternary (2-bit projections, fp32 embeddings/norms) | ${ternary.prefillTokensPerSecond.toFixed(1)} | ${ternary.generationTokensPerSecond.toFixed(2)} | ${mb(ternary.residentBytes)} | ${mb(ternary.weightBytes)} |`,
    `| ternary + int8 embeddings/lm_head (\`--embeddings int8\`) | ${ternaryInt8.prefillTokensPerSecond.toFixed(1)} | ${ternaryInt8.generationTokensPerSecond.toFixed(2)} | ${mb(ternaryInt8.residentBytes)} | ${mb(ternaryInt8.weightBytes)} |`,
    `| fp32 (same weights) | ${fp32.prefillTokensPerSecond.toFixed(1)} | ${fp32.generationTokensPerSecond.toFixed(2)} | ${mb(fp32.residentBytes)} | ${mb(fp32.weightBytes)} |`,
    '',
    `Against fp32 through the same runtime: ternary generation ${result.ratios.generationSpeedup.toFixed(2)}x, prefill ${result.ratios.prefillSpeedup.toFixed(2)}x, resident memory ${(100 * result.ratios.ternaryResidentOverBf16).toFixed(1)}% of a bf16 copy (${mb(bf16Bytes)}); ` +
      `with int8 embeddings generation ${result.ratios.int8Embeddings.generationSpeedup.toFixed(2)}x, prefill ${result.ratios.int8Embeddings.prefillSpeedup.toFixed(2)}x, resident ${(100 * result.ratios.int8Embeddings.residentOverBf16).toFixed(1)}% of the bf16 copy.`,
    '',
    'Resident memory is the process RSS after loading (and three collections), Node itself included (39 MiB for an empty process, 79 MiB once tsx and the kernels addon are loaded; plus the tokenizer); "weights in memory" counts only the arrays the runtime holds.',
    '',
  ].join('\n');
  writeFileSync(join(outDir, `e2e-${stamp}.md`), md);
  process.stdout.write(md);
}
