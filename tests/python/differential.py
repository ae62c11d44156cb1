"""Differential testing against PyTorch's math SDPA in float64, at every order theria offers.

`derivatives` runs one attention function through forward, backward, forward-mode JVP and double
backward (an HVP as MAML takes it) for a given requires-grad mask and tangent mask; `compare` holds
theria's results against the same computation through F.scaled_dot_product_attention (math backend)
on float64 copies of the very (rounded) inputs, with the bound of theria.tolerance and the NaN
pattern required to match exactly. The fuzzer (test_fuzz.py) and the degenerate-shape tests
(test_degenerate.py) both go through here.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.autograd.forward_ad as fwAD

import theria
from sdpa_testing import FIRST, FORWARD, SECOND, ref_sdpa

# Which tolerance row of theria.tolerance each result is held to.
ORDER_OF = {"out": FORWARD, "grad": FIRST, "jvp": FIRST, "hvp": SECOND}


@dataclass
class Probes:
    """The directions a derivative is taken along: dout (backward), t_* (JVP tangents, None = absent),
    u_* (the HVP direction, cotangents of dq, dk, dv)."""
    dout: torch.Tensor
    tangents: tuple
    hvp_dirs: tuple

    def to64(self):
        c = lambda t: None if t is None else t.detach().to("cpu", torch.float64)  # noqa: E731
        return Probes(c(self.dout), tuple(map(c, self.tangents)), tuple(map(c, self.hvp_dirs)))


@dataclass
class Results:
    parts: dict = field(default_factory=dict)  # name -> list of tensors (one derivative's parts)


def _zeros_if_none(grads, like):
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, like)]


def _no_internal_overlap(x):
    """x, or a copy where its elements share memory (an expanded tensor): PyTorch's make_dual refuses those."""
    return x if torch._debug_has_internal_overlap(x) == 0 else x.clone()


def derivatives(attn, q, k, v, probes, order, requires_grad=(True, True, True), jvp=True):
    """attn(q, k, v) -> out through every derivative up to `order` (0, 1, 2), plus the JVP when asked.

    Inputs keep their layout (detach keeps strides); an input that does not require grad gets no
    gradient, and a gradient PyTorch leaves undefined counts as zeros."""
    r = Results()
    leaves = [x.detach().requires_grad_(rg and order >= 1) for x, rg in zip((q, k, v), requires_grad)]
    out = attn(*leaves)
    r.parts["out"] = [out.detach()]
    wrt = [x for x in leaves if x.requires_grad]
    if order >= 1 and wrt:
        g = torch.autograd.grad(out, wrt, probes.dout, create_graph=order >= 2, allow_unused=True)
        g = _zeros_if_none(g, wrt)
        r.parts["grad"] = [x.detach() for x in g]
        if order >= 2:
            dirs = [u for u, x in zip(probes.hvp_dirs, leaves) if x.requires_grad]
            gu = sum((gi * ui).sum() for gi, ui in zip(g, dirs))
            if gu.requires_grad:
                h = torch.autograd.grad(gu, wrt, allow_unused=True)
                r.parts["hvp"] = [x.detach() for x in _zeros_if_none(h, wrt)]
            else:  # no second-order dependence at all (e.g. an empty problem)
                r.parts["hvp"] = [torch.zeros_like(x) for x in wrt]
    if jvp:
        with fwAD.dual_level():
            duals = [x.detach() if t is None else fwAD.make_dual(_no_internal_overlap(x.detach()), t)
                     for x, t in zip((q, k, v), probes.tangents)]
            tangent = fwAD.unpack_dual(attn(*duals)).tangent
        r.parts["jvp"] = [torch.zeros_like(out.detach()) if tangent is None else tangent.detach()]
    return r


def reference(q, k, v, probes, order, requires_grad=(True, True, True), jvp=True, is_causal=False, scale=None):
    """The oracle: the same derivatives through PyTorch's math SDPA on float64 CPU copies."""
    c = lambda t: t.detach().to("cpu", torch.float64)  # noqa: E731
    return derivatives(lambda a, b, d: ref_sdpa(a, b, d, is_causal=is_causal, scale=scale), c(q), c(k), c(v),
                       probes.to64(), order, requires_grad, jvp)


def error(xs, refs):
    """max|x - ref| / max(max|ref|, 1) over a derivative's parts (the metric of include/theria/tolerances.h),
    on the entries where the reference is finite; +inf when x is NaN or infinite anywhere ref is not, or
    finite where ref is not."""
    worst, mag = 0.0, 1.0
    for x, ref in zip(xs, refs):
        assert tuple(x.shape) == tuple(ref.shape), f"shape {tuple(x.shape)} != reference {tuple(ref.shape)}"
        if ref.numel() == 0:
            continue
        xd, rd = x.detach().to("cpu", torch.float64), ref.detach().to("cpu", torch.float64)
        finite = rd.isfinite()
        if not (torch.equal(xd.isnan(), rd.isnan()) and torch.equal(xd.isposinf(), rd.isposinf()) and
                torch.equal(xd.isneginf(), rd.isneginf())):
            return math.inf
        if finite.any():
            worst = max(worst, (xd[finite] - rd[finite]).abs().max().item())
            mag = max(mag, rd[finite].abs().max().item())
    return worst / mag


def compare(got, want, dtype):
    """[(result name, error, tolerance)] for every result; a missing or extra result is an error."""
    assert got.parts.keys() == want.parts.keys(), f"results {sorted(got.parts)} != reference {sorted(want.parts)}"
    return [(name, error(got.parts[name], want.parts[name]), theria.tolerance(dtype, ORDER_OF[name]))
            for name in want.parts]
