#!/usr/bin/env python3
"""How accurate is SDPA, to the HVP, when every matrix product rounds its operands one way or another?

An emulation on the CPU (float64 arithmetic, products' operands rounded first), for choosing what float32 at
matmul precision "high" runs on the tensor cores (issue 19). Each product of the attention's forward, backward and
double backward -- S = Q K^T, O = P V and every product autograd forms from them -- rounds both operands by one
rule and accumulates in float64 (the kernels accumulate in float32: 2^-24 a term, far below every rule here):

  tf32        round to nearest with 10 explicit mantissa bits (what cuBLAS runs at "high")
  tf32_trunc  the same bits, truncated (the tensor cores' own reading of a float32 register)
  split       the kernels' "high" today: x = hi + lo in bfloat16, three products hi hi + hi lo + lo hi
  bf16        "medium": bfloat16 operands
  fp16        float16 operands, as they come (what the float16 kernels would do on float32 data)
  fp16_scaled float16 operands of a graph whose inputs were first scaled by powers of two so that each one's
              largest magnitude lies in [2^(m-1), 2^m) (-m), tangents by their primal's power times one common
              power; the outputs scaled back exactly. The intermediates (P, dS, their tangents) round as they are.

Error: max|x - ref| / max|ref| per output group (the forward's out; dq, dk, dv; the HVP's three parts), against
float64 with no rounding. Infinite or NaN outputs count as such (float16 overflow).
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch

# ---------------------------------------------------------------------------------------------------------------
# Rounding rules


def round_tf32(x: torch.Tensor, truncate: bool = False) -> torch.Tensor:
    bits = x.to(torch.float32).view(torch.int32)
    if not truncate:
        bits = bits + 0xFFF + ((bits >> 13) & 1)  # round half to even on the 13 dropped bits
    bits = bits & ~0x1FFF
    return bits.view(torch.float32).to(torch.float64)


def bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float64)


def fp16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float64)


# The largest operand magnitude the float16 rules met (their headroom against 65504).
PEAK = {"value": 0.0}


# fp16_scaled: the power of two (2^k) the kernels would put on P and everything formed from it (dS, P_dot, dS_dot:
# the L x S operands, square here since L = S) before they become float16 operands; the products are scaled back.
P_SCALE = {"k": 0}


def fp16_tracked(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    def rounded(x):
        square = x.shape[-1] == x.shape[-2]
        c = 2.0 ** P_SCALE["k"] if square else 1.0
        PEAK["value"] = max(PEAK["value"], c * x.abs().max().item())
        return fp16(x * c) / c

    return rounded(a) @ rounded(b)


RULES = {
    "tf32": lambda a, b: round_tf32(a) @ round_tf32(b),
    "tf32_trunc": lambda a, b: round_tf32(a, True) @ round_tf32(b, True),
    "bf16": lambda a, b: bf16(a) @ bf16(b),
    "fp16": fp16_tracked,
    "fp16_scaled": fp16_tracked,  # the scaling is the graph's, below
}


def split_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a32, b32 = a.to(torch.float32).to(torch.float64), b.to(torch.float32).to(torch.float64)
    ah, bh = bf16(a32), bf16(b32)
    al, bl = bf16(a32 - ah), bf16(b32 - bh)
    return ah @ bh + ah @ bl + al @ bh


RULES["split"] = split_product


class RoundedProduct(torch.autograd.Function):
    """a @ b under a rule; its backward's products (and theirs) under the same rule."""

    @staticmethod
    def forward(ctx, a, b, rule):
        ctx.save_for_backward(a, b)
        ctx.rule = rule
        return RULES[rule](a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return mm(g, b.transpose(-1, -2), ctx.rule), mm(a.transpose(-1, -2), g, ctx.rule), None


def mm(a, b, rule):
    if rule == "exact":
        return a @ b
    return RoundedProduct.apply(a, b, rule)


class ScaledLogits(torch.autograd.Function):
    """scale (q k^T), with the scale applied after each product, also in the backward (dq = scale (g k)), as the
    kernels do: the rounded operand is g (dS), not scale g."""

    @staticmethod
    def forward(ctx, q, k, scale, rule):
        ctx.save_for_backward(q, k)
        ctx.scale, ctx.rule = scale, rule
        return mm(q, k.transpose(-1, -2), rule) * scale

    @staticmethod
    def backward(ctx, g):
        q, k = ctx.saved_tensors
        return mm(g, k, ctx.rule) * ctx.scale, mm(g.transpose(-1, -2), q, ctx.rule) * ctx.scale, None, None


def attention(q, k, v, scale, rule):
    s = ScaledLogits.apply(q, k, scale, rule)
    p = torch.softmax(s, dim=-1)
    return mm(p, v, rule)


# ---------------------------------------------------------------------------------------------------------------
# Passes: out, the gradient (w as the output's cotangent) and the HVP in the vjp form (u as the inputs' tangent)


def passes(q, k, v, w, u, scale, rule):
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    out = attention(*leaves, scale, rule)
    grads = torch.autograd.grad((out * w).sum(), leaves, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, u))
    hvp = torch.autograd.grad(dot, leaves)
    return out.detach(), [g.detach() for g in grads], [h.detach() for h in hvp]


