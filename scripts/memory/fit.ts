/**
 * Fits memory.ts's activation coefficients: runs profile-step.ts over random decoder shapes (a child process
 * each) and solves the least-squares fit of the step's unique tensor bytes (above weights and gradients) to
 *   a L*N*C + b L*N*Q + c L*N*K + e L*N*I + f L*B*H*T^2 + g Wlin + h N*V + k V*C      (fp32 values)
 * N = B*T, Q = H*head_dim, K = Hkv*head_dim, Wlin = every layer's seven projection weights. Prints the
 * coefficients and each shape's residual; paste them into TRAIN_DENSE / TRAIN_STUDENT / FORWARD_DENSE.
 *
 *   node --import tsx scripts/memory/fit.ts [--backend native] [--shapes 18] [--seed 1] [--mode dense|student|forward]
 */
import { spawnSync } from 'node:child_process';
import { Rng } from '@bitdistill/core';

const argv = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? (argv[i + 1] as string) : def;
};
const backend = opt('backend', 'native');
const count = Number(opt('shapes', '18'));
const modes = argv.includes('--mode') ? [opt('mode', 'dense')] : ['dense', 'student', 'forward'];
const NAMES = ['NC', 'NQ', 'NK', 'NI', 'S', 'Wlin', 'NV', 'VC'];

/** Solves (X^T X) b = X^T y by Gaussian elimination with partial pivoting. */
function leastSquares(X: number[][], y: number[]): number[] {
  const n = (X[0] as number[]).length;
  const A = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n + 1 }, (_, j) => X.reduce((s, r, k) => s + (r[i] as number) * (j < n ? (r[j] as number) : (y[k] as number)), 0)),
  );
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs((A[r] as number[])[c] as number) > Math.abs((A[p] as number[])[c] as number)) p = r;
    [A[c], A[p]] = [A[p] as number[], A[c] as number[]];
    const row = A[c] as number[];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = ((A[r] as number[])[c] as number) / (row[c] as number);
      for (let j = c; j <= n; j++) (A[r] as number[])[j] = ((A[r] as number[])[j] as number) - f * (row[j] as number);
    }
  }
  return A.map((r, i) => (r[n] as number) / (r[i] as number));
}

for (const mode of modes) {
  const rng = new Rng(Number(opt('seed', '1')));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)] as T;
  const X: number[][] = [];
  const y: number[] = [];
  const labels: string[] = [];
  for (let i = 0; i < count; i++) {
    const C = pick([64, 128, 192]);
    const d = pick([16, 32]);
    const H = pick([2, 4, 8]);
    const Hkv = pick([1, 2, 4, 8].filter((h) => H % h === 0));
    const I = pick([128, 256, 512]);
    const V = pick([512, 1024, 4096]);
    const B = pick([1, 2, 4]);
    const T = pick([16, 32, 64]);
    const L = pick([1, 2, 3]);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/memory/profile-step.ts', backend, ...[C, L, H, Hkv, d, I, V, B, T].map(String), mode], {
      encoding: 'utf8',
    });
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
    if (line === undefined) throw new Error(`profile failed: ${r.stderr.slice(-400)}`);
    const m = JSON.parse(line) as { stepMiB: number };
    const N = B * T;
    const Q = H * d;
    const K = Hkv * d;
    const Wlin = L * (C * Q + 2 * C * K + Q * C + 3 * C * I);
    X.push([L * N * C, L * N * Q, L * N * K, L * N * I, L * B * H * T * T, Wlin, N * V, V * C].map((v) => (v * 4) / 2 ** 20));
    y.push(m.stepMiB);
    labels.push(`C${C} L${L} H${H}/${Hkv}x${d} I${I} V${V} ${B}x${T}`);
  }
  const b = leastSquares(X, y);
  console.log(`\n${mode} (${backend}, ${count} shapes): ${NAMES.map((n, i) => `${n} ${(b[i] as number).toFixed(2)}`).join(', ')}`);
  let worst = 0;
  X.forEach((row, i) => {
    const pred = row.reduce((s, v, j) => s + v * (b[j] as number), 0);
    const err = (pred - (y[i] as number)) / (y[i] as number);
    worst = Math.max(worst, Math.abs(err));
    console.log(`  ${(labels[i] as string).padEnd(34)} measured ${(y[i] as number).toFixed(3)} MiB  fit ${pred.toFixed(3)}  ${(100 * err).toFixed(1)}%`);
  });
  console.log(`  worst residual ${(100 * worst).toFixed(1)}%`);
}
