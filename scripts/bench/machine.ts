/**
 * The CPU a bench ran on, read from /proc/cpuinfo. Machines of one kind differ (an AMD EPYC of family 25 is
 * Zen 4 with half-width AVX-512 datapaths, family 26 is Zen 5 with full-width ones: twice the fp32 GEMM rate),
 * and "model name" alone reads "AMD EPYC" on both, so every figure names the family and model too.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

export interface CpuInfo {
  /** /proc/cpuinfo's model name, e.g. "AMD EPYC". */
  model: string;
  /** cpu family and model number as /proc/cpuinfo prints them (decimal), '' where unknown. */
  family: string;
  modelNumber: string;
  /** The ISA flags the kernels dispatch on, those present. */
  flags: string[];
  /** The model name with its family and model: what a result file names as its CPU. */
  name: string;
}

const WANTED = ['fma', 'avx2', 'avx_vnni', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'amx_int8', 'amx_bf16'];

/** Zen generation of an AMD family (17h: Zen 1-2, 19h: Zen 3-4, 1Ah: Zen 5). */
function amdGeneration(family: number, model: number): string {
  if (family === 26) return 'Zen 5';
  if (family === 25) return model >= 0x10 && model < 0x20 ? 'Zen 4' : model >= 0x60 && model < 0x80 ? 'Zen 4' : model >= 0xa0 ? 'Zen 4' : 'Zen 3';
  return '';
}

export function cpuInfo(): CpuInfo {
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    const model = cpus()[0]?.model ?? 'unknown';
    return { model, family: '', modelNumber: '', flags: [], name: model };
  }
  const field = (k: string): string => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const model = field('model name') || (cpus()[0]?.model ?? 'unknown');
  const family = field('cpu family');
  const modelNumber = field('model');
  const present = new Set(field('flags').split(/\s+/));
  const flags = WANTED.filter((f) => present.has(f));
  const gen = /AMD/.test(model) ? amdGeneration(Number(family), Number(modelNumber)) : '';
  const name = family === '' ? model : `${model} family ${family} model ${modelNumber}${gen === '' ? '' : ` (${gen})`}`;
  return { model, family, modelNumber, flags, name };
}
