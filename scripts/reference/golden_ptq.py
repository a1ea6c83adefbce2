#!/usr/bin/env python3
"""Independent numpy reference for post-training quantization (packages/quant/src/ptq.ts, issue 22 part 3).

No project code involved. Transcribed from the GPTQ reference implementation (Frantar et al. 2022,
github.com/IST-DASLab/gptq: quant.py Quantizer with perchannel=True, sym=False; gptq.py GPTQ.fasterquant with
actorder=False, static_groups=False), in float64:
  * the grid (RTN, and GPTQ's per column): per output row, xmin = min(min(w), 0), xmax = max(max(w), 0) (a row
    of zeros gets -1 / +1), scale = (xmax - xmin) / (2^bits - 1), zero = round(-xmin / scale),
    q = clamp(round(w / scale) + zero, 0, 2^bits - 1), dequantized scale * (q - zero); np.round is half to even,
    as torch.round. With a group size the parameters are per row and per group of `group` input columns.
  * GPTQ: H = 2/n X^T X over the calibration rows X [n, in]. Per-row parameters come from W as given (before the
    dead columns are zeroed, as find_params runs first in the reference). Dead columns (H_ii = 0) get H_ii = 1
    and W[:, i] = 0; H += 1% of mean(diag H) on the diagonal; Hinv = the upper Cholesky factor of H^-1. Columns
    are quantized in blocks of `block`; inside a block each column's error (w - q) / Hinv_ii is propagated to the
    block's later columns at once, and to the columns after the block by one product when the block ends. With
    groups, a group's parameters are computed when its first column comes up, from W[:, start:start + group] as
    the reference reads it: the outer W, which holds every earlier block's updates but not the current block's.
The H-weighted error of a quantized Q is sum over rows of (w - q) H (w - q)^T with the undamped H (GPTQ's
objective, ||W X^T - Q X^T||^2 up to the factor 2/n).

Cases: small matrices of odd sizes, bits 3 and 4, per row and with groups, several blocks, groups that straddle
blocks, dead input columns. X is correlated (a random mixing of its columns) as real activations are, and stored
rounded to 3 decimals: H is computed from the stored X on both sides.

Usage (from the repository root):
    python3 scripts/reference/golden_ptq.py > test/golden/ptq.json
"""
import json

import numpy as np

SEED = 20261222
PERCDAMP = 0.01

# (name, out, in, calibration rows, bits, group or None, block, dead input columns)
CASES = [
    ('7x13 4-bit per row', 7, 13, 40, 4, None, 128, []),
    ('7x13 3-bit group 5', 7, 13, 40, 3, 5, 128, []),
    ('9x45 3-bit per row, blocks of 16', 9, 45, 90, 3, None, 16, []),
    ('9x45 4-bit group 12, blocks of 16 (groups straddle blocks)', 9, 45, 90, 4, 12, 16, []),
    ('8x40 3-bit group 8, blocks of 16, dead columns 3, 11 and 30', 8, 40, 80, 3, 8, 16, [3, 11, 30]),
    ('5x130 4-bit group 128 (the default layout: two blocks, a last group of 2)', 5, 130, 140, 4, 128, 128, []),
]


def grid_params(x, maxq):
    """Per-row scale and zero of x [rows, cols] (quant.py Quantizer.find_params, weight=True)."""
    xmin = np.minimum(x.min(axis=1), 0)
    xmax = np.maximum(x.max(axis=1), 0)
    both = (xmin == 0) & (xmax == 0)
    xmin[both] = -1
    xmax[both] = 1
    scale = (xmax - xmin) / maxq
    zero = np.round(-xmin / scale)
    return scale, zero


def quantize(x, scale, zero, maxq):
    q = np.clip(np.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def rtn(W, bits, group):
    maxq = 2**bits - 1
    rows, cols = W.shape
    g = cols if group is None else group
    Q = np.empty_like(W)
    for c0 in range(0, cols, g):
        blk = W[:, c0:c0 + g]
        scale, zero = grid_params(blk, maxq)
        Q[:, c0:c0 + g] = quantize(blk, scale[:, None], zero[:, None], maxq)
    return Q


def gptq(W, H, bits, group, block):
    maxq = 2**bits - 1
    W = W.copy()
    H = H.copy()
    rows, cols = W.shape
    scale, zero = grid_params(W, maxq)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(cols)] += PERCDAMP * np.mean(np.diag(H))
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper U with U^T U = H^-1
    Q = np.zeros_like(W)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if group is not None and (i1 + i) % group == 0:
                scale, zero = grid_params(W[:, i1 + i:i1 + i + group], maxq)
            w = W1[:, i]
            d = Hinv1[i, i]
            q = quantize(w, scale, zero, maxq)
            Q[:, i1 + i] = q
            err = (w - q) / d
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q


def h_error(W, Q, H):
    D = W - Q
    return float(np.einsum('ri,ij,rj->', D, H, D))


def main():
    rng = np.random.default_rng(SEED)
    cases = []
    for name, rows, cols, n, bits, group, block, dead in CASES:
        W = rng.standard_normal((rows, cols)) * 0.05
        W[0, :] *= 4  # one row with a wider range
        Z = rng.standard_normal((n, cols))
        mix = np.eye(cols) + 0.4 * rng.standard_normal((cols, cols)) / np.sqrt(cols)
        X = np.round((Z @ mix) * rng.uniform(0.3, 2.0, cols), 3)
        X[:, dead] = 0
        H = 2.0 / n * (X.T @ X)
        Qr = rtn(W, bits, group)
        Qg = gptq(W, H, bits, group, block)
        cases.append({
            'name': name,
            'rows': rows,
            'cols': cols,
            'bits': bits,
            'group': group,
            'block': block,
            'w': W.ravel().tolist(),
            'x': X.ravel().tolist(),
            'n': n,
            'rtn': Qr.ravel().tolist(),
            'gptq': Qg.ravel().tolist(),
            'hErrRtn': h_error(W, Qr, H),
            'hErrGptq': h_error(W, Qg, H),
        })
    print(json.dumps({'seed': SEED, 'percdamp': PERCDAMP, 'cases': cases}))


if __name__ == '__main__':
    main()
