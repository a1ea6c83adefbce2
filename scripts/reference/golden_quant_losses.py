#!/usr/bin/env python3
"""Independent numpy reference for the BitDistill quantizers and losses (PAPER.md sections 2 and 5).

Writes test/golden/quant_losses.json: every case stores its inputs AND outputs.

Usage (from the repository root):
    python3 scripts/reference/golden_quant_losses.py > test/golden/quant_losses.json

Conventions (also written into the JSON under "conventions"):
  * Tensors are stored flat in row-major (C) order next to their "shape". Inputs are float32 values, written as
    the exact decimal repr of the float64 that equals the float32 (Math.fround(v) === v in JS).
  * Quantizers emulate a float32 implementation: the absmean mean is accumulated in float64 and then cast to
    float32; the floor max(., 1e-5) compares float32 values (float32(1e-5)); W/d, 127/amax, x*s and xq = q/s are
    float32 operations (IEEE correctly rounded, like Math.fround(a op b)); rounding is half-to-even (np.rint).
    Outputs are float32 values. -0.0 is written as 0.0.
  * Losses are computed in float64 from the float32 inputs; outputs are float64.
"""
import json
import sys

import numpy as np

SEED = 20251013
F32 = np.float32
EPS_W, EPS_X = F32(1e-5), F32(1e-5)


def flat(a):
    """Float list without -0.0 (a + 0.0 maps -0.0 to 0.0)."""
    return [float(v) + 0.0 for v in np.asarray(a).ravel()]


def tensor(a):
    return {"shape": list(np.shape(a)), "data": flat(a)}


# ---------------------------------------------------------------- quantizers (float32 arithmetic)

def absmean_scale(values):
    d = F32(np.mean(np.abs(values.astype(np.float64))))   # float64 accumulation, cast to float32
    return max(d, EPS_W)


def ternary(w, mode):
    """Returns (scales float32 [n_scales], codes int in {-1,0,1} like w, wq float32 like w)."""
    w = w.astype(F32)
    if mode == "absmean":
        groups = [w.ravel()]
    elif mode == "block256":
        f = w.ravel()
        groups = [f[i:i + 256] for i in range(0, f.size, 256)]
    elif mode == "perRow":                                  # w is [out, in]: one scale per output row
        groups = list(w.reshape(w.shape[0], -1))
    scales = np.array([absmean_scale(g) for g in groups], dtype=F32)
    d = np.repeat(scales, [g.size for g in groups])        # per-element scale, flat row-major order
    codes = np.clip(np.rint(w.ravel() / d), -1, 1)          # float32 division, round half to even
    wq = (codes * d).astype(F32)                            # exact: codes are -1, 0, 1
    return scales, codes.astype(np.int64).reshape(w.shape), wq.reshape(w.shape)


def act_quant(x):
    """Per token (last axis) absmax int8: returns (scales s float32 [tokens], codes int, xq float32)."""
    x = x.astype(F32)
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), EPS_X)
    s = (F32(127) / amax).astype(F32)
    codes = np.clip(np.rint((x * s).astype(F32)), -128, 127).astype(F32)
    xq = (codes / s).astype(F32)
    return s.ravel(), codes.astype(np.int64), xq


# ---------------------------------------------------------------- losses (float64)

def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def answer_ce(logits, labels, mask):
    lp = log_softmax(logits.astype(np.float64))
    nll = -np.take_along_axis(lp, labels[..., None], axis=-1)[..., 0]
    return nll, float((nll * mask).sum() / mask.sum())


def logit_kd(teacher, student, mask, tau):
    logp = log_softmax(teacher.astype(np.float64) / tau)
    logq = log_softmax(student.astype(np.float64) / tau)
    kl = (np.exp(logp) * (logp - logq)).sum(axis=-1)      # [B, T]
    return kl, float((kl * mask).sum() / mask.sum() * tau * tau)


