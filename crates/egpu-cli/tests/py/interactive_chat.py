"""`egpu run MODEL` without a prompt, in a pseudo-terminal (pexpect): two turns sharing the KV
cache, /set, /clear, Ctrl-C mid-answer (the answer stops, the chat goes on), /bye.

usage: interactive_chat.py EGPU MODEL
"""
import re
import sys

import pexpect

EGPU, MODEL = sys.argv[1:3]
T = 300  # seconds for one answer on a busy 2-core machine


def turn(child, text):
    child.sendline(text)
    child.expect(r"\[(\d+) prompt tokens? cached, prompt (\d+) tokens?", timeout=T)
    cached, new = int(child.match.group(1)), int(child.match.group(2))
    child.expect(">>> ", timeout=T)
    return cached, new


def main():
    child = pexpect.spawn(EGPU, ["run", MODEL, "--temp", "0", "-t", "2", "--verbose"],
                          encoding="utf-8", timeout=T, dimensions=(50, 200))
    child.logfile_read = sys.stdout
    child.expect(r"SmolLM2.*llama 135M parameters, Q4_1 \| context 4096 of 8192 \| seed \d+")
    child.expect(">>> ")
    child.sendline("What is the capital of France?")
    child.expect("Paris", timeout=T)
    child.expect(r"\[0 prompt tokens cached, prompt (\d+) tokens", timeout=T)
    first_prompt = int(child.match.group(1))
    child.expect(">>> ", timeout=T)
    cached, new = turn(child, "And what is it famous for?")
    # The second turn re-evaluates only its new tokens: the first turn is in the KV cache.
    assert cached >= first_prompt and new < cached, (cached, new, first_prompt)
    child.sendline("/set temp 5000")
    child.expect("allowed 0 to 100")
    child.sendline("/set temp 0")
    child.expect("Set temp to 0")
    child.sendline("/clear")
    child.expect("Cleared the conversation")
    child.expect(">>> ")
    cached, new = turn(child, "What is the capital of France?")
    assert cached == 0 and new == first_prompt, (cached, new, first_prompt)
    # Ctrl-C while the answer streams stops that answer only.
    child.sendline("Write a very long story about a dragon who learns to fly.")
    child.expect(r"\n[^\n>]*\w+ \w+ \w+", timeout=T)
    child.sendintr()
    child.expect(r"\[interrupted\]", timeout=T)
    child.expect(">>> ", timeout=T)
    assert child.isalive()
    child.sendline("/bye")
    child.expect(r"load \d+ ms \| prompt \d+ tokens: [\d.]+ ms/token, [\d.]+ tokens/s \| decode \d+ tokens: ", timeout=T)
    child.expect(pexpect.EOF, timeout=T)
    child.close()
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
    print("\nok  two turns share the cache, /set checks ranges, /clear empties it, Ctrl-C stops one answer")


if __name__ == "__main__":
    main()
