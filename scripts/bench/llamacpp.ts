/**
 * llama.cpp TQ2_0 products measured on this machine, in the same benchmark run as our kernels.
 *
 * llama.cpp cannot be built here (no network beyond the npm registry), but the npm package
 * @node-llama-cpp/linux-x64 (an optional dependency of the monorepo) ships llama.cpp's prebuilt ggml CPU backend
 * in one shared library per x86 ISA level. We compile scripts/bench/llamacpp/tq2_matmul.c against
 * libggml-base.so and the ISA variant this CPU supports best (the choice ggml's own loader makes), run it, and
 * read one JSON line per shape. Set BITDISTILL_LLAMACPP_LIBS to another folder of ggml libraries to use those.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

// ggml's x86 CPU variants, best first, with the /proc/cpuinfo flags each one is built for.
const VARIANTS: [string, string[]][] = [
  ['sapphirerapids', ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'avx512vbmi', 'amx_int8', 'amx_tile']],
  ['zen4', ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'avx512vbmi']],
  ['cooperlake', ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16']],
  ['icelake', ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512vbmi']],
  ['cascadelake', ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni']],
  ['skylakex', ['avx512f', 'avx512bw', 'avx512vl']],
  ['alderlake', ['avx2', 'fma', 'f16c', 'avx_vnni']],
  ['haswell', ['avx2', 'fma', 'f16c']],
  ['sse42', ['sse4_2']],
  ['x64', []],
];

function cpuFlags(): Set<string> {
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return new Set((m?.[1] ?? '').split(/\s+/));
  } catch {
    return new Set();
  }
}

function findLibDir(): { dir: string; version: string } | string {
  const env = process.env.BITDISTILL_LLAMACPP_LIBS;
  if (env !== undefined && env !== '') {
    return existsSync(join(env, 'libggml-base.so')) ? { dir: env, version: 'BITDISTILL_LLAMACPP_LIBS' } : `BITDISTILL_LLAMACPP_LIBS=${env} has no libggml-base.so`;
  }
  try {
    const require = createRequire(import.meta.url);
    // The package's "exports" hides package.json; its entry point is dist/index.js.
    const pkgJson = join(dirname(require.resolve('@node-llama-cpp/linux-x64')), '..', 'package.json');
    const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version;
    const dir = join(dirname(pkgJson), 'bins', 'linux-x64');
    return existsSync(join(dir, 'libggml-base.so')) ? { dir, version: `@node-llama-cpp/linux-x64@${version}` } : `${dir} has no libggml-base.so`;
  } catch {
    return '@node-llama-cpp/linux-x64 is not installed (an optional dependency: Linux x64 with glibc only)';
  }
}

/** A runner for the llama.cpp reference, or the reason there is none on this machine. */
export function llamaCppRunner(): LlamaCppRunner | string {
  const found = findLibDir();
  if (typeof found === 'string') return found;
  const flags = cpuFlags();
  const have = new Set(readdirSync(found.dir));
  const variant = VARIANTS.find(([name, need]) => have.has(`libggml-cpu-${name}.so`) && need.every((f) => flags.has(f)))?.[0];
  if (variant === undefined) return `no libggml-cpu-<isa>.so in ${found.dir} fits this CPU`;
  const src = join(dirname(fileURLToPath(import.meta.url)), 'llamacpp', 'tq2_matmul.c');
  const exe = join(mkdtempSync(join(tmpdir(), 'bitdistill-llamacpp-')), 'tq2_matmul');
  try {
    execFileSync('cc', ['-O2', '-o', exe, src, `-L${found.dir}`, '-l:libggml-base.so', `-l:libggml-cpu-${variant}.so`, `-Wl,-rpath,${found.dir}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (e) {
    return `compiling ${src} failed: ${(e as { stderr?: Buffer }).stderr?.toString().trim() ?? String(e)}`;
  }
  return {
    libDir: found.dir,
    variant,
    packageVersion: found.version,
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