def relations(x, ar, mode):
    b, h, t, d = x.shape
    a = x.astype(np.float64).transpose(0, 2, 1, 3).reshape(b, t, ar, h * d // ar).transpose(0, 2, 1, 3)
    if mode == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        return a @ a.transpose(0, 1, 3, 2)
    return a @ a.transpose(0, 1, 3, 2) / np.sqrt(a.shape[-1])


def attention_relation_kd(teacher, student, ar, mode):
    per, clamped = {}, False
    for c in "qkv":
        p = np.exp(log_softmax(relations(teacher[c], ar, mode)))
        q = np.exp(log_softmax(relations(student[c], ar, mode)))
        clamped = clamped or bool((p < 1e-8).any() or (q < 1e-8).any())
        p, q = np.maximum(p, 1e-8), np.maximum(q, 1e-8)
        per[c] = float((p * (np.log(p) - np.log(q))).sum(axis=-1).mean())   # mean over B*Ar*T rows
    return per, sum(per.values()) / ar, clamped


# ---------------------------------------------------------------- cases

def main():
    rng = np.random.default_rng(SEED)
    randn = lambda *shape, scale=1.0: (rng.standard_normal(shape) * scale).astype(F32)

    # weight quant: tie patterns in units of a power-of-two d; each row of 4 (and 128) has mean |u| = 1 exactly
    u = np.array([[0.5, 1.5, -0.5, -1.5], [2.5, -0.5, 0.0, 1.0]])
    zero_row = randn(3, 5, scale=0.05)
    zero_row[1] = 0
    wcases = [
        ("ties_2x4", "W = 0.25*u, u=[[.5,1.5,-.5,-1.5],[2.5,-.5,0,1]]: d = 0.25 exactly in every mode, "
                     "W/d hits the ties +-0.5, +-1.5, 2.5", (0.25 * u).astype(F32)),
        ("ties_blocks_4x128", "rows 0-1 (block 0) = 0.25*tile(u), rows 2-3 (block 1) = 0.5*tile(u): exact ties in "
                              "block256 and perRow (d=0.25/0.5); absmean d=0.375",
         np.concatenate([0.25 * np.tile(u.ravel(), 32), 0.5 * np.tile(u.ravel(), 32)]).reshape(4, 128).astype(F32)),
        ("zeros_3x4", "all-zero tensor: d floors to float32(1e-5), Wq = 0", np.zeros((3, 4), F32)),
        ("zero_row_3x5", "random 3x5 (std 0.05) with row 1 all zero: perRow floor on that row", zero_row),
        ("random_7x300", "random normal std 0.02, 2100 values: block256 has 9 blocks, the last one 52 values",
         randn(7, 300, scale=0.02)),
    ]
    weight_cases = []
    for name, desc, w in wcases:
        modes = {}
        for mode in ("absmean", "block256", "perRow"):
            s, q, wq = ternary(w, mode)
            modes[mode] = {"scales": flat(s), "codes": q.ravel().tolist(), "wq": flat(wq)}
        weight_cases.append({"name": name, "description": desc, "w": tensor(w), "modes": modes})

    # activation quant
    ties = np.zeros((2, 8), F32)
    ties[0] = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5]      # amax 127 -> s = 1 exactly
    ties[1] = [63.5, 0.25, 0.75, -1.25, 1.25, -0.25, 62.25, 0.0]    # amax 63.5 -> s = 2 exactly
    with_zero = randn(3, 16)
    with_zero[1] = 0
    xcases = [("random_2x3x16", "random normal [2,3,16]", randn(2, 3, 16)),
              ("zero_token_3x16", "token 1 is all zeros: s = 127/float32(1e-5), xq = 0", with_zero),
              ("ties_2x8", "x*s is exactly k+0.5 for several entries (s = 1 and s = 2 exactly)", ties)]
    act_cases = []
    for name, desc, x in xcases:
        s, q, xq = act_quant(x)
        act_cases.append({"name": name, "description": desc, "x": tensor(x), "scales": flat(s),
                          "codes": q.ravel().tolist(), "xq": flat(xq)})

    # answer cross-entropy
    ce_cases = []
    for name, scale in (("random_2x5x11", 2.0), ("large_logits_2x5x11", 60.0)):
        logits = randn(2, 5, 11, scale=scale)
        labels = rng.integers(0, 11, size=(2, 5))
        mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
        nll, loss = answer_ce(logits, labels, mask)
        ce_cases.append({"name": name, "logits": tensor(logits), "labels": labels.ravel().tolist(),
                         "answerMask": mask.ravel().tolist(), "perPositionNll": flat(nll), "loss": loss})

    # logit KD
    teacher, student = randn(2, 4, 13, scale=3.0), randn(2, 4, 13, scale=3.0)
    mask = np.array([[1, 1, 1, 0], [1, 0, 1, 1]])
    kd_cases = []
    for tau in (1.0, 5.0):
        kl, loss = logit_kd(teacher, student, mask, tau)
        kd_cases.append({"name": "tau%g_2x4x13" % tau, "temperature": tau, "teacherLogits": tensor(teacher),
                         "studentLogits": tensor(student), "mask": mask.ravel().tolist(),
                         "perPositionKl": flat(kl), "loss": loss})

    # attention relation KD: teacher H=4,d=8, student H=2,d=16, B=2, T=5
    base = {"teacher": {c: randn(2, 4, 5, 8) for c in "qkv"}, "student": {c: randn(2, 2, 5, 16) for c in "qkv"}}
    # saturated student (std 4): its off-diagonal relation probabilities fall below 1e-8, so the clamp matters
    big = {"teacher": base["teacher"], "student": {c: randn(2, 2, 5, 16, scale=4.0) for c in "qkv"}}
    ad_cases = []
    for inputs, tag, combos in ((base, "", [(2, "cosine"), (4, "cosine"), (2, "scaled"), (4, "scaled")]),
                                (big, "_studentStd4", [(2, "scaled"), (4, "scaled")])):
        for ar, mode in combos:
            per, loss, clamped = attention_relation_kd(inputs["teacher"], inputs["student"], ar, mode)
            ad_cases.append({"name": "%s_ar%d%s" % (mode, ar, tag), "relationHeads": ar, "relation": mode,
                             "teacher": {c: tensor(v) for c, v in inputs["teacher"].items()},
                             "student": {c: tensor(v) for c, v in inputs["student"].items()},
                             "perComponent": per, "loss": loss, "clampActive": clamped})

    out = {
        "generatedBy": "python3 scripts/reference/golden_quant_losses.py > test/golden/quant_losses.json "
                       "(numpy %s, seed %d)" % (np.__version__, SEED),
        "conventions": [" ".join(item.split()) for item in __doc__.split("\"conventions\"):")[1].split("* ")[1:]],
        "weightQuant": {
            "spec": "ternary absmean: d = max(mean|W|, 1e-5); codes = clamp(round_half_even(W/d), -1, 1); Wq = codes*d. "
                    "absmean: one d for the whole tensor (scales has 1 entry). block256: one d per 256 consecutive "
                    "values of the flattened tensor, last block may be shorter (scales has ceil(n/256)). perRow: W is "
                    "[out, in], one d per output row (scales has out entries). codes/wq are flat like w.",
            "cases": weight_cases},
        "activationQuant": {
            "spec": "per token (last axis): s = 127 / max(max|x|, 1e-5); codes = clamp(round_half_even(x*s), -128, 127); "
                    "xq = codes / s. scales has one entry per token (prod of leading dims), codes/xq flat like x.",
            "cases": act_cases},
        "answerCrossEntropy": {
            "spec": "logits [B,T,V], labels [B,T] (already the next-token target for each logits position), answerMask "
                    "[B,T] 0/1: loss = sum_{b,t} mask*(-log_softmax(logits)[b,t,labels[b,t]]) / sum mask. "
                    "perPositionNll [B,T] is for every position, masked or not.",
            "cases": ce_cases},
        "logitKd": {
            "spec": "p = softmax(teacher/tau), log q = log_softmax(student/tau); KL[b,t] = sum_v p*(log p - log q); "
                    "loss = sum(mask*KL) / sum(mask) * tau^2. perPositionKl [B,T] for every position (no tau^2).",
            "cases": kd_cases},
        "attentionRelationKd": {
            "spec": "q,k,v each [B,H,T,d] -> transpose [B,T,H*d] (heads concatenated in order) -> [B,T,Ar,D], D=H*d/Ar "
                    "-> [B,Ar,T,D]. cosine: a/max(||a||,1e-12), R = A A^T; scaled: R = A A^T / sqrt(D). P = softmax(R_t), "
                    "Q = softmax(R_s) over the last axis, both clamped at min 1e-8; KL_row = sum_j P*(log P - log Q); "
                    "perComponent[c] = mean over the B*Ar*T rows; loss = (perComponent.q + .k + .v) / Ar. No masks. "
                    "clampActive: whether any probability was below 1e-8 (so the clamp changed the result).",
            "cases": ad_cases},
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
