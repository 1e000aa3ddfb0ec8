#!/usr/bin/env python3
"""Chat-template oracle: renders a GGUF file's `tokenizer.chat_template` with Python's jinja2.

Usage: chat_template.py GGUF < conversations.json > rendered.json
  conversations.json: a JSON list of {"messages": [...], "add_generation_prompt": bool}
"""
import json, sys
import jinja2
from gguf import GGUFReader

r = GGUFReader(sys.argv[1])
source = r.fields["tokenizer.chat_template"].contents()
tokens = r.fields["tokenizer.ggml.tokens"].contents()
bos = tokens[r.fields["tokenizer.ggml.bos_token_id"].contents()]
eos = tokens[r.fields["tokenizer.ggml.eos_token_id"].contents()]
env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)
env.globals["raise_exception"] = raise_exception
template = env.from_string(source)
out = [template.render(messages=c["messages"], add_generation_prompt=c["add_generation_prompt"],
                       bos_token=bos, eos_token=eos) for c in json.load(sys.stdin)]
json.dump(out, sys.stdout)
