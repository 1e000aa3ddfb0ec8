"""`egpu run MODEL -f PROMPT` in a pseudo-terminal (pexpect): progress while a long prompt is
evaluated, and Ctrl-C mid-answer still prints the statistics (exit status 130).

usage: one_shot_tty.py EGPU MODEL PROMPT_FILE
"""
import sys

import pexpect

EGPU, MODEL, PROMPT = sys.argv[1:4]
T = 300


def main():
    child = pexpect.spawn(EGPU, ["run", MODEL, "-f", PROMPT, "--raw", "-b", "16", "-t", "2",
                                 "--temp", "0", "-n", "-1"],
                          encoding="utf-8", timeout=T, dimensions=(50, 200))
    child.logfile_read = sys.stdout
    child.expect(r"prompt: 16/(\d+) tokens")
    total = int(child.match.group(1))
    child.expect(rf"prompt: 32/{total} tokens")
    child.expect_exact(f"prompt: {total}/{total} tokens")
    # Some answer text, then Ctrl-C.
    child.expect(r"\d+, \d+, \d+")
    child.sendintr()
    child.expect(r"\[interrupted\]")
    child.expect(rf"load \d+ ms \| prompt {total} tokens: [\d.]+ ms/token, [\d.]+ tokens/s \| decode \d+ tokens?: ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130, (child.exitstatus, child.signalstatus)
    print(f"\nok  progress over {total} prompt tokens; Ctrl-C kept the statistics")


if __name__ == "__main__":
    main()
