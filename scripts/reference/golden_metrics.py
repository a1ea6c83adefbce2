"""Independent reference for the GLUE metrics and the regression prediction of packages/data (issue 20).

numpy only (scipy / scikit-learn are not assumed): Pearson from np.corrcoef, Spearman as the Pearson of
average ranks (ties share the mean of the ranks they span), binary F1 and Matthews from confusion counts
(sklearn's definitions), and the regression prediction as the softmax-weighted mean of the bucket values.
Writes packages/data/test/golden/metrics.json.

    python3 scripts/reference/golden_metrics.py
"""
import json
import os

import numpy as np


def average_ranks(x):
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(a, b):
    return float(np.corrcoef(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0, 1])


def mcc_binary(p, g):
    p, g = np.asarray(p), np.asarray(g)
    tp = float(np.sum((p == 1) & (g == 1)))
    tn = float(np.sum((p == 0) & (g == 0)))
    fp = float(np.sum((p == 1) & (g == 0)))
    fn = float(np.sum((p == 0) & (g == 1)))
    d = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if d == 0 else (tp * tn - fp * fn) / d


def f1_binary(p, g):
    p, g = np.asarray(p), np.asarray(g)
    tp = float(np.sum((p == 1) & (g == 1)))
    fp = float(np.sum((p == 1) & (g == 0)))
    fn = float(np.sum((p == 0) & (g == 1)))
    return 0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


rng = np.random.default_rng(20)
n = 200
gold_scores = np.round(rng.uniform(0, 5, n) * 5) / 5  # STS-B-like: many ties
pred_scores = np.clip(gold_scores + rng.normal(0, 1.2, n), 0, 5)
pred_scores[::17] = np.round(pred_scores[::17])  # ties in the predictions too
gold_cls = rng.integers(0, 2, n)
pred_cls = np.where(rng.uniform(size=n) < 0.7, gold_cls, 1 - gold_cls)

# Regression prediction from label scores: softmax over per-bucket scores, mean of bucket values.
buckets = np.arange(6, dtype=np.float64)
scores = rng.normal(0, 3, (5, 6))
expect = []
for s in scores:
    w = np.exp(s - s.max())
    expect.append(float((w * buckets).sum() / w.sum()))

out = {
    "regression": {
        "gold": gold_scores.tolist(),
        "pred": pred_scores.tolist(),
        "pearson": pearson(pred_scores, gold_scores),
        "spearman": pearson(average_ranks(pred_scores), average_ranks(gold_scores)),
    },
    "classification": {
        "gold": gold_cls.tolist(),
        "pred": pred_cls.tolist(),
        "f1": f1_binary(pred_cls, gold_cls),
        "matthews": mcc_binary(pred_cls, gold_cls),
        "accuracy": float(np.mean(pred_cls == gold_cls)),
    },
    "expectedValue": {"scores": scores.tolist(), "values": expect},
}
try:  # a second opinion where scipy is installed
    from scipy import stats

    assert abs(stats.pearsonr(pred_scores, gold_scores)[0] - out["regression"]["pearson"]) < 1e-12
    assert abs(stats.spearmanr(pred_scores, gold_scores)[0] - out["regression"]["spearman"]) < 1e-12
except ImportError:
    pass
path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "data", "test", "golden", "metrics.json")
with open(path, "w") as f:
    json.dump(out, f)
    f.write("\n")
print(path)
