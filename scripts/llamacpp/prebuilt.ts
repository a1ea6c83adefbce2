/**
 * The prebuilt llama.cpp that the optional npm package @node-llama-cpp/linux-x64 ships (llama.cpp and ggml as
 * shared libraries, the ggml CPU backend once per x86 ISA level), found and compiled against. Used by the
 * kernels bench (scripts/bench/llamacpp.ts: TQ2_0 products through libggml) and by the interop tests
 * (scripts/llamacpp/gguf-runner.ts: our GGUF exports loaded and run by libllama).
 *
 * No llama.cpp header ships with the package; each C harness declares the few entry points it calls. Set
 * BITDISTILL_LLAMACPP_LIBS to another folder of the same libraries to use those instead.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface PrebuiltLlamaCpp {
  /** The folder holding libggml-base.so, libggml-cpu-<isa>.so and libllama*.so. */
  dir: string;
  /** Where the libraries come from, e.g. "@node-llama-cpp/linux-x64@3.22.1". */
  source: string;
  /** The ggml CPU backend variant this CPU runs best (ggml's own loader makes the same choice). */
  variant: string;
  /** Full path of that backend's library. */
  cpuLib: string;
  /** libllama's file name (the package versions it, e.g. libllama.v0.5.0.so), or null when absent. */
  llamaLib: string | null;
  /** libggml's file name (the backend registry libllama links), or null when absent. */
  ggmlLib: string | null;
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

function findLibDir(): { dir: string; source: string } | string {
  const env = process.env.BITDISTILL_LLAMACPP_LIBS;
  if (env !== undefined && env !== '') {
    return existsSync(join(env, 'libggml-base.so'))
      ? { dir: env, source: 'BITDISTILL_LLAMACPP_LIBS' }
      : `BITDISTILL_LLAMACPP_LIBS=${env} has no libggml-base.so`;
  }
  try {
    const require = createRequire(import.meta.url);
    // The package's "exports" hides package.json; its entry point is dist/index.js.
    const pkgJson = join(dirname(require.resolve('@node-llama-cpp/linux-x64')), '..', 'package.json');
    const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version;
    const dir = join(dirname(pkgJson), 'bins', 'linux-x64');
    return existsSync(join(dir, 'libggml-base.so')) ? { dir, source: `@node-llama-cpp/linux-x64@${version}` } : `${dir} has no libggml-base.so`;
  } catch {
    return '@node-llama-cpp/linux-x64 is not installed (an optional dependency: Linux x64 with glibc only)';
  }
}

/** The prebuilt libraries, or the reason there are none usable on this machine. */
export function findPrebuiltLlamaCpp(): PrebuiltLlamaCpp | string {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `the prebuilt llama.cpp libraries are for Linux x64; this is ${process.platform} ${process.arch}`;
  const found = findLibDir();
  if (typeof found === 'string') return found;
  const flags = cpuFlags();
  const files = readdirSync(found.dir);
  const have = new Set(files);
  const variant = VARIANTS.find(([name, need]) => have.has(`libggml-cpu-${name}.so`) && need.every((f) => flags.has(f)))?.[0];
  if (variant === undefined) return `no libggml-cpu-<isa>.so in ${found.dir} fits this CPU`;
  const versioned = (stem: string): string | null => files.find((f) => new RegExp(`^${stem}(\\.v[0-9.]+)?\\.so$`).test(f)) ?? null;
  return { ...found, variant, cpuLib: join(found.dir, `libggml-cpu-${variant}.so`), llamaLib: versioned('libllama'), ggmlLib: versioned('libggml') };
}

/**
 * Compile one C file against the given libraries (file names in `p.dir`, linked by exact name, with an rpath
 * so that the executable finds them at run time) into a fresh temporary folder. Returns the executable, or
 * the compiler's complaint.
 */
export function compileHarness(p: PrebuiltLlamaCpp, source: string, libs: string[]): string | { error: string } {
  const exe = join(mkdtempSync(join(tmpdir(), 'bitdistill-llamacpp-')), 'harness');
  try {
    execFileSync('cc', ['-O2', '-std=gnu11', '-o', exe, source, `-L${p.dir}`, ...libs.map((l) => `-l:${l}`), `-Wl,-rpath,${p.dir}`, '-lm'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    return { error: `compiling ${source} failed: ${stderr !== undefined && stderr !== '' ? stderr : String(e)}` };
  }
  return exe;
}
