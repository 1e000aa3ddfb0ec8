#!/usr/bin/env python3
"""SentencePiece oracle: trains a tiny BPE SentencePiece model (PyPI `sentencepiece`) with byte
fallback, writes its vocabulary as a GGUF file the way llama.cpp's converter does
(tokenizer.ggml.model = "llama": tokens, scores, token types), and records the ids that
SentencePiece itself gives for the test texts.

Usage: spm_fixture.py OUT_DIR < texts.json
  OUT_DIR/spm.gguf      the vocabulary
  OUT_DIR/ids.json      a JSON list of id lists, one per text (no BOS/EOS)
"""
import io, json, os, sys
import sentencepiece as spm
import gguf

out = sys.argv[1]
texts = json.load(sys.stdin)
os.makedirs(out, exist_ok=True)
corpus = [
    "the quick brown fox jumps over the lazy dog", "hello world, hello there", "naïve café crème brûlée",
    "def main(): return 42", "the rain in spain stays mainly in the plain", "über straße grüße",
    "  spaces   and\ttabs", "numbers 12345 and 67890", "emoji are rare here",
] * 40
model = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus), model_writer=model, model_type="bpe", vocab_size=400,
    byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
    add_dummy_prefix=True, character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
    split_digits=False, minloglevel=2,
)
sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
tokens, scores, types = [], [], []
for i in range(sp.get_piece_size()):
    tokens.append(sp.id_to_piece(i))
    scores.append(sp.get_score(i))
    # llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
    types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1)
w = gguf.GGUFWriter(os.path.join(out, "spm.gguf"), arch="llama")
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(0)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
with open(os.path.join(out, "ids.json"), "w") as f:
    json.dump([sp.encode(t) for t in texts], f)