def power_of_two_scale(x: torch.Tensor, m: int) -> float:
    """2^e such that max|x| 2^e lies in [2^(m-1), 2^m)."""
    amax = x.abs().max().item()
    if amax == 0.0 or not math.isfinite(amax):
        return 1.0
    return 2.0 ** (m - 1 - math.floor(math.log2(amax)))


def passes_scaled(q, k, v, w, u, scale, m):
    """The fp16 kernels on inputs scaled by powers of two; the outputs scaled back (exact)."""
    sq, sk, sv, sw = (power_of_two_scale(x, m) for x in (q, k, v, w))
    primal = (sq, sk, sv)
    # one common power for the tangents, on top of their primal's
    st = min(power_of_two_scale(t * s, m) for t, s in zip(u, primal) if t.abs().max() > 0)
    out, grads, hvp = passes(q * sq, k * sk, v * sv, w * sw, [t * s * st for t, s in zip(u, primal)],
                             scale / (sq * sk), "fp16_scaled")
    # L' = <w', out'> = sw sv L; g'_X = dL'/dX' = sw sv g_X / s_X; <g', u'> = sw sv st <g, u>
    out = out / sv
    grads = [g * s / (sw * sv) for g, s in zip(grads, primal)]
    hvp = [h * s / (sw * sv * st) for h, s in zip(hvp, primal)]
    return out, grads, hvp


def relative_error(x, ref):
    xs, rs = (torch.cat([t.flatten() for t in x]), torch.cat([t.flatten() for t in ref]))
    if not torch.isfinite(xs).all():
        return float("inf")
    return ((xs - rs).abs().max() / rs.abs().max()).item()


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def inputs(family: str, b: int, h: int, l: int, d: int, gen: torch.Generator):
    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std

    shape = (b, h, l, d)
    q, k, v, w = normal(*shape), normal(*shape), normal(*shape), normal(*shape)
    u = [normal(*shape) for _ in range(3)]
    if family == "normal":
        pass
    elif family == "large":  # k, v, w, u 1e5 times larger (float16 overflows unless scaled), q as much smaller
        q, k, v, w = q * 1e-5, k * 1e5, v * 1e5, w * 1e5
        u = [u[0] * 1e-5, u[1] * 1e5, u[2] * 1e5]
    elif family == "small":  # k, v, w, u 1e-6 times smaller (float16 subnormal unless scaled), q as much larger
        q, k, v, w = q * 1e6, k * 1e-6, v * 1e-6, w * 1e-6
        u = [u[0] * 1e6, u[1] * 1e-6, u[2] * 1e-6]
    elif family == "row_spread":  # each row of q, k, v its own magnitude, log-uniform over 1e-4 .. 1
        for x in (q, k, v):
            x *= 10.0 ** (-4.0 * torch.rand(b, h, l, 1, generator=gen, dtype=torch.float64))
    elif family == "sharp":  # large logits: near one-hot P
        q, k = q * 3.0, k * 3.0
    elif family == "hot":  # logits of order 100 (attention-logit growth): one-hot P, large tangents of the logits
        q, k = q * 10.0, k * 10.0
    elif family == "diffuse":  # small logits at long L: P ~ 1/L, small dS
        q, k = q * 0.1, k * 0.1
    elif family == "tangent_mix":  # tangents of very different sizes: q_dot tiny, v_dot large
        u = [u[0] * 1e-4, u[1], u[2] * 1e3]
    else:
        raise ValueError(family)
    return q, k, v, w, u


