#!/usr/bin/env python3
"""Regenerates data/vectors_<arch>.txt: random encodings of every opcode in data/ops_<arch>.txt,
with the text llvm-mc-19 disassembles them to (kept only when llvm-mc decodes exactly those
bytes as one instruction). Fields (registers, inline constants, literals, modifiers, offsets)
are random so the decoder's operand printing is exercised, not just the mnemonic table.

Usage: tools/gen_vectors.py gfx1100|gfx1201 SEED PER_OP > data/vectors_gfx11.txt
"""
import random
import subprocess
import sys

MARK = 0xBF800007


def ssrc(r):
    c = r.random()
    if c < 0.45:
        return r.randrange(0, 104)
    if c < 0.55:
        return r.choice([106, 124, 126, 253])
    if c < 0.75:
        return r.randrange(128, 209)
    if c < 0.85:
        return r.randrange(240, 249)
    return 255


def src9(r):
    return 256 + r.randrange(256) if r.random() < 0.6 else ssrc(r)


def lit(r):
    return r.choice([r.randrange(1 << 32), r.randrange(65536), 0x3F800000 | r.randrange(1 << 16)])


def case(r, g12, cls, op):
    ws = []
    if cls == "SOP2":
        ws = [(2 << 30) | (op << 23) | (r.randrange(106) << 16) | (ssrc(r) << 8) | ssrc(r)]
    elif cls == "SOPK":
        ws = [(0b1011 << 28) | (op << 23) | (r.randrange(106) << 16) | r.randrange(65536)]
    elif cls == "SOP1":
        ws = [0xBE800000 | (r.randrange(106) << 16) | (op << 8) | ssrc(r)]
    elif cls == "SOPC":
        ws = [0xBF000000 | (op << 16) | (ssrc(r) << 8) | ssrc(r)]
    elif cls == "SOPP":
        ws = [0xBF800000 | (op << 16) | r.choice([0, r.randrange(65536), r.randrange(64)])]
    elif cls == "SMEM":
        sh = 13 if g12 else 18
        w0 = 0xF4000000 | (op << sh) | (r.randrange(0, 100, 4) << 6) | r.randrange(50)
        if g12:
            w0 |= r.choice([0, 0, r.randrange(16)]) << 21
            off = r.choice([r.randrange(1 << 10), (1 << 24) - r.randrange(1, 256), 0])
        else:
            w0 |= r.choice([0, 0, 1, 2, 3]) << 13
            off = r.choice([r.randrange(1 << 10), (1 << 21) - r.randrange(1, 256), 0])
        soff = r.choice([0x7C, 0x7C, r.randrange(100)])
        ws = [w0, (soff << 25) | off]
    elif cls == "VOP1":
        ws = [0x7E000000 | (r.randrange(256) << 17) | (op << 9) | src9(r)]
    elif cls == "VOP2":
        ws = [(op << 25) | (r.randrange(256) << 17) | (r.randrange(256) << 9) | src9(r)]
    elif cls == "VOPC":
        ws = [0x7C000000 | (op << 17) | (r.randrange(256) << 9) | src9(r)]
    elif cls == "VOP3":
        w0 = 0xD4000000 | (op << 16) | r.randrange(256)
        if r.random() < 0.3:
            w0 |= r.randrange(8) << 8  # abs (or sdst bits)
        if r.random() < 0.15:
            w0 |= 1 << 15
        if r.random() < 0.1:
            w0 |= r.randrange(16) << 11
        w1 = (src9(r) << 18) | (src9(r) << 9) | src9(r)
        if r.random() < 0.3:
            w1 |= r.randrange(8) << 29
        if r.random() < 0.1:
            w1 |= r.randrange(4) << 27
        ws = [w0, w1]
    elif cls == "VOP3P":
        w0 = 0xCC000000 | (op << 16) | r.randrange(256) | (r.choice([1, 1, 0]) << 14)
        if r.random() < 0.3:
            w0 |= r.randrange(8) << 11
        if r.random() < 0.3:
            w0 |= r.randrange(8) << 8
        if r.random() < 0.1:
            w0 |= 1 << 15
        w1 = (r.choice([3, 3, r.randrange(4)]) << 27) | (src9(r) << 18) | (src9(r) << 9) | src9(r)
        if r.random() < 0.3:
            w1 |= r.randrange(8) << 29
        ws = [w0, w1]
    elif cls == "VOPD":
        opy = r.choice(list(range(14)) + [16, 17, 18])
        w0 = 0xC8000000 | (op << 22) | (opy << 17) | (r.randrange(256) << 9) | src9(r)
        w1 = (r.randrange(256) << 24) | (r.randrange(128) << 17) | (r.randrange(256) << 9) | src9(r)
        ws = [w0, w1]
    elif cls == "DS":
        w0 = 0xD8000000 | (op << 18) | r.choice([0, r.randrange(65536), r.randrange(256)])
        w1 = (r.randrange(256) << 24) | (r.randrange(256) << 16) | (r.randrange(256) << 8) | r.randrange(256)
        ws = [w0, w1]
    elif cls in ("FLAT", "GLOBAL", "SCRATCH"):
        seg = {"FLAT": 0, "SCRATCH": 1, "GLOBAL": 2}[cls]
        saddr = r.choice([0x7C, r.randrange(0, 100, 2)]) if seg else 0x7C
        if g12:
            w0 = 0xEC000000 | (seg << 24) | (op << 14) | saddr
            w1 = (r.randrange(256) << 23) | r.randrange(256) | (r.choice([0, 0, r.randrange(32)]) << 18)
            if seg == 1:
                w1 |= r.randrange(2) << 17
            off = r.choice([0, r.randrange(4096), (1 << 24) - r.randrange(1, 4096)])
            ws = [w0, w1, (off << 8) | r.randrange(256)]
        else:
            off = r.choice([0, r.randrange(2048), (1 << 13) - r.randrange(1, 2048)]) if seg else r.choice([0, r.randrange(4096)])
            w0 = 0xDC000000 | (op << 18) | (seg << 16) | off | (r.choice([0, 0, r.randrange(8)]) << 13)
            w1 = (r.randrange(256) << 24) | (saddr << 16) | (r.randrange(256) << 8) | r.randrange(256)
            if seg == 1:
                w1 |= r.randrange(2) << 23
            ws = [w0, w1]
    # A literal dword whenever one may be needed; llvm-mc's length tells whether it was.
    return ws + [lit(r)]


