"""Each pass of an HVP against the dense ceiling, from hvp_timeline.py's kernel tables: per shape, the time of theria's
forward, backward, tangent pass and backward-JVP kernels (and of flash's forward and backward), the matrix products
each runs (2·L·S·D FLOPs each; under causal masking the visible share, (L + 1) / 2L), TFLOP/s and their share of
the ceiling (dense_ceiling.py's largest rate).
    python3 scripts/device/pass_rates.py timeline.txt [timeline_causal.txt ...] --ceiling 785
A table whose header says "causal" (hvp_timeline.py --causal) counts the causal share.
"""
import argparse
import re

# Matrix products a kernel runs (docs/performance.md: forward 2, backward 5, tangent pass 5, backward-JVP 10 without
# a dout tangent; flash's forward 2 and backward 5); anything else is glue.
PASSES = [
    ("forward", re.compile(r"sdpa_fwd_wg_kernel|sdpa_fwd_tc_kernel"), 2),
    ("backward-JVP", re.compile(r"sdpa_bwd_wg_kernel<[^,]+, theria::kernels::cuda::BwdWgTraits<\d+, true|"
                                r"sdpa_bwd_jvp_tc_kernel"), 10),
    ("backward", re.compile(r"sdpa_bwd_wg_kernel|sdpa_bwd_tc_kernel"), 5),
    ("tangent pass", re.compile(r"sdpa_tangent_wg_kernel"), 5),
    ("flash forward", re.compile(r"flash_fwd_kernel"), 2),
    ("flash backward", re.compile(r"flash_bwd_dq_dk_dv"), 5),
]
HEADER = re.compile(r"^(theria HVP \S+|flash fwd\+bwd) (\d+),(\d+),(\d+),(\d+)( causal)?: wall ([\d.]+) ms, kernels ([\d.]+)")
KERNEL = re.compile(r"^\s+([\d.]+) ms\s+x(\d+)\s+(.*)$")


def tables(path):
    """(label, (b, h, l, d), causal, wall, kernels, [(ms, name)]) per table of the file."""
    out, current = [], None
    for line in open(path):
        m = HEADER.match(line.strip("\n").lstrip())
        if m:
            current = (m.group(1), tuple(int(m.group(i)) for i in range(2, 6)), m.group(6) is not None,
                       float(m.group(7)), float(m.group(8)), [])
            out.append(current)
            continue
        if "idle before" in line or "host:" in line:  # (--gaps, --host: not kernel rows)
            current = None
        k = KERNEL.match(line)
        if k and current is not None:
            current[5].append((float(k.group(1)), k.group(3)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--ceiling", type=float, required=True, help="TFLOP/s of a dense bf16 product (dense_ceiling.py)")
    a = ap.parse_args()
    print(f"| B·H·L·D | pass | ms | products | TFLOP/s | share of {a.ceiling:.0f} |")
    print("|---|---|---|---|---|---|")
    for path in a.files:
        for label, (b, h, l, d), causal, wall, busy, kernels in tables(path):
            share = (l + 1) / (2 * l) if causal else 1.0
            flops = 2.0 * b * h * l * l * d * share
            shape = f"{b}·{h}·{l}·{d}" + (" causal" if causal else "")
            glue = 0.0
            per_pass = {}
            for ms, name in kernels:
                for pass_name, pattern, products in PASSES:
                    if pattern.search(name):
                        per_pass.setdefault(pass_name, [0.0, products])[0] += ms
                        break
                else:
                    glue += ms
            total_products = 0
            for pass_name, (ms, products) in per_pass.items():
                total_products += products
                rate = products * flops / (ms * 1e-3) / 1e12
                print(f"| {shape} | {pass_name} | {ms:.3f} | {products} | {rate:.0f} | {100 * rate / a.ceiling:.0f} % |")
            whole = total_products * flops / (busy * 1e-3) / 1e12
            print(f"| {shape} | {label}: all kernels (glue {glue:.3f} ms), wall {wall:.3f} | {busy:.3f} | "
                  f"{total_products} | {whole:.0f} | {100 * whole / a.ceiling:.0f} % |")


if __name__ == "__main__":
    main()
