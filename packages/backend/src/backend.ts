/**
 * Chooses and initialises the tfjs backend. `auto` prefers libtensorflow (tfjs-node-gpu, then tfjs-node:
 * optional dependencies that usually cannot install on CPU-only machines), then wasm (SIMD, works offline),
 * then the pure-JS cpu backend. Only the CLI (or a test) calls this; libraries use whatever is active.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, silentLogger, type Logger } from '@bitdistill/core';
import { registerWasmSegmentSum } from './segment-sum.ts';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface BackendInfo {
  /** tfjs backend name now active: 'tensorflow' | 'wasm' | 'cpu'. */
  name: string;
  /** Which package provided it. */
  provider: string;
  /** Why each better candidate was skipped (auto only). */
  skipped: { provider: string; reason: string }[];
}

const require = createRequire(import.meta.url);
let active: BackendInfo | null = null;

function errorSummary(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') return 'not installed';
    return e.message.split('\n')[0] ?? e.message;
  }
  return String(e);
}

async function tryTensorflow(pkg: string): Promise<void> {
  // tfjs-node registers the 'tensorflow' backend as a side effect of being loaded.
  require(pkg);
  if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but backend 'tensorflow' failed to initialise`);
}

async function tryWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend failed to initialise');
  registerWasmSegmentSum();
}

async function tryCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend failed to initialise');
}

/** Initialise the backend once per process; later calls with the same choice return the same info. */
export async function initBackend(choice: BackendChoice = 'auto', logger: Logger = silentLogger): Promise<BackendInfo> {
  if (!(BACKEND_CHOICES as readonly string[]).includes(choice)) {
    throw new ArgumentError(`unknown backend '${String(choice)}'`, { hint: `use one of ${BACKEND_CHOICES.join(', ')}` });
  }
  tf.enableProdMode();
  const candidates: { provider: string; name: string; init: () => Promise<void> }[] = [];
  if (choice === 'auto' || choice === 'tensorflow') {
    candidates.push({ provider: '@tensorflow/tfjs-node-gpu', name: 'tensorflow', init: () => tryTensorflow('@tensorflow/tfjs-node-gpu') });
    candidates.push({ provider: '@tensorflow/tfjs-node', name: 'tensorflow', init: () => tryTensorflow('@tensorflow/tfjs-node') });
  }
  if (choice === 'auto' || choice === 'wasm') candidates.push({ provider: '@tensorflow/tfjs-backend-wasm', name: 'wasm', init: tryWasm });
  if (choice === 'auto' || choice === 'cpu') candidates.push({ provider: '@tensorflow/tfjs-backend-cpu', name: 'cpu', init: tryCpu });

  if (active !== null && (choice === 'auto' || active.name === choice)) return active;

  const skipped: BackendInfo['skipped'] = [];
  for (const c of candidates) {
    try {
      await c.init();
      active = { name: c.name, provider: c.provider, skipped };
      for (const s of skipped) logger.debug({ provider: s.provider, reason: s.reason }, 'backend candidate skipped');
      logger.info(
        { backend: c.name, provider: c.provider, skipped: skipped.map((s) => `${s.provider}: ${s.reason}`) },
        `using tfjs backend '${c.name}'`,
      );
      return active;
    } catch (e) {
      skipped.push({ provider: c.provider, reason: errorSummary(e) });
    }
  }
  throw new ArgumentError(
    `no tfjs backend for --backend ${choice} could be initialised: ${skipped.map((s) => `${s.provider} (${s.reason})`).join('; ')}`,
    { hint: choice === 'tensorflow' ? 'tfjs-node needs libtensorflow, which cannot be downloaded here; use --backend wasm' : 'reinstall with `npm install`' },
  );
}

export function activeBackend(): BackendInfo | null {
  return active;
}
