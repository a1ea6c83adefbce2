#!/usr/bin/env python3
"""Independent numpy reference for Karpathy's llama2.c forward pass (run.c), float64 throughout.

Reads a legacy (v0) llama2.c checkpoint + tokenizer (layout: models/stories260K/source/SOURCE.md) and writes
golden numbers for the TypeScript tests:
  a. greedy decoding (argmax, temperature 0) of 40 new tokens after BOS + "Once upon a time";
  b. teacher-forced log-probs / mean NLL of a fixed sentence, plus logits slices for spot checks.

Usage (from the repository root):
    python3 scripts/reference/llama2c_forward.py > test/golden/stories260K.json
The model differs from run.c only in precision (float64 here, float32 in C), so logits agree to ~1e-5.
"""
import json
import struct
import sys

import numpy as np

MODEL = "models/stories260K/source/stories260K.bin"
TOKENIZER = "models/stories260K/source/tok512.bin"
PROMPT = "Once upon a time"
SENTENCE = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
N_NEW = 40
BOS, EOS = 1, 2


def load_model(path):
    data = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(data, dtype="<f4", offset=28).astype(np.float64)
    hs = dim // n_heads
    kv_dim = n_kv_heads * hs
    shapes = [("emb", (vocab, dim)), ("rms_att", (n_layers, dim)), ("wq", (n_layers, dim, dim)),
              ("wk", (n_layers, kv_dim, dim)), ("wv", (n_layers, kv_dim, dim)), ("wo", (n_layers, dim, dim)),
              ("rms_ffn", (n_layers, dim)), ("w1", (n_layers, hidden, dim)), ("w2", (n_layers, dim, hidden)),
              ("w3", (n_layers, hidden, dim)), ("rms_final", (dim,)),
              ("freq_real", (seq_len, hs // 2)), ("freq_imag", (seq_len, hs // 2))]
    w, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = f[off:off + n].reshape(shape)
        off += n
    w["cls"] = w["emb"] if shared else f[off:off + vocab * dim].reshape(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
               vocab=vocab, seq_len=seq_len, shared_classifier=shared)
    return cfg, w


def rmsnorm(x, g, eps=1e-5):
    return g * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def rope(x, hs):
    """x: [T, n, hs]. Rotate adjacent pairs (2i, 2i+1) of each head by pos * 10000^(-2i/hs) (run.c)."""
    T = x.shape[0]
    freq = 1.0 / 10000.0 ** (np.arange(0, hs, 2) / hs)          # [hs/2]
    ang = np.arange(T)[:, None] * freq[None, :]                  # [T, hs/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(cfg, w, tokens):
    """Logits [T, vocab] for every position of `tokens` (causal self-attention, no KV cache)."""
    T, nh, nkv = len(tokens), cfg["n_heads"], cfg["n_kv_heads"]
    hs = cfg["dim"] // nh
    x = w["emb"][tokens]                                          # [T, dim]
    causal = np.triu(np.full((T, T), -np.inf), k=1)
    for l in range(cfg["n_layers"]):
        h = rmsnorm(x, w["rms_att"][l])
        q = rope((h @ w["wq"][l].T).reshape(T, nh, hs), hs)
        k = rope((h @ w["wk"][l].T).reshape(T, nkv, hs), hs)
        v = (h @ w["wv"][l].T).reshape(T, nkv, hs)
        k = np.repeat(k, nh // nkv, axis=1)                       # query head h uses kv head h // (nh/nkv)
        v = np.repeat(v, nh // nkv, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hs) + causal
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, nh * hs)
        x = x + o @ w["wo"][l].T
        h = rmsnorm(x, w["rms_ffn"][l])
        a, b = h @ w["w1"][l].T, h @ w["w3"][l].T
        x = x + ((a / (1.0 + np.exp(-a))) * b) @ w["w2"][l].T   # SwiGLU: w2(silu(w1 x) * w3 x)
    return rmsnorm(x, w["rms_final"]) @ w["cls"].T


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def load_tokenizer(path):
    data = open(path, "rb").read()
    vocab, scores, off = [], [], 4                                # skip int32 max_token_length
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        vocab.append(data[off + 8:off + 8 + n])
        scores.append(score)
        off += 8 + n
    return vocab, scores


def encode(text, vocab, scores):
    """run.c encode(): BOS, dummy-prefix ' ', UTF-8 codepoints (byte fallback id = byte + 3), best-score merges."""
    ids = {}
    for i, t in enumerate(vocab):
        ids.setdefault(t, i)
    toks = [BOS]
    raw = text.encode("utf-8")
    if raw:
        toks.append(ids[b" "])
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        cp = raw[i:j]
        toks += [ids[cp]] if cp in ids else [byte + 3 for byte in cp]
        i = j
    while True:
        best = (-1e10, -1, -1)                                    # (score, id, index); first pair wins ties
        for k in range(len(toks) - 1):
            m = ids.get(vocab[toks[k]] + vocab[toks[k + 1]])
            if m is not None and scores[m] > best[0]:
                best = (scores[m], m, k)
        if best[2] < 0:
            return toks
        toks[best[2]:best[2] + 2] = [best[1]]


def decode(tokens, vocab):
    """run.c decode(): drop the leading space after BOS, '<0xXX>' pieces are raw bytes, skip BOS/EOS."""
    out, prev = b"", None
    for t in tokens:
        if t in (BOS, EOS):
            prev = t
            continue
        piece = vocab[t]
        if prev == BOS and piece.startswith(b" "):
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            piece = bytes([int(piece[3:5], 16)])
        out += piece
        prev = t
    return out.decode("utf-8", errors="replace")


def main():
    cfg, w = load_model(MODEL)
    vocab, scores = load_tokenizer(TOKENIZER)
    # a. greedy decoding (recomputes the full prefix each step; fine for ~45 tokens)
    prompt_ids = encode(PROMPT, vocab, scores)
    seq = list(prompt_ids)
    for _ in range(N_NEW):
        seq.append(int(np.argmax(forward(cfg, w, seq)[-1])))
    new_ids = seq[len(prompt_ids):]
    # b. teacher-forced NLL: position t predicts ids[t + 1]
    ids = encode(SENTENCE, vocab, scores)
    logits = forward(cfg, w, ids)
    lp = log_softmax(logits)[np.arange(len(ids) - 1), ids[1:]]
    out = {
        "generatedBy": "python3 scripts/reference/llama2c_forward.py > test/golden/stories260K.json "
                       "(numpy %s, float64 port of llama2.c run.c)" % np.__version__,
        "model": MODEL, "tokenizer": TOKENIZER, "config": cfg,
        "greedy": {
            "prompt": PROMPT, "promptIds": prompt_ids, "nNew": N_NEW,
            "newIds": new_ids, "allIds": seq, "text": decode(seq, vocab), "newText": decode(new_ids, vocab),
        },
        "teacherForced": {
            "text": SENTENCE, "ids": ids,
            "logprobs": [float(v) for v in lp],                   # logprobs[t] = log p(ids[t+1] | ids[:t+1])
            "meanNll": float(-lp.mean()), "nPredicted": int(len(lp)),
            "logitsPos0First8": [float(v) for v in logits[0, :8]],
            "logitsLastPos": len(ids) - 1,
            "logitsLastFirst8": [float(v) for v in logits[-1, :8]],
        },
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