FAMILIES = ["normal", "large", "small", "row_spread", "sharp", "hot", "diffuse", "tangent_mix"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", action="append", default=None, help="B,H,L,D (repeatable); default 1,2,512,64 and "
                    "1,2,512,128 and 1,1,4096,64")
    ap.add_argument("--family", action="append", default=None, choices=FAMILIES)
    ap.add_argument("--rule", action="append", default=None,
                    choices=["tf32", "tf32_trunc", "split", "bf16", "fp16", "fp16_scaled"])
    ap.add_argument("--m", type=int, action="append", default=None,
                    help="fp16_scaled: inputs' largest magnitude in [2^(m-1), 2^m) (repeatable; default 0 and 3)")
    ap.add_argument("--k", type=int, action="append", default=None,
                    help="fp16_scaled: P and what is formed from it scaled by 2^k (repeatable; default 0)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", default=None, help="write every row here")
    ap.add_argument("--summarize", nargs="+", default=None, metavar="JSON",
                    help="print, from earlier runs' JSON, each family's largest error over shapes and outputs per rule")
    args = ap.parse_args()
    if args.summarize:
        return summarize(args.summarize)
    shapes = [tuple(int(x) for x in s.split(",")) for s in (args.shape or ["1,2,512,64", "1,2,512,128",
                                                                         "1,1,4096,64"])]
    families = args.family or FAMILIES
    rules = args.rule or ["tf32", "tf32_trunc", "split", "bf16", "fp16", "fp16_scaled"]
    ms = args.m or [0, 3]
    ks = args.k or [0]
    torch.set_num_threads(2)

    rows = []
    print(f"{'shape':>14} {'family':>12} {'rule':>22} {'out':>9} {'grad':>9} {'hvp':>9} {'fp16 peak':>10}"
          "   (max over seeds)")
    for shape in shapes:
        b, h, l, d = shape
        scale = 1.0 / math.sqrt(d)
        for family in families:
            refs = []
            for seed in range(args.seeds):
                gen = torch.Generator().manual_seed(1000 * seed + 17)
                x = inputs(family, b, h, l, d, gen)
                refs.append((x, passes(*x, scale, "exact")))
            variants = [(r, None) for r in rules if r != "fp16_scaled"]
            if "fp16_scaled" in rules:
                variants += [("fp16_scaled", (m, k)) for m in ms for k in ks]
            for rule, mk in variants:
                m = mk[0] if mk else None
                P_SCALE["k"] = mk[1] if mk else 0
                errs = [0.0, 0.0, 0.0]
                PEAK["value"] = 0.0
                for x, ref in refs:
                    got = passes_scaled(*x, scale, m) if m is not None else passes(*x, scale, rule)
                    errs = [max(e, relative_error(g if isinstance(g, list) else [g], r if isinstance(r, list)
                                                  else [r])) for e, g, r in zip(errs, got, ref)]
                name = rule if m is None else f"{rule}(m={m},k={P_SCALE['k']})"
                peak = PEAK["value"] if rule.startswith("fp16") else float("nan")
                print(f"{'·'.join(map(str, shape)):>14} {family:>12} {name:>22} " +
                      " ".join(f"{e:9.2e}" for e in errs) + f" {peak:10.3g}", flush=True)
                rows.append({"shape": shape, "family": family, "rule": rule, "m": m, "k": P_SCALE["k"], "out": errs[0],
                             "grad": errs[1], "hvp": errs[2], "fp16_peak": peak, "seeds": args.seeds})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def summarize(paths) -> int:
    rows = [r for p in paths for r in json.load(open(p))]

    def name(r):
        return r["rule"] if r["m"] is None else f"{r['rule']}(m={r['m']},k={r.get('k', 0)})"

    rules = list(dict.fromkeys(name(r) for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))
    print("| family | " + " | ".join(rules) + " |")
    print("|---" * (len(rules) + 1) + "|")
    for fam in families:
        cells = []
        for rule in rules:
            errs = [max(r["out"], r["grad"], r["hvp"]) for r in rows if r["family"] == fam and name(r) == rule]
            cells.append(f"{max(errs):.2e}" if errs else "")
        print(f"| {fam} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
