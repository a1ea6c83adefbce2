#!/usr/bin/env python3
"""Build the standard bert-base-uncased tokenizer.json from its WordPiece vocab.txt (standard library only).

Usage (from the repository root):
    python3 scripts/make_bert_tokenizer_json.py [VOCAB_TXT] [OUT_DIR]
defaults: /work/shared/models/bert-base-uncased-vocab/vocab.txt -> models/bert-base-uncased

Writes OUT_DIR/vocab.txt (copied byte for byte), OUT_DIR/tokenizer.json and OUT_DIR/SOURCE.md.
The JSON has the layout the Hugging Face `tokenizers` library saves for bert-base-uncased (BertTokenizerFast):
BertNormalizer (clean_text, handle_chinese_chars, lowercase; strip_accents null = follow lowercase, so accents
are stripped), BertPreTokenizer, WordPiece ([UNK], "##", 100 chars per word), TemplateProcessing
[CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1, WordPiece decoder, and the five special tokens as added_tokens.
A token's id is its 0-based line number in vocab.txt.
"""
import hashlib
import json
import os
import shutil
import sys

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_vocab(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file ends with a newline
    vocab = {}
    for i, tok in enumerate(lines):
        if tok in vocab:
            sys.exit(f"{path}: line {i + 1}: duplicate token {tok!r} (first on line {vocab[tok] + 1})")
        vocab[tok] = i
    for s in SPECIALS:
        if s not in vocab:
            sys.exit(f"{path}: special token {s} missing")
    return data, vocab


def added_token(tok, id_):
    return {"id": id_, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(vocab):
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    special = lambda tok, type_id: {"SpecialToken": {"id": tok, "type_id": type_id}}
    seq = lambda name, type_id: {"Sequence": {"id": name, "type_id": type_id}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added_token(s, vocab[s]) for s in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


SOURCE_MD = """# bert-base-uncased tokenizer (WordPiece)

| file | bytes | sha256 |
|---|---|---|
| vocab.txt | {vocab_bytes:,} | {vocab_sha} |
| tokenizer.json | {json_bytes:,} | {json_sha} |

`vocab.txt` is the official bert-base-uncased vocabulary ({n:,} tokens), copied unchanged from the project's
shared folder `/work/shared/models/bert-base-uncased-vocab/` (see the SOURCE.md there: rebuilt byte-identical to
Google's/HF's file, sha256 07eced37…38a3). Licence: Apache-2.0 (google-research/bert).

`tokenizer.json` was generated from it by `python3 scripts/make_bert_tokenizer_json.py`, in the layout the HF
`tokenizers` library saves for bert-base-uncased: BertNormalizer (clean_text, handle_chinese_chars, lowercase,
strip_accents null = follow lowercase), BertPreTokenizer, WordPiece (unk [UNK], prefix ##, 100 chars per word),
TemplateProcessing `[CLS] $A [SEP]`, WordPiece decoder (cleanup on), added tokens [PAD]=0 [UNK]=100 [CLS]=101
[SEP]=102 [MASK]=103. A token's id is its 0-based line number in vocab.txt.
"""


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/models/bert-base-uncased-vocab/vocab.txt"
    out = sys.argv[2] if len(sys.argv) > 2 else "models/bert-base-uncased"
    data, vocab = read_vocab(src)
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(src, os.path.join(out, "vocab.txt"))
    text = json.dumps(tokenizer_json(vocab), ensure_ascii=False, indent=2) + "\n"
    blob = text.encode("utf-8")
    with open(os.path.join(out, "tokenizer.json"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out, "SOURCE.md"), "w", encoding="utf-8") as f:
        f.write(SOURCE_MD.format(vocab_bytes=len(data), vocab_sha=hashlib.sha256(data).hexdigest(),
                                 json_bytes=len(blob), json_sha=hashlib.sha256(blob).hexdigest(), n=len(vocab)))
    print(f"wrote {out}/vocab.txt, tokenizer.json ({len(vocab)} tokens), SOURCE.md")


if __name__ == "__main__":
    main()
