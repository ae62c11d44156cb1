#!/usr/bin/env python3
"""The static instruction mix of one kernel in several builds, side by side: what a kernel variant changes in the
SASS (wgmma, shared-memory loads and stores, barriers, atomics, ...) before a device call measures what it costs.

    python3 scripts/device/sass_mix.py --kernel 'BwdWgTraitsILi64ELb0ELb0ELi128' \
        main=build/src/CMakeFiles/theria_fused_kernels.dir/fused/sdpa_bwd_tc_hdim64.cu.o \
        dqq=build-var-dqq/src/CMakeFiles/theria_fused_kernels.dir/fused/sdpa_bwd_tc_hdim64.cu.o

Each NAME=FILE is an object or library cuobjdump reads; --kernel is a regular expression on the mangled name, and
the first function it matches in each file is counted (--all-matches: every one, summed). Counts are static (each
instruction once, however often it runs); in a kernel whose step loop is unrolled they are proportional to a step's.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys

CUOBJDUMP_CANDIDATES = [
    os.environ.get("CUOBJDUMP", ""),
    shutil.which("cuobjdump") or "",
    "/usr/local/cuda/bin/cuobjdump",
]

# Opcode classes in the order printed; anything else is counted under its own opcode in "other".
CLASSES = [
    ("wgmma", ("HGMMA", "WARPGROUP")),  # (WARPGROUP.ARRIVE, .DEPBAR: its fences and waits)
    ("mma.sync", ("HMMA",)),
    ("shared load", ("LDS", "LDSM")),
    ("shared store", ("STS", "STSM")),
    ("global load", ("LDG",)),
    ("global store", ("STG",)),
    ("atomic / reduction", ("RED", "REDG", "ATOM", "ATOMG", "ATOMS", "REDUX", "UBLKRED", "UTMAREDG")),
    ("constant load", ("LDC", "ULDC")),
    ("TMA / bulk copy", ("UTMALDG", "UBLKCP", "UTMAPF", "UTMACCTL")),
    ("barrier", ("BAR", "SYNCS", "WARPSYNC", "MEMBAR", "FENCE", "DEPBAR")),
    ("shuffle", ("SHFL",)),
    ("special function", ("MUFU",)),
    ("fp32 arithmetic", ("FFMA", "FADD", "FMUL", "FMNMX", "FSEL", "FSETP", "FCHK")),
    ("conversion / pack", ("F2F", "F2FP", "I2F", "F2I", "PRMT")),
    ("integer / address", ("IMAD", "IADD3", "LEA", "SHF", "LOP3", "ISETP", "SEL", "IABS", "IMNMX", "VIADD",
                           "UIADD3", "UIMAD", "ULEA", "USHF", "ULOP3", "UISETP", "USEL", "UMOV", "UPRMT", "S2UR",
                           "R2UR", "UFLO", "UPOPC", "USGXT", "VIMNMX", "VOTEU", "VOTE", "ELECT")),
    ("move", ("MOV", "S2R", "CS2R", "R2P", "P2R", "PLOP3")),
    ("branch", ("BRA", "BSSY", "BSYNC", "EXIT", "RET", "CALL", "YIELD", "NOP", "BMOV")),
]


def cuobjdump():
    for c in CUOBJDUMP_CANDIDATES:
        if c and os.path.exists(c):
            return c
    sys.exit("sass_mix: no cuobjdump (set CUOBJDUMP)")


def functions(path):
    """{mangled name: [opcodes]} of every function in the file's SASS."""
    text = subprocess.run([cuobjdump(), "-sass", path], check=True, capture_output=True, text=True).stdout
    funcs, name = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            name = m.group(1)
            funcs.setdefault(name, [])
            continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m and name is not None:
            funcs[name].append(m.group(1))
    return funcs


def classify(opcode):
    base = opcode.split(".")[0]
    for label, names in CLASSES:
        if base in names or opcode in names:
            return label
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", metavar="NAME=FILE")
    ap.add_argument("--kernel", required=True, help="regular expression on the mangled function name")
    ap.add_argument("--all-matches", action="store_true", help="sum every matching function, not the first")
    ap.add_argument("--opcodes", action="store_true", help="also list the opcodes of the 'other' class")
    args = ap.parse_args()
    pattern = re.compile(args.kernel)
    columns = []
    for spec in args.builds:
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"sass_mix: {spec!r} is not NAME=FILE")
        matched = [(n, ops) for n, ops in functions(path).items() if pattern.search(n)]
        if not matched:
            sys.exit(f"sass_mix: no function matching {args.kernel!r} in {path}")
        if not args.all_matches:
            matched = matched[:1]
        counts, others = collections.Counter(), collections.Counter()
        for _, ops in matched:
            for op in ops:
                cls = classify(op)
                counts[cls] += 1
                if cls == "other":
                    others[op.split(".")[0]] += 1
        counts["total"] = sum(counts.values())
        columns.append((label, counts, others, [n for n, _ in matched]))
    for label, _, _, names in columns:
        print(f"{label}: {', '.join(names)}")
    rows = [c for c, _ in CLASSES] + ["other", "total"]
    header = "| class | " + " | ".join(label for label, *_ in columns) + " |"
    print(header)
    print("|---" * (len(columns) + 1) + "|")
    for r in rows:
        if all(c[1][r] == 0 for c in columns):
            continue
        print(f"| {r} | " + " | ".join(str(c[1][r]) for c in columns) + " |")
    if args.opcodes:
        for label, _, others, _ in columns:
            print(f"{label} other: " + ", ".join(f"{k} {v}" for k, v in others.most_common()))


if __name__ == "__main__":
    main()
