#!/usr/bin/env python3
"""Regenerates data/ops_<arch>.txt: which opcode of each encoding class is which mnemonic,
and the operand shape LLVM prints for it, by asking llvm-mc-19 to disassemble one canonical
word per (class, opcode). Register fields carry distinctive numbers (dst 10, src0 20, src1 30,
src2 40) so each printed operand can be traced back to its field and its width.

Usage: tools/gen_optable.py gfx1100|gfx1201 > data/ops_gfx11.txt (or ops_gfx12.txt)
"""
import re
import subprocess
import sys

MARK = 0xBF800007  # s_nop 7, a separator between cases


def subsets(fields):
    """All combinations of optional register fields, most populated first."""
    out = []
    for m in range(1 << len(fields), 0, -1):
        m -= 1
        out.append(sum(f for i, f in enumerate(fields) if m >> i & 1))
    return out


def words_gfx(arch):
    g12 = arch == "gfx1201"
    cases = []  # (class, op, [variant words...])
    for op in range(96):
        cases.append(("SOP2", op, [[(2 << 30) | (op << 23) | (10 << 16) | (30 << 8) | 20]]))
    for op in range(29):
        w = (0b1011 << 28) | (op << 23) | (10 << 16) | 0x1234
        cases.append(("SOPK", op, [[w], [w, 0x3F800000]]))
    for op in range(256):
        cases.append(("SOP1", op, [[0xBE800000 | (10 << 16) | (op << 8) | 20], [0xBE800000 | (op << 8) | 20],
                                   [0xBE800000 | (10 << 16) | (op << 8)], [0xBE800000 | (op << 8)]]))
    for op in range(128):
        cases.append(("SOPC", op, [[0xBF000000 | (op << 16) | (30 << 8) | 20]]))
    for op in range(128):
        cases.append(("SOPP", op, [[0xBF800000 | (op << 16) | 3], [0xBF800000 | (op << 16)]]))
    for op in range(256):
        sh = 13 if g12 else 18
        cases.append(("SMEM", op, [[0xF4000000 | (op << sh) | (16 << 6) | 10, (0x7C << 25) | 0x40],
                                   [0xF4000000 | (op << sh) | 10, (0x7C << 25) | 0x40],
                                   [0xF4000000 | (op << sh), (0x7C << 25)]]))
    for op in range(256):
        cases.append(("VOP1", op, [[0x7E000000 | (10 << 17) | (op << 9) | (256 + 20)],
                                   [0x7E000000 | (op << 9)]]))
    for op in range(62):
        w = (op << 25) | (10 << 17) | (30 << 9) | (256 + 20)
        # fmamk/fmaak always carry a literal constant.
        cases.append(("VOP2", op, [[w], [w, 0x3F800000]]))
    for op in range(256):
        cases.append(("VOPC", op, [[0x7C000000 | (op << 17) | (30 << 9) | (256 + 20)]]))
    for op in range(1024):
        w0 = 0xD4000000 | (op << 16) | 10
        v = [[w0, w1] for w1 in subsets([(256 + 40) << 18, (256 + 30) << 9, 256 + 20])]
        cases.append(("VOP3", op, v + [[w0 & ~0xFF, 0]]))
    for op in range(128):
        w0 = 0xCC000000 | (op << 16) | (1 << 14) | 10
        cases.append(("VOP3P", op, [[w0, (3 << 27) | w1] for w1 in subsets([(256 + 40) << 18, (256 + 30) << 9, 256 + 20])]))
    # VOPD: X ops with a fixed Y (v_dual_mov_b32 = 8), Y ops with a fixed X (v_dual_mov_b32 = 8).
    for opx in range(16):
        w0 = 0xC8000000 | (opx << 22) | (8 << 17) | (30 << 9) | (256 + 20)
        w1 = (10 << 24) | ((11 >> 1) << 17) | (31 << 9) | (256 + 21)
        cases.append(("VOPDX", opx, [[w0, w1]]))
    for opy in range(32):
        w0 = 0xC8000000 | (8 << 22) | (opy << 17) | (30 << 9) | (256 + 20)
        w1 = (10 << 24) | ((11 >> 1) << 17) | (31 << 9) | (256 + 21)
        cases.append(("VOPDY", opy, [[w0, w1]]))
    for op in range(256):
        w0 = 0xD8000000 | (op << 18) | (2 << 8) | 1
        cases.append(("DS", op, [[w0, w1 | 20] for w1 in subsets([10 << 24, 30 << 8, 40 << 16])]
                      + [[w0, w1] for w1 in subsets([10 << 24, 30 << 8, 40 << 16])]))
    for seg, cls in ((0, "FLAT"), (2, "GLOBAL"), (1, "SCRATCH")):
        for op in range(256 if g12 else 128):
            v = []
            if g12:
                w0 = 0xEC000000 | (seg << 24) | (op << 14) | 0x7C
                for w1 in subsets([30 << 23, 10]):
                    v.append([w0, w1 | ((1 << 17) if seg == 1 else 0), (8 << 8) | 20])
            else:
                w0 = 0xDC000000 | (op << 18) | (seg << 16) | 8
                for w1 in subsets([10 << 24, 30 << 8]):
                    v.append([w0, w1 | (0x7C << 16) | 20 | ((1 << 23) if seg == 1 else 0)])
            cases.append((cls, op, v))
    return cases


