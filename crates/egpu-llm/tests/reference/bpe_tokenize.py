#!/usr/bin/env python3
"""Tokenizer oracle: builds a Hugging Face `tokenizers` byte-level BPE from a GGUF file's
vocabulary and merges (read with the PyPI `gguf` package) and encodes texts with it.

Usage: bpe_tokenize.py GGUF < texts.json > ids.json
  texts.json: a JSON list of strings; ids.json: a JSON list of id lists.
Special (control) tokens are added as special tokens, so they are split out of the text;
no BOS/EOS is added.

The pre-tokenizer follows the GGUF `tokenizer.ggml.pre` value: `smollm` is Hugging Face's
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)] (SmolLM2's
tokenizer.json), anything gpt2-like is ByteLevel alone.
"""
import json, sys
from gguf import GGUFReader
from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders

r = GGUFReader(sys.argv[1])
field = lambda k: r.fields[k].contents() if k in r.fields else None
assert field("tokenizer.ggml.model") == "gpt2", "this oracle covers byte-level BPE vocabularies"
tokens = field("tokenizer.ggml.tokens")
types = field("tokenizer.ggml.token_type")
merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
vocab = {t: i for i, t in reversed(list(enumerate(tokens)))}
tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
pre = field("tokenizer.ggml.pre") or "default"
byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
if pre == "smollm":
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
elif pre in ("default", "gpt2"):
    tok.pre_tokenizer = byte_level
else:
    sys.exit(f"bpe_tokenize.py: no oracle rule for pre-tokenizer {pre!r}")
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
texts = json.load(sys.stdin)
json.dump([tok.encode(t, add_special_tokens=False).ids for t in texts], sys.stdout)
