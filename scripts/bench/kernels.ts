/**
 * `npm run bench -- kernels [--runs N] [--quick] [--out DIR]`
 *
 * The ternary BitLinear product of @bitdistill/kernels-cpu, batch 1 (matrix-vector) and 8 / 32, for the shapes
 * (out x in) 2048x2048, 2048x8192, 8192x2048, 4096x4096 on 1 and 2 threads, timed as llama.cpp's is: fp32
 * activations in (the per-token int8 quantization included), fp32 out (the scale epilogue included). Measured in
 * one run next to (a) the fp32 product of the same shape in the same addon, (b) a streaming read of the same
 * packed weight bytes, (c) llama.cpp's TQ2_0 product (scripts/bench/llamacpp.ts), and the memory bandwidth: the
 * best of 1, 2 and 4 concurrent sequential streams per thread over one large buffer.
 *
 * Weights come from DRAM, not cache: every product rotates over copies of its weights totalling at least 4x the
 * last-level cache (the largest L3 that CPUID's leaves or sysfs report: a VM's sysfs may list only one CCX's, or
 * none) and at least 1 GiB, ternary and fp32 alike. Each configuration: one warm-up pass over the copies, then
 * --runs timed runs (default 7) of >= 20 ms each; the median time per product is reported with the fastest and
 * slowest run (a bimodal product shows as a wide spread).
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  allocAligned,
  availableIsas,
  cpuCaches,
  initKernels,
  quantizeActivations,
  ternaryLinear,
  matvecF32,
  repackTernary,
  setIsa,
  setThreads,
  streamRead,
  ternaryMatMul,
  type Isa,
  type TernaryMatrix,
} from '@bitdistill/kernels-cpu/runtime';
import { llamaCppRunner, type LlamaCppProduct } from './llamacpp.ts';
import { cpuInfo, type CpuInfo } from './machine.ts';

const SHAPES: [number, number][] = [
  [2048, 2048],
  [2048, 8192],
  [8192, 2048],
  [4096, 4096],
];
const BATCHES = [1, 8, 32];
const THREADS = [1, 2];
const STREAMS = [1, 2, 4];
const MIN_RUN_MS = 20;
const MIN_ROTATION_BYTES = 1 << 30;

// llama.cpp TQ2_0, batch 1, 2 threads, weights from DRAM, as quoted by issue 7 / MACHINE.md (measured on
// another machine of this kind); kept in the JSON for orientation. The comparison that counts is the
// llama.cpp run this script makes on the same machine (scripts/bench/llamacpp.ts).
const LLAMA_CPP_TQ2_0_US: Record<string, number> = { '2048x2048': 67, '2048x8192': 194, '8192x2048': 261, '4096x4096': 212 };

interface Product {
  rows: number;
  cols: number;
  batch: number;
  threads: number;
  /** Timed from fp32 activations to fp32 outputs (quantization and scale epilogue included), like llama.cpp. */
  fp32InOut: true;
  usPerProduct: number;
  /** Fastest and slowest of the timed runs. */
  usRange: [number, number];
  /** The int8 x ternary core alone (int8 activations in, int32 out): what the product costs without the ends. */
  int8CoreUsPerProduct: number;
  weightGBs: number;
  fp32UsPerProduct: number;
  fp32WeightGBs: number;
  streamUsSameBytes: number;
  speedupVsFp32: number;
  fractionOfStreamRead: number;
  fractionOfStreamSameBytes: number;
  /** llama.cpp TQ2_0 on the same machine, same shape, batch and threads (null when it could not run). */
  llamaCppUsPerProduct: number | null;
  speedupVsLlamaCpp: number | null;
}

function parseArgs(args: string[]): { runs: number; quick: boolean; out: string } {
  let runs = 7;
  let quick = false;
  let out = 'bench/results';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--quick') quick = true;
    else if (a === '--runs') runs = Number(args[++i]);
    else if (a === '--out') out = String(args[++i]);
    else throw new Error(`kernels bench: unknown option ${a}; options: --runs N (>= 5), --quick, --out DIR`);
  }
  if (!Number.isInteger(runs) || runs < 5) throw new Error('kernels bench: --runs must be an integer >= 5');
  return { runs: quick ? 5 : runs, quick, out };
}

