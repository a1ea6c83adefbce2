/**
 * Plain reference kernels: loops over typed arrays, written for reading, not speed. Every fast path in this
 * package is tested against these (integer products bit for bit, float products within a tolerance).
 */

/** y[b, o] = sum_i xq[b, i] * t[o, i]; t is W [rows, cols] as -1/0/+1 values (not packed). */
export function ternaryMatMulRef(t: Int8Array, rows: number, cols: number, xq: Int8Array, batch: number): Int32Array {
  const y = new Int32Array(batch * rows);
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < rows; o++) {
      let acc = 0;
      for (let i = 0; i < cols; i++) acc += (xq[b * cols + i] as number) * (t[o * cols + i] as number);
      y[b * rows + o] = acc;
    }
  }
  return y;
}

/** ternaryMatMulRef with the BitLinear scales: float32(acc * (weightScale / actScale[b])). */
export function ternaryLinearRef(
  t: Int8Array,
  rows: number,
  cols: number,
  xq: Int8Array,
  actScale: Float32Array,
  weightScale: number,
  batch: number,
): Float32Array {
  const acc = ternaryMatMulRef(t, rows, cols, xq, batch);
  const y = new Float32Array(batch * rows);
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < rows; o++) y[b * rows + o] = (acc[b * rows + o] as number) * (weightScale / (actScale[b] as number));
  }
  return y;
}

/** C[m, n] = op(A) @ op(B) accumulated in float64. A is [m, k] ([k, m] if transA), B is [k, n] ([n, k] if transB). */
export function matmulF32Ref(a: Float32Array, b: Float32Array, m: number, k: number, n: number, transA = false, transB = false): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        const av = (transA ? a[p * m + i] : a[i * k + p]) as number;
        const bv = (transB ? b[j * k + p] : b[p * n + j]) as number;
        acc += av * bv;
      }
      c[i * n + j] = acc;
    }
  }
  return c;
}

/** y[b, o] = sum_i W[o, i] x[b, i] in float64; W is [rows, cols], x is [batch, cols]. */
export function matvecF32Ref(w: Float32Array, x: Float32Array, rows: number, cols: number, batch: number): Float64Array {
  const y = new Float64Array(batch * rows);
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < rows; o++) {
      let acc = 0;
      for (let i = 0; i < cols; i++) acc += (w[o * cols + i] as number) * (x[b * cols + i] as number);
      y[b * rows + o] = acc;
    }
  }
  return y;
}
