/**
 * `npm run bench -- e2e [--layers N] [--prompt N] [--gen N] [--runs N] [--rounds N] [--threads N] [--out DIR]`
 *
 * End-to-end inference through the packed-ternary runtime (@bitdistill/runtime on @bitdistill/kernels-cpu) for a
 * randomly initialised Qwen3-0.6B-shaped student (hidden 1024, 28 layers, 16/8 heads, head_dim 128, ffn 3072,
 * vocab 151,936, tied embeddings), in one run next to (a) the same weights in fp32 through the same runtime and
 * (b) llama.cpp (the prebuilt libllama of the optional @node-llama-cpp/linux-x64, through
 * scripts/llamacpp/run_gguf.c) on a GGUF of the same weights: qwen3 architecture, TQ2_0 projections, Q8_0
 * embeddings (scripts/bench/e2e-gguf.ts), at the embedding precision of our `--embeddings int8`. Our ternary
 * model runs with fp32 and with int8 embeddings / LM head.
 *
 * Every variant runs in fresh processes (rounds of all variants in turn), each doing --runs generations: the
 * first is reported as cold, the rest as warm. Peak RSS is VmHWM read by each process at its end, the same way on
 * both sides. The model folders are written once under .tmp/bench-e2e/ (the fp32 one as BF16 on disk to save
 * space; the runtime holds fp32 in memory either way).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { Rng } from '@bitdistill/core';
import { f32ArrayToBf16, packTernaryHF, writeSafetensors, type TensorEntry } from '@bitdistill/format';
import { llamaCppGgufRunner, type LlamaCppBench, type LlamaCppGgufRunner } from '../llamacpp/gguf-runner.ts';
import { qwen3GgufName, writeQwen3Gguf } from './e2e-gguf.ts';
import { cpuInfo } from './machine.ts';

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

/** One process's runs of one variant (ours or llama.cpp), in run order: the first run of a process is cold. */
interface ProcessRuns {
  prefill: number[];
  generation: number[];
  peakRssBytes: number;
  /** Ours: RSS after loading and three collections; weight arrays; load time. */
  residentBytes?: number;
  weightBytes?: number;
  loadSeconds?: number;
  isa?: string;
}

/** One variant in a fresh process: load, settle, measure RSS, then `runs` generations (prefill `prompt` tokens,
 * generate `gen`); the peak resident set (VmHWM) at the end, read as the llama.cpp harness reads its own. */
const CHILD = `
import { readFileSync } from 'node:fs';
import { TernaryRuntime } from '@bitdistill/runtime';
import { initKernels, nativeStatus } from '@bitdistill/kernels-cpu/runtime';
const [dir, embeddings, kvCache, prompt, gen, runs, threads] = process.argv.slice(-7);
initKernels({ threads: Number(threads) });
const t0 = performance.now();
const rt = TernaryRuntime.load(dir, { embeddings, kvCache });
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
const hwm = /^VmHWM:\\s*(\\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
console.log(JSON.stringify({ isa: nativeStatus().isa, residentBytes, peakRssBytes: hwm ? Number(hwm[1]) * 1024 : -1, weightBytes: rt.info.weightBytes, prefill: pre, generation: dec, loadSeconds }));
`;

/**
 * The child as a bundle on plain Node (esbuild, @bitdistill/* inlined, other packages external), as the bitdistill
 * command runs (scripts/build-cli.mjs): through tsx, every process would also carry the TypeScript loader
 * (a second V8 isolate, 34 MiB resident) that no user's generation process has.
 */
async function bundleChild(root: string): Promise<string> {
  const { build } = await import('esbuild');
  const entry = join(root, 'child.ts');
  const out = join(root, 'child.mjs');
  writeFileSync(entry, CHILD);
  await build({
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
    nodePaths: [resolve('node_modules')],
    plugins: [{ name: 'workspace-only', setup: (b) => b.onResolve({ filter: /^[^./]/ }, (a) => (a.path.startsWith('@bitdistill/') ? undefined : { external: true })) }],
  });
  return out;
}