def disasm_one(arch, words):
    """The text LLVM prints for exactly these words, or None when they are not one valid instruction."""
    line = ",".join("0x%02x" % ((w >> (8 * i)) & 0xFF) for w in words for i in range(4))
    p = subprocess.run(
        ["llvm-mc-19", "--disassemble", "-show-encoding", "-triple=amdgcn", "-mcpu=" + arch],
        input=line + "\n", capture_output=True, text=True,
    )
    insts = [l.strip() for l in p.stdout.splitlines() if l.strip() and not l.strip().startswith(".")]
    if p.stderr.strip() or len(insts) != 1:
        return None
    text, _, enc = insts[0].partition(" ; encoding: ")
    if enc.count("0x") != 4 * len(words):
        return None
    return text.strip()


def run(arch, cases):
    from concurrent.futures import ThreadPoolExecutor

    def one(case):
        _, _, variants = case
        for ws in variants:
            t = disasm_one(arch, ws)
            if t is not None:
                return [t]
        return []

    with ThreadPoolExecutor(6) as ex:
        return list(ex.map(one, cases))


REG = re.compile(r"^(v|s|ttmp)(\d+)$|^(v|s|ttmp)\[(\d+):(\d+)\]$")


def sig_of(cls, text):
    """Operand list of the printed instruction -> tokens 'F K W' (field, kind, width) or '=text'."""
    # An SGPR-only field holding a VGPR number is printed as "v30/*Invalid register...*/".
    text = re.sub(r"v(\d+)/\*Invalid register[^*]*\*/", r"s\1", text)
    parts = text.split(" ", 1)
    mn = parts[0]
    ops = []
    if len(parts) > 1:
        rest = parts[1]
        if cls.startswith("VOPD"):
            return mn, None  # handled by the caller
        pieces = rest.split(", ")
        last = pieces[-1].split(" ")
        pieces = pieces[:-1] + [last[0]]
        for p in pieces:
            m = REG.match(p)
            if m:
                kind = m.group(1) or m.group(3)
                if m.group(2):
                    base, width = int(m.group(2)), 1
                else:
                    base, width = int(m.group(4)), int(m.group(5)) - int(m.group(4)) + 1
                field = {10: "d", 16: "d", 20: "a", 30: "b", 40: "c", 0: "e", 21: "a", 31: "b", 11: "d"}.get(base)
                if field is None:
                    ops.append("=" + p)
                else:
                    ops.append("%s%s%d" % (field, kind[0], width))
            else:
                ops.append("=" + p)
    return mn, ops


def main():
    arch = sys.argv[1]
    cases = words_gfx(arch)
    res = run(arch, cases)
    print("# generated by tools/gen_optable.py %s from llvm-mc-19; class opcode mnemonic operands" % arch)
    for (cls, op, ws), got in zip(cases, res):
        if len(got) != 1 or got[0] in ("v_illegal",):
            continue
        text = got[0].split(" ;")[0].strip()
        if cls in ("VOPDX", "VOPDY"):
            halves = text.split(" :: ")
            if len(halves) != 2:
                continue
            h = halves[0] if cls == "VOPDX" else halves[1]
            mn, _ = h.split(" ", 1)[0], None
            rest = h.split(" ", 1)[1]
            ops = []
            for p in rest.split(", "):
                m = REG.match(p)
                if m and m.group(2):
                    f = {10: "d", 11: "d", 20: "a", 21: "a", 30: "b", 31: "b"}.get(int(m.group(2)))
                    ops.append("%sv1" % f if f else "=" + p)
                else:
                    ops.append("=" + p)
            print(cls, op, mn, " ".join(ops) or "-")
            continue
        mn, ops = sig_of(cls, text)
        print(cls, op, mn, " ".join(ops) or "-")


main()
