"""Independent numpy forward pass of a BitNet export folder as Hugging Face transformers computes it (float64).

Reads what `bitdistill export --ternary --hf-compat` writes (config.json, model.safetensors with U8-packed ternary
projections and weight_scale) with the standard library and numpy only (no torch, no transformers, no project
code), and runs the model the way transformers' BitNet code defines it:
  - integrations/bitnet.py: unpack_weights (packed row r, bits 2i..2i+1 -> row i * rows + r, value - 1);
    BitLinear (int8 activations per token, scale 127 / max|x| clamped at 1e-5, round half to even, clamp to
    [-128, 127]; output / (activation scale * weight_scale)) unless quantization_config.linear_class is
    'autobitlinear' (fake-quantized activations, output * weight_scale); releases whose integration has only
    BitLinear ignore linear_class (--ignore-linear-class);
  - models/bitnet (modular_bitnet.py): Llama with attn_sub_norm before o_proj and ffn_sub_norm before down_proj,
    both BitNetRMSNorm with eps = rms_norm_eps (--subln-eps E computes them with E instead, as a student trained
    with that epsilon); rotate_half RoPE, GQA, eager softmax attention, act(gate) * up, tied or separate lm_head;
    modules_to_not_convert stay dense.
Prints the logits of fixed token ids as JSON.

    python3 scripts/reference/hf_bitnet_forward.py test/fixtures/tiny-bitnet-hf > test/golden/tiny-bitnet-hf.json
    python3 scripts/reference/hf_bitnet_forward.py test/fixtures/tiny-bitnet-hf --subln-eps 1e-8 > test/golden/tiny-bitnet-hf-subln-1e-8.json
"""
import argparse
import json
import struct
import sys

import numpy as np

IDS = [[1, 17, 300, 42, 511, 7, 99, 256, 3, 410]]


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
        b, e = info["data_offsets"]
        buf = raw[base + b : base + e]
        if info["dtype"] == "U8":
            out[name] = np.frombuffer(buf, dtype=np.uint8).reshape(info["shape"])
        elif info["dtype"] == "F32":
            out[name] = np.frombuffer(buf, dtype="<f4").reshape(info["shape"]).astype(np.float64)
        elif info["dtype"] == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            out[name] = bits.view("<f4").reshape(info["shape"]).astype(np.float64)
        else:
            raise ValueError(f"{name}: dtype {info['dtype']} not read by this reference")
    return out


def unpack_weights(packed):
    """[rows, in] uint8 -> [4 * rows, in] in {-1, 0, 1}: the four 2-bit fields of packed row r are rows r, rows + r, ..."""
    rows = packed.shape[0]
    out = np.zeros((4 * rows, packed.shape[1]), dtype=np.float64)
    for i in range(4):
        out[i * rows : (i + 1) * rows] = ((packed >> (2 * i)) & 3).astype(np.float64) - 1
    return out


def act_scale(x):
    return 127.0 / np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-5)


def bit_linear(x, w, weight_scale):
    """transformers BitLinear: integer activations, y = (q @ w^T) / (activation scale * weight_scale)."""
    s = act_scale(x)
    q = np.clip(np.round(x * s), -128, 127)  # np.round rounds half to even, as torch.round
    return (q @ w.T) / (s * weight_scale)


def auto_bit_linear(x, w, weight_scale):
    """transformers AutoBitLinear (offline): fake-quantized activations, y = (x_q @ w^T) * weight_scale."""
    s = act_scale(x)
    return (np.clip(np.round(x * s), -128, 127) / s) @ w.T * weight_scale


def rms_norm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


# silu(g) = g * sigmoid(g), with sigmoid written through tanh so that huge |g| (a misread weight_scale) cannot overflow.
ACT = {"silu": lambda g: g * 0.5 * (1 + np.tanh(g / 2)), "relu2": lambda g: np.maximum(g, 0) ** 2}


def forward(folder, ids, subln_eps=None, ignore_linear_class=False):
    cfg = json.load(open(f"{folder}/config.json"))
    w = read_safetensors(f"{folder}/model.safetensors")
    qc = cfg.get("quantization_config") or {}
    assert qc.get("quant_method") == "bitnet", "not a BitNet-quantized folder"
    linear_class = "bitlinear" if ignore_linear_class else qc.get("linear_class", "bitlinear")
    assert qc.get("quantization_mode", "offline") == "offline"
    skip = set(["lm_head"] + (qc.get("modules_to_not_convert") or []))
    C, H, Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim", C // H)
    eps = cfg["rms_norm_eps"]
    sub_eps = eps if subln_eps is None else subln_eps
    act = ACT[cfg["hidden_act"]]
    ids = np.array(ids)
    B, T = ids.shape
    x = w["model.embed_tokens.weight"][ids]  # (B, T, C)
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2) / d)
    ang = np.outer(np.arange(T), inv)
    cos = np.cos(np.concatenate([ang, ang], -1))  # (T, d)
    sin = np.sin(np.concatenate([ang, ang], -1))
    mask = np.triu(np.full((T, T), -np.inf), 1)

    def lin(name, v):
        if any(key in name for key in skip):  # transformers matches modules_to_not_convert as substrings
            return v @ w[f"{name}.weight"].T
        wq = unpack_weights(w[f"{name}.weight"])
        scale = w[f"{name}.weight_scale"]
        assert scale.shape == (1,), f"{name}: one weight_scale per tensor"
        return (auto_bit_linear if linear_class == "autobitlinear" else bit_linear)(v, wq, scale[0])

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        h = rms_norm(x, w[f"{p}.input_layernorm.weight"], eps)
        q = lin(f"{p}.self_attn.q_proj", h).reshape(B, T, H, d).transpose(0, 2, 1, 3)
        k = lin(f"{p}.self_attn.k_proj", h).reshape(B, T, Hkv, d).transpose(0, 2, 1, 3)
        v = lin(f"{p}.self_attn.v_proj", h).reshape(B, T, Hkv, d).transpose(0, 2, 1, 3)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // Hkv, axis=1)
        v = np.repeat(v, H // Hkv, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) * d**-0.5 + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, H * d)
        if cfg["model_type"] == "bitnet":
            y = rms_norm(y, w[f"{p}.self_attn.attn_sub_norm.weight"], sub_eps)  # diff with Llama
        x = x + lin(f"{p}.self_attn.o_proj", y)
        h2 = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        m = act(lin(f"{p}.mlp.gate_proj", h2)) * lin(f"{p}.mlp.up_proj", h2)
        if cfg["model_type"] == "bitnet":
            m = rms_norm(m, w[f"{p}.mlp.ffn_sub_norm.weight"], sub_eps)  # diff with Llama
        x = x + lin(f"{p}.mlp.down_proj", m)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--subln-eps", type=float, default=None, help="epsilon of attn_sub_norm / ffn_sub_norm (default: rms_norm_eps, as transformers)")
    ap.add_argument("--ignore-linear-class", action="store_true", help="as a transformers release whose integrations/bitnet.py has only BitLinear")
    args = ap.parse_args()
    logits = forward(args.folder, IDS, args.subln_eps, args.ignore_linear_class)
    flags = (f" --subln-eps {args.subln_eps:g}" if args.subln_eps is not None else "") + (" --ignore-linear-class" if args.ignore_linear_class else "")
    json.dump(
        {
            "generatedBy": f"python3 scripts/reference/hf_bitnet_forward.py {args.folder}{flags} (numpy {np.__version__}, float64)",
            "ids": IDS,
            "shape": list(logits.shape),
            "logits": [float(v) for v in logits.reshape(-1)],
        },
        sys.stdout,
    )
