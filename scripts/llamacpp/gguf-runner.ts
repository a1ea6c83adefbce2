/**
 * A real llama.cpp run on a GGUF file: scripts/llamacpp/run_gguf.c compiled against the prebuilt libllama of
 * @node-llama-cpp/linux-x64 (scripts/llamacpp/prebuilt.ts), then called once per file with a list of requests.
 * The interop tests (test/interop-llamacpp.test.ts) compare what it returns with BitDistill's runtime.
 */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileHarness, findPrebuiltLlamaCpp } from './prebuilt.ts';

export type LlamaCppRequest =
  | { kind: 'meta'; key: string }
  | { kind: 'tokenize'; text: string }
  | { kind: 'attr'; ids: number[] }
  | { kind: 'piece'; ids: number[] }
  | { kind: 'greedy'; ids: number[]; steps: number }
  | { kind: 'bench'; prompt: number; generate: number; runs: number };

/** The timings of a `bench` request (seconds per run, in run order: the first run of the process is cold). */
export interface LlamaCppBench {
  prompt: number;
  generated: number;
  prefillSeconds: number[];
  decodeSeconds: number[];
  /** VmHWM of the llama.cpp process after the runs. */
  peakRssBytes: number;
}

export interface LlamaCppModelInfo {
  /** llama_model_desc, e.g. "bitnet ?B TQ2_0 - 2.06 bpw ternary". */
  desc: string;
  n_vocab: number;
  n_embd: number;
  n_layer: number;
  n_ctx: number;
}

export interface LlamaCppRun {
  model: LlamaCppModelInfo;
  /** One answer per request, in order: meta -> string | null, tokenize -> ids, attr -> attribute bit sets,
   * piece -> strings, greedy -> tokens and logits (steps + 1 rows), bench -> LlamaCppBench. */
  answers: (string | null | number[] | string[] | { tokens: number[]; logits: Float32Array[] } | LlamaCppBench)[];
  /** Every warning and error llama.cpp logged while loading and running. */
  log: string[];
}

export interface LlamaCppGgufRunner {
  /** Where the libraries come from and which CPU backend runs. */
  source: string;
  variant: string;
  /** `nctx` sizes the context (KV cache) in tokens; the model's training context by default. */
  run(gguf: string, requests: LlamaCppRequest[], o?: { threads?: number; nctx?: number }): LlamaCppRun;
}

/** llama_token_attr bits (llama.h). */
export const LLAMA_TOKEN_ATTR = { UNKNOWN: 1, UNUSED: 2, NORMAL: 4, CONTROL: 8, USER_DEFINED: 16, BYTE: 32 } as const;

function requestArg(r: LlamaCppRequest): string {
  switch (r.kind) {
    case 'meta':
      return `meta:${r.key}`;
    case 'tokenize':
      return `tokenize:${r.text}`;
    case 'attr':
      return `attr:${r.ids.join(',')}`;
    case 'piece':
      return `piece:${r.ids.join(',')}`;
    case 'greedy':
      return `greedy:${r.steps}:${r.ids.join(',')}`;
    case 'bench':
      return `bench:${r.prompt}:${r.generate}:${r.runs}`;
  }
}

/** The runner, or the reason llama.cpp cannot run on this machine (then the tests that need it skip). */
export function llamaCppGgufRunner(): LlamaCppGgufRunner | string {
  const p = findPrebuiltLlamaCpp();
  if (typeof p === 'string') return p;
  if (p.llamaLib === null || p.ggmlLib === null) return `${p.dir} has no libllama*.so / libggml*.so (only the ggml CPU backends)`;
  const src = join(dirname(fileURLToPath(import.meta.url)), 'run_gguf.c');
  const exe = compileHarness(p, src, [p.llamaLib, p.ggmlLib, 'libggml-base.so']);
  if (typeof exe !== 'string') return exe.error;
  return {
    source: p.source,
    variant: p.variant,
    run(gguf, requests, o = {}) {
      const args = [gguf, p.cpuLib, String(o.threads ?? 1), ...(o.nctx !== undefined ? [`nctx:${o.nctx}`] : []), ...requests.map(requestArg)];
      let out: string;
      try {
        out = execFileSync(exe, args, { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        const err = e as { status?: number; stdout?: string; stderr?: string };
        const tail = (err.stderr ?? '').trim().split('\n').slice(-15).join('\n');
        throw new Error(`llama.cpp (${exe}) exited with ${String(err.status)} on ${gguf}:\n${tail}\nstdout: ${(err.stdout ?? '').slice(0, 2000)}`);
      }
      const lines = out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const first = lines.shift();
      const last = lines.pop();
      if (first?.['model'] === undefined || last?.['log'] === undefined || lines.length !== requests.length) {
        throw new Error(`llama.cpp (${exe}) answered ${lines.length} of ${requests.length} requests on ${gguf}`);
      }
      const answers = lines.map((l, i) => {
        const r = requests[i] as LlamaCppRequest;
        if (r.kind === 'meta') return l['meta'] as string | null;
        if (r.kind === 'tokenize') return l['ids'] as number[];
        if (r.kind === 'attr') return l['attrs'] as number[];
        if (r.kind === 'piece') return l['pieces'] as string[];
        if (r.kind === 'bench') return l['bench'] as LlamaCppBench;
        return { tokens: l['tokens'] as number[], logits: (l['logits'] as number[][]).map((row) => Float32Array.from(row)) };
      });
      return { model: first['model'] as LlamaCppModelInfo, answers, log: last['log'] as string[] };
    },
  };
}
