/**
 * llama.cpp TQ2_0 products measured on this machine, in the same benchmark run as our kernels.
 *
 * llama.cpp cannot be built here (no network beyond the npm registry), but the npm package
 * @node-llama-cpp/linux-x64 (an optional dependency of the monorepo) ships llama.cpp's prebuilt ggml CPU backend
 * in one shared library per x86 ISA level (found by scripts/llamacpp/prebuilt.ts). We compile
 * scripts/bench/llamacpp/tq2_matmul.c against libggml-base.so and the ISA variant this CPU supports best (the
 * choice ggml's own loader makes), run it, and read one JSON line per shape. Set BITDISTILL_LLAMACPP_LIBS to
 * another folder of ggml libraries to use those.
 */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileHarness, findPrebuiltLlamaCpp } from '../llamacpp/prebuilt.ts';

export interface LlamaCppProduct {
  rows: number;
  cols: number;
  batch: number;
  threads: number;
  usPerProduct: number;
  /** TQ2_0 bytes of one weight matrix (2.0625 bits per weight). */
  weightBytes: number;
  copies: number;
}

export interface LlamaCppRunner {
  libDir: string;
  variant: string;
  packageVersion: string;
  run(threads: number, rotateMiB: number, reps: number, shapes: { rows: number; cols: number; batch: number }[]): LlamaCppProduct[];
}

/** A runner for the llama.cpp reference, or the reason there is none on this machine. */
export function llamaCppRunner(): LlamaCppRunner | string {
  const found = findPrebuiltLlamaCpp();
  if (typeof found === 'string') return found;
  const src = join(dirname(fileURLToPath(import.meta.url)), 'llamacpp', 'tq2_matmul.c');
  const exe = compileHarness(found, src, ['libggml-base.so', `libggml-cpu-${found.variant}.so`]);
  if (typeof exe !== 'string') return exe.error;
  return {
    libDir: found.dir,
    variant: found.variant,
    packageVersion: found.source,
    run(threads, rotateMiB, reps, shapes) {
      const args = [String(threads), String(rotateMiB), String(reps), ...shapes.map((s) => `${s.rows}:${s.cols}:${s.batch}`)];
      const out = execFileSync(exe, args, { encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
      return out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LlamaCppProduct);
    },
  };
}
