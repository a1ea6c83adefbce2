/**
 * The small dense linear algebra behind Metis's spectral split (metis.ts), in plain float64 loops (no tfjs):
 * the orthonormal basis of a tall thin matrix's columns (the Q of a thin QR) and the eigen-decomposition of a
 * small symmetric matrix (cyclic Jacobi). Both only ever see [rows, l] and [l, l] blocks with l = rank + a few,
 * so loops are the right tool; tf.linalg.qr would build the full [rows, rows] Q to slice it.
 */
import { ArgumentError } from '@bitdistill/core';

/**
 * Orthonormal columns spanning those of a [rows, cols] row-major matrix (rows >= cols): modified Gram-Schmidt,
 * run twice per column ("twice is enough", Giraud et al. 2005) so the columns stay orthogonal to rounding. A
 * column that is (numerically) in the span of the ones before it becomes zero instead of normalised noise.
 */
export function orthonormalColumns(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  if (a.length !== rows * cols) throw new ArgumentError(`orthonormalColumns: ${a.length} values do not form [${rows}, ${cols}]`);
  if (cols > rows) throw new ArgumentError(`orthonormalColumns: [${rows}, ${cols}] has more columns than rows`);
  const q = Float64Array.from(a);
  for (let j = 0; j < cols; j++) {
    let before = 0;
    for (let r = 0; r < rows; r++) before += (q[r * cols + j] as number) ** 2;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        let dot = 0;
        for (let r = 0; r < rows; r++) dot += (q[r * cols + i] as number) * (q[r * cols + j] as number);
        for (let r = 0; r < rows; r++) q[r * cols + j] = (q[r * cols + j] as number) - dot * (q[r * cols + i] as number);
      }
    }
    let norm = 0;
    for (let r = 0; r < rows; r++) norm += (q[r * cols + j] as number) ** 2;
    norm = Math.sqrt(norm);
    const keep = norm > 1e-10 * Math.sqrt(before) && norm > 0;
    for (let r = 0; r < rows; r++) q[r * cols + j] = keep ? (q[r * cols + j] as number) / norm : 0;
  }
  return q;
}

/**
 * Eigen-decomposition of a symmetric [n, n] row-major matrix by cyclic Jacobi rotations (Golub & Van Loan
 * section 8.5; the rotation angle as in Numerical Recipes' `jacobi`): `values` descending, `vectors` [n, n]
 * row-major with the eigenvector of values[j] in column j. Sweeps until the off-diagonal mass is below 1e-30 of
 * the total (or 100 sweeps; Jacobi converges quadratically, a 16 x 16 block takes ~6).
 */
export function symmetricEigen(sym: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } {
  if (sym.length !== n * n) throw new ArgumentError(`symmetricEigen: ${sym.length} values do not form [${n}, ${n}]`);
  const a = Float64Array.from(sym);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += (a[i] as number) ** 2;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += 2 * (a[p * n + q] as number) ** 2;
    if (off <= 1e-30 * total) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q] as number;
        if (apq === 0) continue;
        // A <- P^T A P with P the rotation in the (p, q) plane that zeroes a_pq.
        const theta = ((a[q * n + q] as number) - (a[p * n + p] as number)) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let r = 0; r < n; r++) {
          const arp = a[r * n + p] as number;
          const arq = a[r * n + q] as number;
          a[r * n + p] = c * arp - s * arq;
          a[r * n + q] = s * arp + c * arq;
        }
        for (let r = 0; r < n; r++) {
          const apr = a[p * n + r] as number;
          const aqr = a[q * n + r] as number;
          a[p * n + r] = c * apr - s * aqr;
          a[q * n + r] = s * apr + c * aqr;
        }
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (let r = 0; r < n; r++) {
          const vrp = v[r * n + p] as number;
          const vrq = v[r * n + q] as number;
          v[r * n + p] = c * vrp - s * vrq;
          v[r * n + q] = s * vrp + c * vrq;
        }
      }
    }
  }
  const order = [...Array(n).keys()].sort((i, j) => (a[j * n + j] as number) - (a[i * n + i] as number));
  const values = Float64Array.from(order, (i) => a[i * n + i] as number);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let r = 0; r < n; r++) vectors[r * n + dst] = v[r * n + src] as number;
  });
  return { values, vectors };
}