function runChild(child: string, dir: string, embeddings: 'fp32' | 'int8', kvCache: 'f32' | 'f16', prompt: number, gen: number, runs: number, threads: number): ProcessRuns {
  const r = spawnSync(process.execPath, ['--expose-gc', child, dir, embeddings, kvCache, String(prompt), String(gen), String(runs), String(threads)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`bench child failed for ${dir}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as ProcessRuns;
}

function runLlamaCpp(runner: LlamaCppGgufRunner, gguf: string, prompt: number, gen: number, runs: number, threads: number): ProcessRuns {
  const res = runner.run(gguf, [{ kind: 'bench', prompt, generate: gen, runs }], { threads, nctx: prompt + gen });
  const b = res.answers[0] as LlamaCppBench;
  return { prefill: b.prefillSeconds.map((s) => prompt / s), generation: b.decodeSeconds.map((s) => (gen - 1) / s), peakRssBytes: b.peakRssBytes };
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? (s[h] as number) : ((s[h - 1] as number) + (s[h] as number)) / 2;
};

/** Cold = the first run of each process, warm = the others; medians over every process of the variant. */
function summarize(ps: ProcessRuns[]) {
  return {
    generationWarm: median(ps.flatMap((p) => p.generation.slice(1))),
    generationCold: median(ps.map((p) => p.generation[0] as number)),
    prefillWarm: median(ps.flatMap((p) => p.prefill.slice(1))),
    prefillCold: median(ps.map((p) => p.prefill[0] as number)),
    peakRssBytes: median(ps.map((p) => p.peakRssBytes)),
    processes: ps.length,
    allRuns: { prefill: ps.map((p) => p.prefill), generation: ps.map((p) => p.generation), peakRssBytes: ps.map((p) => p.peakRssBytes) },
  };
}

export async function main(args: string[]): Promise<void> {
  const layers = arg(args, 'layers', 28);
  const prompt = arg(args, 'prompt', 64);
  const gen = arg(args, 'gen', 32);
  const runs = arg(args, 'runs', 3);
  // The same thread count on both sides (ours would otherwise take every core the machine has).
  const threads = arg(args, 'threads', 2);
  const rounds = arg(args, 'rounds', 3);
  if (!(runs >= 2)) throw new Error('e2e bench: --runs must be >= 2 (the first run of each process is the cold one)');
  const outDir = args.includes('--out') ? (args[args.indexOf('--out') + 1] as string) : 'bench/results';
  const root = '.tmp/bench-e2e';
  mkdirSync(root, { recursive: true });
  const load0 = loadavg()[0] as number;
  const cpu = cpuInfo();
  const m = writeModels(root, layers);
  const child = await bundleChild(root);
  const runner = llamaCppGgufRunner();
  let gguf: { path: string; bytes: number } | null = null;
  if (typeof runner === 'string') console.error(`llama.cpp e2e skipped: ${runner}`);
  else {
    const path = join(root, qwen3GgufName(layers));
    const bytes = existsSync(path) ? statSync(path).size : writeQwen3Gguf(m.ternary, { ...SHAPE, num_hidden_layers: layers }, path);
    gguf = { path, bytes };
  }
  // Rounds of the variants in turn, each in a fresh process, so that a slow spell of the machine (other tenants'
  // memory traffic moves these numbers by tens of percent here) hits every variant alike.
  const all: Record<'ternary' | 'int8' | 'int8F16Kv' | 'fp32' | 'llamaCpp', ProcessRuns[]> = { ternary: [], int8: [], int8F16Kv: [], fp32: [], llamaCpp: [] };
  for (let r = 0; r < rounds; r++) {
    all.ternary.push(runChild(child, m.ternary, 'fp32', 'f32', prompt, gen, runs, threads));
    all.int8.push(runChild(child, m.ternary, 'int8', 'f32', prompt, gen, runs, threads));
    all.int8F16Kv.push(runChild(child, m.ternary, 'int8', 'f16', prompt, gen, runs, threads));
    all.fp32.push(runChild(child, m.fp32, 'fp32', 'f32', prompt, gen, runs, threads));
    if (typeof runner !== 'string' && gguf !== null) all.llamaCpp.push(runLlamaCpp(runner, gguf.path, prompt, gen, runs, threads));
    console.error(`round ${r + 1}/${rounds}: int8 ${all.int8.at(-1)?.generation.map((v) => v.toFixed(1)).join('/')}, int8 + f16 KV ${all.int8F16Kv.at(-1)?.generation.map((v) => v.toFixed(1)).join('/')} tok/s${all.llamaCpp.length > r ? `, llama.cpp ${all.llamaCpp.at(-1)?.generation.map((v) => v.toFixed(1)).join('/')}` : ''}`);
  }
  const ours = (ps: ProcessRuns[]) => ({ ...summarize(ps), residentBytes: median(ps.map((p) => p.residentBytes ?? Number.NaN)), weightBytes: ps[0]?.weightBytes ?? Number.NaN, loadSeconds: median(ps.map((p) => p.loadSeconds ?? Number.NaN)) });
  const ternary = ours(all.ternary);
  const ternaryInt8 = ours(all.int8);
  const ternaryInt8F16Kv = ours(all.int8F16Kv);
  const fp32 = ours(all.fp32);
  const llama = all.llamaCpp.length > 0 ? summarize(all.llamaCpp) : null;
  const bf16Bytes = m.params * 2;
  const isa = all.int8[0]?.isa ?? 'unknown';
  const result = {
    bench: 'e2e',
    date: new Date().toISOString(),
    command: `npm run bench -- e2e ${args.join(' ')}`.trim(),
    machine: { cpuModel: cpu.name, cpuFlags: cpu.flags, isa, cpus: cpus().length, threads, node: process.version, loadAverage1mAtStart: load0 },
    model: { shape: 'Qwen3-0.6B (random ternary student)', layers, parameters: m.params, bf16Bytes, prompt, generated: gen, runsPerProcess: runs, processesPerVariant: rounds },
    method:
      `${rounds} rounds of the variants in turn, each a fresh process doing ${runs} generations (${prompt}-token prompt, ${gen} greedy tokens, ${threads} threads on both sides); ` +
      'generationCold / prefillCold: the first run of each process (median over processes), generationWarm / prefillWarm: the later runs (median); ' +
      'generation tokens/s = (generated - 1) / decode seconds on both sides; ours runs as a bundle on plain Node, as the bitdistill command does (no TypeScript loader in the process); peakRssBytes: VmHWM of /proc/self/status at the end of the process, read the same way on both sides (median over processes)',
    variants: { ternary, ternaryInt8Embeddings: ternaryInt8, ternaryInt8EmbeddingsF16Kv: ternaryInt8F16Kv, fp32 },
    llamaCpp:
      typeof runner === 'string' || llama === null || gguf === null
        ? { ran: false, reason: typeof runner === 'string' ? runner : 'no GGUF' }
        : {
            ran: true,
            build: `${runner.source}, libggml-cpu-${runner.variant}.so`,
            gguf: { file: gguf.path, bytes: gguf.bytes, architecture: 'qwen3', projections: 'TQ2_0', tokenEmbedding: 'Q8_0 (tied: also the LM head)', writer: 'scripts/bench/e2e-gguf.ts' },
            harness:
              "scripts/llamacpp/run_gguf.c bench request: llama_decode of the prompt, then greedy single-token decodes; context of prompt + generated tokens; llama.cpp's default context parameters (f16 KV cache)",
            ...llama,
          },
    // Kept from earlier result files: the medians over every run (cold and warm mixed) and the ratios.
    tokensPerSecond: {
      ternary: { prefill: median(ternary.allRuns.prefill.flat()), generation: median(ternary.allRuns.generation.flat()) },
      ternaryInt8Embeddings: { prefill: median(ternaryInt8.allRuns.prefill.flat()), generation: median(ternaryInt8.allRuns.generation.flat()) },
      ternaryInt8EmbeddingsF16Kv: { prefill: median(ternaryInt8F16Kv.allRuns.prefill.flat()), generation: median(ternaryInt8F16Kv.allRuns.generation.flat()) },
      fp32: { prefill: median(fp32.allRuns.prefill.flat()), generation: median(fp32.allRuns.generation.flat()) },
    },
    residentBytes: { ternary: ternary.residentBytes, ternaryInt8Embeddings: ternaryInt8.residentBytes, ternaryInt8EmbeddingsF16Kv: ternaryInt8F16Kv.residentBytes, fp32: fp32.residentBytes },
    weightBytes: { ternary: ternary.weightBytes, ternaryInt8Embeddings: ternaryInt8.weightBytes, fp32: fp32.weightBytes },
    ratios: {
      warmGenerationTernaryOverFp32: ternary.generationWarm / fp32.generationWarm,
      warmGenerationInt8OverFp32: ternaryInt8.generationWarm / fp32.generationWarm,
      warmPrefillInt8OverFp32: ternaryInt8.prefillWarm / fp32.prefillWarm,
      int8PeakRssOverBf16: ternaryInt8.peakRssBytes / bf16Bytes,
      ...(llama === null
        ? {}
        : {
            warmGenerationInt8OverLlamaCpp: ternaryInt8.generationWarm / llama.generationWarm,
            coldGenerationInt8OverLlamaCpp: ternaryInt8.generationCold / llama.generationCold,
            warmPrefillInt8OverLlamaCpp: ternaryInt8.prefillWarm / llama.prefillWarm,
            peakRssInt8OverLlamaCpp: ternaryInt8.peakRssBytes / llama.peakRssBytes,
            // Equal settings on both sides: 8-bit embeddings / head and an f16 KV cache (llama.cpp's default).
            warmGenerationInt8F16KvOverLlamaCpp: ternaryInt8F16Kv.generationWarm / llama.generationWarm,
            coldGenerationInt8F16KvOverLlamaCpp: ternaryInt8F16Kv.generationCold / llama.generationCold,
            warmPrefillInt8F16KvOverLlamaCpp: ternaryInt8F16Kv.prefillWarm / llama.prefillWarm,
            peakRssInt8F16KvOverLlamaCpp: ternaryInt8F16Kv.peakRssBytes / llama.peakRssBytes,
          }),
    },
  };
  mkdirSync(outDir, { recursive: true });
  const stamp = result.date.slice(0, 10);
  writeFileSync(join(outDir, `e2e-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(outDir, 'e2e-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const row = (name: string, v: ReturnType<typeof summarize>, extra: string) =>
    `| ${name} | ${v.prefillCold.toFixed(1)} | ${v.prefillWarm.toFixed(1)} | ${v.generationCold.toFixed(2)} | ${v.generationWarm.toFixed(2)} | ${mb(v.peakRssBytes)} | ${extra} |`;
  const r = result.ratios as Record<string, number>;
  const md = [
    `# e2e inference benchmark (${stamp})`,
    '',
    `\`${result.command}\` on **${cpu.name}** (${cpu.flags.join(' ')}; our ISA path ${isa}), ${cpus().length} CPUs, ${threads} threads, load ${load0.toFixed(2)} at start.`,
    `Model: random Qwen3-0.6B-shaped ternary student, ${layers} layers, ${m.params.toLocaleString('en-US')} parameters; prompt ${prompt} tokens, ${gen} generated (greedy).`,
    `Method: ${result.method}.`,
    '',
    '| runtime | prefill tok/s cold | prefill warm | generation tok/s cold | generation warm | peak RSS | resident after load / weights |',
    '|---|---:|---:|---:|---:|---:|---:|',
    row('ours: ternary (2-bit projections), fp32 embeddings / head', ternary, `${mb(ternary.residentBytes)} / ${mb(ternary.weightBytes)}`),
    row('ours: ternary + int8 embeddings / head (`--embeddings int8`)', ternaryInt8, `${mb(ternaryInt8.residentBytes)} / ${mb(ternaryInt8.weightBytes)}`),
    row('ours: ternary + int8 embeddings / head + f16 KV cache (`--kv-cache f16`)', ternaryInt8F16Kv, `${mb(ternaryInt8F16Kv.residentBytes)} / ${mb(ternaryInt8F16Kv.weightBytes)}`),
    row('ours: fp32 (same weights)', fp32, `${mb(fp32.residentBytes)} / ${mb(fp32.weightBytes)}`),
    ...(llama === null || gguf === null ? [] : [row(`llama.cpp ${typeof runner === 'string' ? '' : runner.source} (${typeof runner === 'string' ? '' : runner.variant}): same weights, qwen3 GGUF, TQ2_0 + Q8_0 embeddings / head`, llama, `GGUF ${mb(gguf.bytes)}`)]),
    '',
    llama === null
      ? `llama.cpp not run: ${(result.llamaCpp as { reason?: string }).reason}.`
      : `Ours against llama.cpp with the same settings (8-bit embeddings / head, f16 KV cache): generation **${r['warmGenerationInt8F16KvOverLlamaCpp']?.toFixed(2)}x** warm (${r['coldGenerationInt8F16KvOverLlamaCpp']?.toFixed(2)}x cold), prefill ${r['warmPrefillInt8F16KvOverLlamaCpp']?.toFixed(2)}x warm, peak RSS **${r['peakRssInt8F16KvOverLlamaCpp']?.toFixed(2)}x** llama.cpp's. ` +
        `With our exact f32 KV cache (the default): generation ${r['warmGenerationInt8OverLlamaCpp']?.toFixed(2)}x warm (${r['coldGenerationInt8OverLlamaCpp']?.toFixed(2)}x cold), prefill ${r['warmPrefillInt8OverLlamaCpp']?.toFixed(2)}x, peak RSS ${r['peakRssInt8OverLlamaCpp']?.toFixed(2)}x.`,
    `Against fp32 through the same runtime (warm): ternary generation ${r['warmGenerationTernaryOverFp32']?.toFixed(2)}x, with int8 embeddings ${r['warmGenerationInt8OverFp32']?.toFixed(2)}x; int8 peak RSS ${(100 * (r['int8PeakRssOverBf16'] ?? 0)).toFixed(1)}% of a bf16 copy (${mb(bf16Bytes)}).`,
    '',
    'Peak RSS includes Node itself for ours (about 65 MiB with the runtime and the kernels addon loaded, run as a bundle: no TypeScript loader) and the tokenizer (about 30 MiB of heap for Qwen3); llama.cpp maps the GGUF, so its weight pages count once touched.',
    '',
  ].join('\n');
  writeFileSync(join(outDir, `e2e-${stamp}.md`), md);
  process.stdout.write(md);
}
