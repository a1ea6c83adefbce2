"""Independent numpy forward pass of a Hugging Face Llama / Qwen2 / Qwen3 decoder folder (float64).

Reads config.json + model.safetensors with the standard library and numpy only (no torch, no project code),
runs the forward pass as transformers' modeling_{llama,qwen2,qwen3}.py define it (RMSNorm, rotate_half RoPE,
GQA, Qwen2 q/k/v biases, Qwen3 per-head q_norm/k_norm, SwiGLU, tied or separate lm_head) and prints the
logits of fixed token ids as JSON.

    python3 scripts/reference/hf_decoder_forward.py test/fixtures/tiny-qwen3 > test/golden/tiny-qwen3.json
"""
import json
import struct
import sys

import numpy as np

IDS = [[1, 17, 300, 42, 511, 7, 99, 256], [1, 2, 3, 4, 5, 6, 7, 8]]


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + b : base + e], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


def rms_norm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(folder, ids):
    cfg = json.load(open(f"{folder}/config.json"))
    w = read_safetensors(f"{folder}/model.safetensors")
    mt = cfg["model_type"]
    C, H, Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim", C // H)
    eps = cfg["rms_norm_eps"]
    ids = np.array(ids)
    B, T = ids.shape
    x = w["model.embed_tokens.weight"][ids]  # (B, T, C)
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2) / d)
    ang = np.outer(np.arange(T), inv)
    cos = np.cos(np.concatenate([ang, ang], -1))  # (T, d)
    sin = np.sin(np.concatenate([ang, ang], -1))
    mask = np.triu(np.full((T, T), -np.inf), 1)

    def lin(name, v):
        y = v @ w[f"{name}.weight"].T
        return y + w[f"{name}.bias"] if f"{name}.bias" in w else y

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        h = rms_norm(x, w[f"{p}.input_layernorm.weight"], eps)
        q = lin(f"{p}.self_attn.q_proj", h).reshape(B, T, H, d).transpose(0, 2, 1, 3)
        k = lin(f"{p}.self_attn.k_proj", h).reshape(B, T, Hkv, d).transpose(0, 2, 1, 3)
        v = lin(f"{p}.self_attn.v_proj", h).reshape(B, T, Hkv, d).transpose(0, 2, 1, 3)
        if mt == "qwen3":
            q = rms_norm(q, w[f"{p}.self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[f"{p}.self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // Hkv, axis=1)
        v = np.repeat(v, H // Hkv, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, H * d)
        x = x + lin(f"{p}.self_attn.o_proj", y)
        h2 = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        g = lin(f"{p}.mlp.gate_proj", h2)
        x = x + lin(f"{p}.mlp.down_proj", g / (1 + np.exp(-g)) * lin(f"{p}.mlp.up_proj", h2))
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


if __name__ == "__main__":
    folder = sys.argv[1]
    logits = forward(folder, IDS)
    json.dump(
        {
            "generatedBy": f"python3 scripts/reference/hf_decoder_forward.py {folder} (numpy {np.__version__}, float64)",
            "ids": IDS,
            "shape": list(logits.shape),
            "logits": [float(v) for v in logits.reshape(-1)],
        },
        sys.stdout,
    )
