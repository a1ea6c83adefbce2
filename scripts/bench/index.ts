// `npm run bench -- <name> [options]`: runs one benchmark of scripts/bench; each writes JSON + Markdown
// under bench/results/. Usage: node --import tsx scripts/bench/index.ts <name> [options]
interface Bench {
  main(args: string[]): Promise<void>;
}

const BENCHES: Record<string, { about: string; load: () => Promise<Bench> }> = {
  kernels: { about: 'int8 x ternary products vs fp32 and the memory-bandwidth bound', load: () => import('./kernels.ts') },
  train: {
    about: 'training-step tokens/s: default backend vs stock wasm, GEMM vs numpy, CPU MFU, profile (--shape NAME: a real shape; --backend webgpu: WebGPU vs the CPU engine)',
    load: () => import('./train.ts'),
  },
  e2e: { about: 'end-to-end inference of a Qwen3-0.6B-shaped student: ternary vs fp32 through the runtime (prefill, generation, memory)', load: () => import('./e2e.ts') },
};

const [name, ...args] = process.argv.slice(2);
const bench = name === undefined ? undefined : BENCHES[name];
if (bench === undefined) {
  const list = Object.entries(BENCHES)
    .map(([n, b]) => `  ${n.padEnd(10)} ${b.about}`)
    .join('\n');
  console.error(`${name === undefined ? 'no benchmark named' : `unknown benchmark '${name}'`}; one of:\n${list}`);
  process.exit(2);
}
await (await bench.load()).main(args);