def main():
    arch, seed, per_op = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    g12 = arch == "gfx1201"
    r = random.Random(seed)
    ops = []
    for line in open("data/ops_%s.txt" % ("gfx12" if g12 else "gfx11")):
        if line.startswith("#"):
            continue
        cls, op, mn = line.split()[:3]
        if mn != "s_nop":  # s_nop is the separator
            ops.append((cls, int(op)))
    ops += [("VOPD", x) for x in range(14)]
    cases = [case(r, g12, cls, op) for cls, op in ops for _ in range(per_op)]
    lines = []
    # After case i, four copies of "s_nop i": a unique marker a case cannot swallow whole.
    for i, ws in enumerate(cases):
        lines.append(",".join("0x%02x" % ((w >> (8 * i)) & 0xFF) for w in ws for i in range(4)))
        for _ in range(4):
            lines.append("0x%02x,0x%02x,0x80,0xbf" % (i & 0xFF, i >> 8))
    p = subprocess.run(["llvm-mc-19", "--disassemble", "-show-encoding", "-triple=amdgcn", "-mcpu=" + arch],
                       input="\n".join(lines) + "\n", capture_output=True, text=True)
    entries = []
    for l in p.stdout.splitlines():
        l = l.strip()
        if not l or l.startswith("."):
            continue
        text, _, enc = l.partition(" ; encoding: ")
        enc = [int(b, 16) for b in enc.strip("[]").split(",") if b]
        entries.append((text.strip(), len(enc), enc))
    assert len(cases) < 65536
    chunks = [[] for _ in cases]
    cur = 0  # the case whose output is being read
    for text, n, enc in entries:
        if n == 4 and text.startswith("s_nop "):
            try:
                v = int(text[6:], 0)
            except ValueError:
                v = -1
            if v >= cur:
                cur = v + 1
            continue
        if cur < len(cases):
            chunks[cur].append((text, n, enc))
    print("# generated by tools/gen_vectors.py %s %d %d: encoding dwords | llvm-mc-19 text" % (arch, seed, per_op))
    seen = set()
    for ws, got in zip(cases, chunks):
        if len(got) != 1:
            continue
        text, n, enc = got[0]
        words = ws[: n // 4] if n % 4 == 0 else None
        if not words or n > 4 * len(ws):
            continue
        # The instruction must start at the case's first byte: LLVM re-encodes what it decoded,
        # so a canonical case reproduces its own bytes.
        if enc != [(w >> (8 * i)) & 0xFF for w in words for i in range(4)]:
            continue
        key = tuple(words)
        if key in seen:
            continue
        seen.add(key)
        print("%s | %s" % (" ".join("%08x" % w for w in words), text))


main()