/** sysfs's L3 size (the largest index with level 3), or 0. */
function sysfsL3Bytes(): number {
  let best = 0;
  for (let i = 0; i < 8; i++) {
    try {
      const dir = `/sys/devices/system/cpu/cpu0/cache/index${i}`;
      if (readFileSync(`${dir}/level`, 'utf8').trim() !== '3') continue;
      const m = /^(\d+)([KMG]?)/.exec(readFileSync(`${dir}/size`, 'utf8').trim());
      if (m !== null) best = Math.max(best, Number(m[1]) * ({ K: 1024, M: 1 << 20, G: 1 << 30 }[m[2] as 'K' | 'M' | 'G'] ?? 1));
    } catch {
      // no such index, or not Linux
    }
  }
  return best;
}

/** The last-level cache to defeat: the largest L3 any source reports (CPUID leaves, sysfs), 32 MiB if none. */
function lastLevelCache(): { bytes: number; sources: { source: string; bytes: number }[] } {
  const sources = cpuCaches()
    .filter((c) => c.level >= 3)
    .map((c) => ({ source: `cpuid ${c.leaf === 'deterministic' ? 'deterministic cache parameters' : `leaf ${c.leaf}`} L${c.level}`, bytes: c.bytes }));
  const sys = sysfsL3Bytes();
  if (sys > 0) sources.push({ source: 'sysfs cpu0 L3', bytes: sys });
  const bytes = Math.max(0, ...sources.map((s) => s.bytes));
  return bytes > 0 ? { bytes, sources } : { bytes: 32 << 20, sources: [{ source: 'none reported; assumed', bytes: 32 << 20 }] };
}

/** CPU seconds of this process's finished children (the llama.cpp reference), from /proc/self/stat. */
function childrenCpuSeconds(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields after the command: state(3) ... cutime(16) cstime(17), i.e. indices 13 and 14 here
    return (Number(f[13]) + Number(f[14])) / 100; // USER_HZ
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine so far (from /proc/stat), or NaN off Linux. */
function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    // user nice system idle iowait irq softirq steal
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return busy / 100; // USER_HZ
  } catch {
    return Number.NaN;
  }
}

const now = (): number => Number(process.hrtime.bigint()) / 1e3; // microseconds

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * Microseconds per call of op(i), i cycling over `copies`: one warm-up pass, then `runs` runs of whole passes
 * lasting >= MIN_RUN_MS each; the median run, and the fastest and slowest.
 */
function measureRuns(copies: number, runs: number, op: (i: number) => void): { median: number; min: number; max: number } {
  let t = now();
  for (let i = 0; i < copies; i++) op(i);
  const passUs = Math.max(now() - t, 1);
  const passes = Math.max(1, Math.ceil((MIN_RUN_MS * 1000) / passUs));
  const per: number[] = [];
  for (let r = 0; r < runs; r++) {
    t = now();
    for (let p = 0; p < passes; p++) for (let i = 0; i < copies; i++) op(i);
    per.push((now() - t) / (passes * copies));
  }
  return { median: median(per), min: Math.min(...per), max: Math.max(...per) };
}

function measure(copies: number, runs: number, op: (i: number) => void): number {
  return measureRuns(copies, runs, op).median;
}

/** HF-packed ternary bytes with random codes in {0, 1, 2} (no code 3): one of the 81 valid bytes each. */
function randomHfPacked(n: number, seed: number): Uint8Array {
  const valid: number[] = [];
  for (let b = 0; b < 256; b++) if ([0, 2, 4, 6].every((s) => ((b >> s) & 3) !== 3)) valid.push(b);
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = valid[(s >>> 8) % valid.length] as number;
  }
  return out;
}

