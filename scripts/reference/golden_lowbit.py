#!/usr/bin/env python3
"""Independent numpy reference for the low-bit float formats of packages/quant/src/lowbit.ts (issue 22).

No project code involved. Each format's non-negative values are built from their bit patterns (OCP FP8 E4M3:
bias 7, no infinities, S.1111.111 is NaN, so 448 is the largest finite value; FP8 E5M2: bias 15, IEEE-like,
largest finite 57344; FP4 E2M1: bias 1, values 0, 0.5, 1, 1.5, 2, 3, 4, 6), subnormals included. Rounding is a
search of that table: the nearest value, a tie going to the value whose code (bit pattern) is even, anything
past the largest finite value saturating to it (the fake-quant convention of training recipes), the sign kept.
NVFP4: blocks of 16 values share one E4M3 block scale s_b = e4m3(amax_b / 6 / S) under one float32 tensor scale
S = amax / (6 * 448); each value becomes e2m1(x / (s_b * S)) * s_b * S (a block scale of 0 gives 0).

Usage (from the repository root):
    python3 scripts/reference/golden_lowbit.py > test/golden/lowbit.json
"""
import json

import numpy as np

SEED = 20261204
FORMATS = {
    # name: (exponent bits, mantissa bits, bias, codes that are not finite numbers)
    'e4m3': (4, 3, 7, {0b1111111}),
    'e5m2': (5, 2, 15, {0b1111100, 0b1111101, 0b1111110, 0b1111111}),
    'e2m1': (2, 1, 1, set()),
}


def table(name):
    e_bits, m_bits, bias, bad = FORMATS[name]
    values, codes = [], []
    for code in range(1 << (e_bits + m_bits)):
        if code in bad:
            continue
        e, m = code >> m_bits, code & ((1 << m_bits) - 1)
        v = (m / (1 << m_bits)) * 2.0 ** (1 - bias) if e == 0 else (1 + m / (1 << m_bits)) * 2.0 ** (e - bias)
        values.append(v)
        codes.append(code)
    order = np.argsort(values, kind='stable')
    return np.array(values)[order], np.array(codes)[order]


def round_to(name, x):
    vals, codes = table(name)
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), vals[-1])
    i = np.clip(np.searchsorted(vals, a), 1, len(vals) - 1)
    lo, hi = vals[i - 1], vals[i]
    pick_hi = (hi - a < a - lo) | ((hi - a == a - lo) & (codes[i] % 2 == 0))
    out = np.where(pick_hi, hi, lo)
    out = np.where(a <= vals[0], vals[0], out)
    return np.copysign(out, x)


def nvfp4(x):
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    amax = np.max(np.abs(x))
    S = float(np.float32(amax / (6.0 * 448.0))) if amax > 0 else 1.0
    out = np.zeros_like(x)
    for b in range(0, len(x), 16):
        blk = x[b:b + 16]
        sb = float(round_to('e4m3', np.float32(np.max(np.abs(blk)) / 6.0 / S)))
        if sb == 0:
            continue
        scale = float(np.float32(sb * S))
        out[b:b + 16] = np.float32(round_to('e2m1', np.float32(blk / scale)) * scale)
    return out


def probes(name, rng):
    vals, _ = table(name)
    mids = (vals[1:] + vals[:-1]) / 2
    eps = np.minimum(np.diff(vals) * 1e-3, 1e-3)
    pts = np.concatenate([vals, mids, mids + eps, mids - eps, [vals[-1] * 1.01, vals[-1] * 1.07, vals[-1] * 40, 1e30, vals[1] / 4, vals[1] / 2]])
    pts = np.concatenate([pts, rng.uniform(-vals[-1] * 1.2, vals[-1] * 1.2, 200)])
    pts = pts.astype(np.float32).astype(np.float64)  # the inputs are float32 values, as in the tensors
    pts = np.concatenate([pts, -pts])
    return pts


def main():
    rng = np.random.default_rng(SEED)
    out = {'seed': SEED, 'formats': {}}
    for name in FORMATS:
        vals, codes = table(name)
        x = probes(name, rng)
        out['formats'][name] = {
            'values': vals.tolist(),
            'codes': codes.tolist(),
            'x': x.tolist(),
            'y': round_to(name, x).tolist(),
        }
    blocks = (rng.standard_normal(64) * np.array([0.01] * 16 + [1.0] * 16 + [30.0] * 16 + [0.0] * 16)).astype(np.float32)
    out['nvfp4'] = {'x': blocks.astype(np.float64).tolist(), 'y': nvfp4(blocks).tolist()}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
