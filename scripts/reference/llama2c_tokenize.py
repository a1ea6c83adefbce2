#!/usr/bin/env python3
"""Independent reference for the llama2.c tokenizer (standard library only): a line-by-line port of
`encode()` in Karpathy's llama2.c run.c (github.com/karpathy/llama2.c), kept deliberately naive
(O(n^2) merge loop, exactly as in C), used to make packages/data/test/golden/llama2c-tokens.json.

Usage (from the repository root):
    python3 scripts/reference/llama2c_tokenize.py [TOKENIZER_BIN] > packages/data/test/golden/llama2c-tokens.json
default: models/stories260K/tokenizer.bin (= tinyllamas tok512.bin)
"""
import json
import struct
import sys

TEXTS = [
    "",
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.",
    "Hello world",
    " leading and trailing spaces  ",
    "aaaaaaaa",
    "the the the the",
    "Tom said: \"Let's go!\"\nThey went home.",
    "1234567890",
    "naïve café",
    "日本語 🙂",
]


def read_tokenizer(path):
    with open(path, "rb") as f:
        data = f.read()
    (max_token_length,) = struct.unpack_from("<i", data, 0)
    off = 4
    vocab, scores = [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        vocab.append(data[off:off + n])  # bytes, like the C strings
        scores.append(score)
        off += n
    return max_token_length, vocab, scores


def encode(text, vocab, scores, bos, eos):
    lookup = {}
    for i, tok in enumerate(vocab):
        lookup.setdefault(tok, i)  # run.c bsearches a sorted copy; this vocab has no duplicates
    tokens = []
    if bos:
        tokens.append(1)
    raw = text.encode("utf-8")
    if len(raw) > 0:  # add_dummy_prefix, only for non-empty text
        tokens.append(lookup[b" "])
    # UTF-8 codepoints: a byte plus following continuation bytes (at most 4 bytes); byte fallback = byte + 3
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        piece = raw[i:j]
        if piece in lookup:
            tokens.append(lookup[piece])
        else:
            tokens.extend(b + 3 for b in piece)
        i = j
    # merge the best consecutive pair (highest score of the merged token; first such pair on ties)
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for k in range(len(tokens) - 1):
            merged = lookup.get(vocab[tokens[k]] + vocab[tokens[k + 1]], -1)
            if merged != -1 and scores[merged] > best_score:
                best_score, best_id, best_idx = scores[merged], merged, k
        if best_idx == -1:
            break
        tokens[best_idx] = best_id
        del tokens[best_idx + 1]
    if eos:
        tokens.append(2)
    return tokens


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "models/stories260K/tokenizer.bin"
    _, vocab, scores = read_tokenizer(path)
    cases = [{"text": t, "bos": True, "ids": encode(t, vocab, scores, True, False)} for t in TEXTS]
    cases += [{"text": t, "bos": False, "ids": encode(t, vocab, scores, False, False)} for t in TEXTS[1:3]]
    out = {
        "source": "scripts/reference/llama2c_tokenize.py (port of llama2.c run.c encode())",
        "tokenizer": path,
        "vocab_size": len(vocab),
        "cases": cases,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