function randomF32(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

function alignedF32(n: number): Float32Array {
  const bytes = allocAligned(4 * n);
  // ArrayBuffer memory is at least 8-byte aligned, so the 64-byte aligned window starts on a float.
  return bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : new Float32Array(n);
}

function fmt(v: number, digits = 1): string {
  return v.toFixed(digits);
}

export async function main(argv: string[]): Promise<void> {
  const opts = parseArgs(argv);
  const status = initKernels({});
  if (!status.native) throw new Error(`kernels bench: the native addon is not loaded (${status.reason}); run npm install`);
  const cpu = cpuInfo();
  const llc = lastLevelCache();
  const rotateBytes = Math.max(4 * llc.bytes, MIN_ROTATION_BYTES);
  const load0 = loadavg()[0] ?? 0;
  const nCpu = cpus().length;
  if (load0 > 0.5) console.error(`warning: load average ${load0.toFixed(2)} on ${nCpu} CPUs; other work skews the numbers`);
  const log = (s: string): void => console.error(s);
  const busy0 = machineBusySeconds();
  const children0 = childrenCpuSeconds();
  const own0 = process.cpuUsage();
  const wall0 = now();
  log(`kernels bench: ${cpu.name}, ISA ${status.isa}, runs ${opts.runs}`);

  log(`last-level cache ${llc.bytes >> 20} MiB (${llc.sources.map((x) => `${x.source} ${x.bytes >> 20} MiB`).join(', ')}); weights rotate over ${rotateBytes >> 20} MiB`);

  // Streaming read of one buffer as large as the rotation (4 KiB pages touched first), with 1, 2 and 4 concurrent
  // sequential streams per thread: the bandwidth bound is the best of them.
  const big = allocAligned(rotateBytes);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 255;
  const streamReadByStreams: { threads: number; streamsPerThread: number; GBs: number }[] = [];
  for (const th of THREADS) {
    setThreads(th);
    for (const streams of STREAMS) {
      const us = measure(1, opts.runs, () => streamRead(big, streams));
      streamReadByStreams.push({ threads: th, streamsPerThread: streams, GBs: big.length / us / 1e3 });
      log(`stream read ${big.length >> 20} MiB, ${th} thread(s), ${streams} stream(s) each: ${fmt(big.length / us / 1e3)} GB/s`);
    }
  }
  const streamGBs = (th: number): number => Math.max(...streamReadByStreams.filter((s) => s.threads === th).map((s) => s.GBs));
  const streamRead1 = THREADS.map((th) => ({ threads: th, GBs: streamGBs(th), streamsPerThread: streamReadByStreams.find((s) => s.threads === th && s.GBs === streamGBs(th))?.streamsPerThread ?? 1 }));

  const products: Product[] = [];
  for (const [rows, cols] of SHAPES) {
    const bytes = (rows * cols) / 4;
    const copies = Math.max(2, Math.ceil(rotateBytes / bytes));
    const hf = randomHfPacked(Math.ceil(rows / 4) * cols, rows * 31 + cols);
    const ws: TernaryMatrix[] = [];
    for (let c = 0; c < copies; c++) ws.push(repackTernary(hf, rows, cols));
    const f32Copies = Math.max(2, Math.ceil(rotateBytes / (4 * rows * cols)));
    const w0 = randomF32(rows * cols, rows + cols);
    const wf: Float32Array[] = [];
    for (let c = 0; c < f32Copies; c++) {
      const w = alignedF32(rows * cols);
      w.set(w0);
      wf.push(w);
    }
    for (const batch of BATCHES) {
      const xq = Int8Array.from(randomF32(batch * cols, batch), (v) => Math.round(v * 254));
      const xf = randomF32(batch * cols, batch + 1);
      const yq = new Int32Array(batch * rows);
      const yf = new Float32Array(batch * rows);
      const q = { q: new Int8Array(batch * cols), scale: new Float32Array(batch) };
      const yt = new Float32Array(batch * rows);
      for (const th of THREADS) {
        setThreads(th);
        // What the runtime does per projection (packages/runtime linear()): quantize the fp32 rows, product + scales.
        const t = measureRuns(copies, opts.runs, (i) => {
          quantizeActivations(xf, batch, cols, q);
          ternaryLinear(ws[i] as TernaryMatrix, q.q, q.scale, 0.02, batch, yt, true);
        });
        const us = t.median;
        const coreUs = measure(copies, opts.runs, (i) => ternaryMatMul(ws[i] as TernaryMatrix, xq, batch, yq));
        const fp32Us = measure(f32Copies, opts.runs, (i) => matvecF32(wf[i] as Float32Array, xf, rows, cols, batch, yf));
        const streamUs = measure(copies, opts.runs, (i) => streamRead((ws[i] as TernaryMatrix).data, streamRead1.find((s) => s.threads === th)?.streamsPerThread ?? 1));
        const p: Product = {
          rows,
          cols,
          batch,
          threads: th,
          fp32InOut: true,
          usPerProduct: us,
          usRange: [t.min, t.max],
          int8CoreUsPerProduct: coreUs,
          weightGBs: bytes / us / 1e3,
          fp32UsPerProduct: fp32Us,
          fp32WeightGBs: (4 * rows * cols) / fp32Us / 1e3,
          streamUsSameBytes: streamUs,
          speedupVsFp32: fp32Us / us,
          fractionOfStreamRead: bytes / us / 1e3 / streamGBs(th),
          fractionOfStreamSameBytes: streamUs / us,
          llamaCppUsPerProduct: null,
          speedupVsLlamaCpp: null,
        };
        products.push(p);
        log(
          `${rows}x${cols} batch ${batch} ${th}t: ternary fp32 in/out ${fmt(us)} us [${fmt(t.min)}-${fmt(t.max)}] (${fmt(p.weightGBs)} GB/s, ${fmt(100 * p.fractionOfStreamRead, 0)}% of stream), int8 core ${fmt(coreUs)} us, fp32 ${fmt(fp32Us)} us (x${fmt(p.speedupVsFp32)}), stream same bytes ${fmt(streamUs)} us`,
        );
      }
    }
  }

  // What each ISA path buys: the 4096x4096 product on every path this CPU has, batch 1 (and 8, 32 on the
  // AVX-512 VNNI and AMX paths, which differ there).
  const isaComparison: { isa: string; rows: number; cols: number; batch: number; threads: number; usPerProduct: number; weightGBs: number }[] = [];
  {
    const [rows, cols] = [4096, 4096];
    const bytes = (rows * cols) / 4;
    const copies = Math.max(2, Math.ceil(rotateBytes / bytes));
    const hf = randomHfPacked(Math.ceil(rows / 4) * cols, 7);
    const ws = Array.from({ length: copies }, () => repackTernary(hf, rows, cols));
    for (const isa of availableIsas()) {
      setIsa(isa);
      for (const batch of isa === 'avx512vnni' || isa === 'amx' ? [1, 8, 32] : [1]) {
        const xf = randomF32(batch * cols, 3);
        const q = { q: new Int8Array(batch * cols), scale: new Float32Array(batch) };
        const yt = new Float32Array(batch * rows);
        for (const th of THREADS) {
          setThreads(th);
          const us = measure(copies, opts.runs, (i) => {
            quantizeActivations(xf, batch, cols, q);
            ternaryLinear(ws[i] as TernaryMatrix, q.q, q.scale, 0.02, batch, yt, true);
          });
          isaComparison.push({ isa, rows, cols, batch, threads: th, usPerProduct: us, weightGBs: bytes / us / 1e3 });
          log(`ISA ${isa} ${rows}x${cols} batch ${batch} ${th}t: ${fmt(us)} us (${fmt(bytes / us / 1e3)} GB/s)`);
        }
      }
    }
    setIsa(status.isa as Isa);
  }

  // llama.cpp TQ2_0 on the same shapes, batches and thread counts, weights rotating over the same volume.
  const llama = llamaCppRunner();
  const llamaProducts: LlamaCppProduct[] = [];
  if (typeof llama === 'string') {
    log(`llama.cpp reference skipped: ${llama}`);
  } else {
    log(`llama.cpp reference: ggml ${llama.variant} build from ${llama.packageVersion}`);
    for (const th of THREADS) {
      for (const batch of BATCHES) {
        const reps = batch === 1 ? opts.runs : 3;
        for (const r of llama.run(th, rotateBytes / (1 << 20), reps, SHAPES.map(([rows, cols]) => ({ rows, cols, batch })))) {
          llamaProducts.push(r);
          const p = products.find((q) => q.rows === r.rows && q.cols === r.cols && q.batch === r.batch && q.threads === r.threads);
          if (p !== undefined) {
            p.llamaCppUsPerProduct = r.usPerProduct;
            p.speedupVsLlamaCpp = r.usPerProduct / p.usPerProduct;
          }
          log(`llama.cpp TQ2_0 ${r.rows}x${r.cols} batch ${r.batch} ${r.threads}t: ${fmt(r.usPerProduct)} us${p ? ` (ours x${fmt(r.usPerProduct / p.usPerProduct, 2)} faster)` : ''}`);
        }
      }
    }
  }

  // CPU time other processes used while this ran, as a fraction of the machine: the noise indicator.
  const ownUsage = process.cpuUsage(own0);
  const ownSeconds = (ownUsage.user + ownUsage.system) / 1e6 + (childrenCpuSeconds() - children0);
  const otherCpuFraction = Math.max(0, (machineBusySeconds() - busy0 - ownSeconds) / (((now() - wall0) / 1e6) * nCpu));
  log(`other processes used ${fmt(100 * otherCpuFraction)}% of the CPUs during the run`);

  const date = new Date();
  const day = date.toISOString().slice(0, 10);
  const command = `npm run bench -- kernels${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`;
  const result = {
    bench: 'kernels',
    date: date.toISOString(),
    command,
    machine: {
      cpuModel: cpu.model,
      cpuFamily: cpu.family,
      cpuModelNumber: cpu.modelNumber,
      cpuFlags: cpu.flags,
      cpus: nCpu,
      llcBytes: llc.bytes,
      llcSources: llc.sources,
      memTotalBytes: totalmem(),
      node: process.version,
      loadAverage1mAtStart: load0,
      otherProcessesCpuFraction: otherCpuFraction,
    },
    isa: status.isa,
    runs: opts.runs,
    method:
      `median of ${opts.runs} runs (each >= ${MIN_RUN_MS} ms) after one warm-up pass; weights rotate over copies totalling max(4x the last-level cache, 1 GiB) ` +
      `(${rotateBytes >> 20} MiB) so they come from DRAM; ours is timed fp32 activations in, fp32 out (quantizeActivations + ternaryLinear, as the runtime runs a projection); ` +
      `streamReadGBs: the best of 1, 2 and 4 concurrent streams per thread reading one ${rotateBytes >> 20} MiB buffer; ` +
      'streamUsSameBytes reads the same rotating ternary copies the product reads; weightGBs counts 2 bits per weight',
    llcBytes: llc.bytes,
    rotationBytes: rotateBytes,
    streamReadGBs: streamGBs(Math.max(...THREADS)),
    streamRead: streamRead1,
    streamReadByStreams,
    products,
    isaComparison,
    llamaCpp:
      typeof llama === 'string'
        ? { ran: false, reason: llama }
        : {
            ran: true,
            build: `${llama.packageVersion}, libggml-cpu-${llama.variant}.so`,
            method: 'scripts/bench/llamacpp/tq2_matmul.c: one ggml graph of mul_mat nodes over the same rotating volume of TQ2_0 weight copies; F32 activations quantized to q8_K inside the op; median per product of the graph runs (batch 1: --runs, batch 8/32: 3)',
            products: llamaProducts,
          },
    issueReference: { note: 'llama.cpp TQ2_0 batch 1, 2 threads, as quoted by issue 7 / MACHINE.md (another machine; not measured in this run)', usPerProduct: LLAMA_CPP_TQ2_0_US },
  };
  mkdirSync(opts.out, { recursive: true });
  const json = `${JSON.stringify(result, null, 2)}\n`;
  writeFileSync(join(opts.out, `kernels-${day}.json`), json);
  writeFileSync(join(opts.out, 'kernels-latest.json'), json);
  writeFileSync(
    join(opts.out, `kernels-${day}.md`),
    markdown(result.date, command, cpu, status.isa, load0, otherCpuFraction, llc, rotateBytes, opts.runs, streamReadByStreams, products, isaComparison, typeof llama === 'string' ? `not run: ${llama}` : `${llama.packageVersion}, libggml-cpu-${llama.variant}.so`),
  );
  log(`wrote ${join(opts.out, `kernels-${day}.json`)}, .md and kernels-latest.json`);
}

function markdown(
  date: string,
  command: string,
  cpu: CpuInfo,
  isa: string,
  load: number,
  otherCpu: number,
  llc: { bytes: number; sources: { source: string; bytes: number }[] },
  rotateBytes: number,
  runs: number,
  stream: { threads: number; streamsPerThread: number; GBs: number }[],
  products: Product[],
  isaComparison: { isa: string; rows: number; cols: number; batch: number; threads: number; usPerProduct: number; weightGBs: number }[],
  llamaBuild: string,
): string {
  const lines = [
    `# Kernels benchmark, ${date.slice(0, 10)}`,
    '',
    `Command: \`${command}\`  `,
    `CPU: ${cpu.name} (${cpu.flags.join(' ')}), ${cpus().length} CPUs, Node ${process.version}  `,
    `ISA path: **${isa}**; load average at start ${load.toFixed(2)}; other processes used ${fmt(100 * otherCpu)}% of the CPUs during the run  `,
    `Last-level cache: ${llc.bytes >> 20} MiB, the largest of ${llc.sources.map((x) => `${x.source} ${x.bytes >> 20} MiB`).join(', ')}  `,
    `Method: median of ${runs} runs (>= ${MIN_RUN_MS} ms each) after a warm-up pass. Every product rotates over copies of its weights totalling ${rotateBytes >> 20} MiB (max(4x the last-level cache, 1 GiB)), so weights come from DRAM. GB/s counts the packed weight bytes (2 bits per weight).`,
    '',
    '## Streaming read (the bandwidth bound)',
    '',
    `One ${rotateBytes >> 20} MiB buffer, each thread's share read as 1, 2 or 4 concurrent sequential streams (4 KiB of each in turn); the bound is the best.`,
    '',
    '| threads | streams per thread | GB/s |',
    '|---:|---:|---:|',
    ...stream.map((s) => `| ${s.threads} | ${s.streamsPerThread} | ${fmt(s.GBs)} |`),
    '',
    '## Ternary products (fp32 in, fp32 out) vs fp32, llama.cpp and the bandwidth bound',
    '',
    '"ternary us": fp32 activations in, fp32 out - the per-token int8 quantization and the scale epilogue included, as the runtime runs a projection and as llama.cpp\'s TQ2_0 op is timed (its F32 activations are quantized to q8_K inside the op); the range is the fastest and slowest run. "int8 core": the int8 x ternary product alone (int8 in, int32 out). "stream same bytes": a streaming read of exactly the weight copies the product reads. "% of stream": weight GB/s over the best streaming read at the same thread count.',
    '',
    '| out x in | batch | threads | ternary us | range | int8 core us | weight GB/s | % of stream | fp32 us | ternary vs fp32 | stream same bytes us | llama.cpp TQ2_0 us | ours vs llama.cpp |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...products.map((p) => {
      const key = `${p.rows}x${p.cols}`;
      const ll = p.llamaCppUsPerProduct === null ? '' : fmt(p.llamaCppUsPerProduct);
      const sp = p.speedupVsLlamaCpp === null ? '' : `${fmt(p.speedupVsLlamaCpp, 2)}x`;
      return `| ${key} | ${p.batch} | ${p.threads} | ${fmt(p.usPerProduct)} | ${fmt(p.usRange[0])}-${fmt(p.usRange[1])} | ${fmt(p.int8CoreUsPerProduct)} | ${fmt(p.weightGBs)} | ${fmt(100 * p.fractionOfStreamRead, 0)}% | ${fmt(p.fp32UsPerProduct)} | ${fmt(p.speedupVsFp32)}x | ${fmt(p.streamUsSameBytes)} | ${ll} | ${sp} |`;
    }),
    '',
    `llama.cpp TQ2_0: measured in this run on this machine (${llamaBuild}; scripts/bench/llamacpp.ts), same shapes, batches, threads and weight rotation; its F32 activations are quantized to q8_K inside the op. Issue 7 quoted ${Object.entries(LLAMA_CPP_TQ2_0_US).map(([k, v]) => `${k} ${v} us`).join(', ')} (batch 1, 2 threads) from another machine.`,
    '',
    '## ISA paths (same rotation, fp32 in / out)',
    '',
    'The amx path runs batch 1 on the AVX-512 VNNI kernels.',
    '',
    '| ISA | out x in | batch | threads | us | weight GB/s |',
    '|---|---|---:|---:|---:|---:|',
    ...isaComparison.map((c) => `| ${c.isa} | ${c.rows}x${c.cols} | ${c.batch} | ${c.threads} | ${fmt(c.usPerProduct)} | ${fmt(c.weightGBs)} |`),
    '',
  ];
  return lines.join('\n');
}
