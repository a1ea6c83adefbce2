#!/usr/bin/env python3
"""Independent numpy reference for ggml's ternary block types TQ2_0 and TQ1_0 (packages/format/src/tq.ts).

Vectorised from the block layouts of llama.cpp ggml/src/ggml-common.h and the loops of quantize_row_tq2_0_ref /
quantize_row_tq1_0_ref / dequantize_row_tq*_ref in ggml-quants.c (no project code involved):
  * per block of 256: d = max|x| (float32), id = 1/d (0 if d == 0), code = lroundf(x * id) + 1 (halves away
    from zero), d stored as IEEE fp16 (round to nearest even);
  * TQ2_0 (66 bytes): qs[64] + d; element g*128 + n*32 + m sits in byte g*32 + m, bits 2n;
  * TQ1_0 (54 bytes): qs[48] + qh[4] + d; qs[0:32] hold elements m + 32n (n = 0..4), qs[32:48] elements
    160 + m + 16n, qh[j] elements 240 + j + 4n (n = 0..3); a byte holds its digits as v = sum c_n 3^(4-n)
    (qh: the fourth digit is followed by a 0), stored as ceil(v * 256 / 243).
Dequantized values are (code - 1) * float32(d16), with digit n of a TQ1_0 byte q read as ((q * 3^n) mod 256) * 3 >> 8.

Usage (from the repository root):
    python3 scripts/reference/golden_tq.py > test/golden/tq.json
"""
import json

import numpy as np

SEED = 20260301
F32 = np.float32


def lround(v):
    return (np.sign(v) * np.floor(np.abs(v).astype(np.float64) + 0.5)).astype(np.int64)


def codes_and_d(x):
    blocks = x.reshape(-1, 256).astype(F32)
    d = np.max(np.abs(blocks), axis=1, keepdims=True).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(F32)
    prod = (blocks * inv).astype(F32)
    codes = (lround(prod) + 1).astype(np.int64)
    return codes, d[:, 0]


def d_bytes(d):
    return d.astype(np.float16).view(np.uint8).reshape(-1, 2)


def tq2_0(x):
    codes, d = codes_and_d(x)
    nb = codes.shape[0]
    c = codes.reshape(nb, 2, 4, 32)  # [block, g, n, m]
    shifts = np.array([0, 2, 4, 6]).reshape(1, 1, 4, 1)
    qs = (c << shifts).sum(axis=2).reshape(nb, 64)
    return np.concatenate([qs.astype(np.uint8), d_bytes(d)], axis=1).ravel()


def pack_base3(digits):
    """digits [..., 5] in 0..2 -> ceil(v * 256 / 243) with v = sum c_n 3^(4-n)."""
    v = (digits * np.array([81, 27, 9, 3, 1])).sum(axis=-1)
    return ((v * 256 + 242) // 243).astype(np.uint8)


def tq1_0(x):
    codes, d = codes_and_d(x)
    nb = codes.shape[0]
    a = codes[:, :160].reshape(nb, 5, 32).transpose(0, 2, 1)  # [block, m, n]
    b = codes[:, 160:240].reshape(nb, 5, 16).transpose(0, 2, 1)
    h = codes[:, 240:].reshape(nb, 4, 4).transpose(0, 2, 1)  # [block, j, n]
    h = np.concatenate([h, np.zeros((nb, 4, 1), dtype=h.dtype)], axis=2)
    return np.concatenate([pack_base3(a), pack_base3(b), pack_base3(h), d_bytes(d)], axis=1).ravel()


def digit(q, n):
    return (((q.astype(np.int64) * 3 ** n) & 0xFF) * 3) >> 8


def dequant(kind, data, n):
    bb = 66 if kind == "TQ2_0" else 54
    blocks = data.reshape(-1, bb)
    d = blocks[:, bb - 2:].copy().view(np.float16).astype(F32)  # [nb, 1]
    nb = blocks.shape[0]
    if kind == "TQ2_0":
        qs = blocks[:, :64].reshape(nb, 2, 1, 32).astype(np.int64)
        codes = (qs >> np.array([0, 2, 4, 6]).reshape(1, 1, 4, 1)) & 3  # [block, g, n, m]
        codes = codes.reshape(nb, 256)
    else:
        a = np.stack([digit(blocks[:, :32], k) for k in range(5)], axis=1).reshape(nb, 160)
        b = np.stack([digit(blocks[:, 32:48], k) for k in range(5)], axis=1).reshape(nb, 80)
        h = np.stack([digit(blocks[:, 48:52], k) for k in range(4)], axis=1).reshape(nb, 16)
        codes = np.concatenate([a, b, h], axis=1)
    return ((codes - 1).astype(F32) * d).astype(F32).ravel()[:n]


def cases():
    rng = np.random.default_rng(SEED)
    out = []
    out.append(("gaussian, 3 blocks", rng.normal(0, 0.02, 768).astype(F32)))
    s = F32(0.0123)
    t = rng.integers(-1, 2, 512).astype(F32)
    out.append(("ternary x 0.0123, 2 blocks", (t * s).astype(F32)))
    z = np.zeros(512, dtype=F32)
    z[256 + 7] = F32(-0.5)
    out.append(("an all-zero block, then one non-zero value", z))
    h = np.zeros(256, dtype=F32)
    h[0] = F32(2.0)
    h[1:6] = np.array([1.0, -1.0, 0.5, -0.5, 1.5], dtype=F32)  # x/d = +-0.5: lroundf rounds away from zero
    h[100] = F32(-2.0)
    out.append(("halves (lroundf, not half-to-even)", h))
    return out


def main():
    result = {"description": __doc__.strip().splitlines()[0], "seed": SEED, "cases": []}
    for name, x in cases():
        for kind, fn in (("TQ2_0", tq2_0), ("TQ1_0", tq1_0)):
            data = fn(x)
            result["cases"].append({
                "name": name,
                "type": kind,
                "x": [float(v) for v in x],
                "bytes": bytes(data).hex(),
                "dequantized": [float(v) + 0.0 for v in dequant(kind, data, x.size)],
            })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
