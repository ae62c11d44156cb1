"""Shared helpers of theria's Python tests: the float64 reference oracle, the one error metric,
and seeded input makers. Every accuracy assertion goes through `assert_within_tolerance`, which
compares `max_rel_err` with theria.tolerance(dtype, order) -- the single tolerance table."""
import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import theria

# Derivative orders of theria.tolerance.
FORWARD, FIRST, SECOND, THIRD = 0, 1, 2, 3


class Shape(NamedTuple):
    """q (*lead, L, E), k (*lead, S, E), v (*lead, S, Ev)."""
    lead: tuple
    L: int
    S: int
    E: int
    Ev: int

    @property
    def id(self):
        lead = "x".join(map(str, self.lead)) or "none"
        return f"lead{lead}-L{self.L}-S{self.S}-E{self.E}-Ev{self.Ev}"

    @property
    def q(self):
        return (*self.lead, self.L, self.E)

    @property
    def k(self):
        return (*self.lead, self.S, self.E)

    @property
    def v(self):
        return (*self.lead, self.S, self.Ev)

    @property
    def out(self):
        return (*self.lead, self.L, self.Ev)


def max_rel_err(x, ref, scale_if_zero=None):
    """max|x - ref| / max|ref|, in float64 on CPU; NaN anywhere gives +inf.

    When ref is identically zero (e.g. dq of a causal row that sees a single key) the ratio is
    undefined; then the error is taken relative to `scale_if_zero`, the magnitude of the other
    results of the same computation (assert_all_within_tolerance passes the largest of them)."""
    assert x.shape == ref.shape, f"shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}"
    if ref.numel() == 0:
        return 0.0
    xd = x.detach().to("cpu", torch.float64)
    rd = ref.detach().to("cpu", torch.float64)
    err = (xd - rd).abs().max().item()
    mag = rd.abs().max().item()
    if math.isnan(err) or math.isnan(mag):
        return math.inf
    if mag == 0.0 and scale_if_zero:
        mag = scale_if_zero
    return err / max(mag, 1e-300)


def assert_within_tolerance(x, ref, dtype, order, what="", scale_if_zero=None):
    tol = theria.tolerance(dtype, order)
    err = max_rel_err(x, ref, scale_if_zero)
    assert err <= tol, f"{what}: max rel err {err:.3e} > tolerance({dtype}, order {order}) = {tol:.1e}"
    return err


def assert_all_within_tolerance(xs, refs, dtype, order, names=None):
    """Each x against its ref; a ref that is identically zero is measured against the largest
    magnitude among refs (see max_rel_err). When every ref is zero (e.g. second derivatives of a
    causal L = 1 problem, where out = v[0] is linear) the error is absolute: the test inputs are
    standard normals, so the natural scale of every derivative is 1."""
    xs, refs = list(xs), list(refs)
    assert len(xs) == len(refs)
    names = names or [f"#{i}" for i in range(len(xs))]
    group_mag = max((r.detach().abs().max().item() for r in refs if r.numel()), default=0.0) or 1.0
    for x, r, n in zip(xs, refs, names):
        assert_within_tolerance(x, r, dtype, order, what=n, scale_if_zero=group_mag)


def generator(seed):
    return torch.Generator().manual_seed(seed)


def randn(shape, dtype=torch.float64, seed=0, device="cpu", requires_grad=False):
    """Standard normal drawn in float64 from a seeded generator, then rounded to `dtype`."""
    t = torch.randn(shape, generator=generator(seed), dtype=torch.float64).to(device=device, dtype=dtype)
    return t.requires_grad_(requires_grad)


def make_qkv(shape, dtype=torch.float64, seed=0, device="cpu", requires_grad=False):
    return tuple(randn(s, dtype, seed * 7919 + i, device, requires_grad)
                 for i, s in enumerate((shape.q, shape.k, shape.v)))


def to64(t, requires_grad=None):
    """A float64 leaf copy of t (same rounded values), optionally requiring grad."""
    rg = t.requires_grad if requires_grad is None else requires_grad
    return t.detach().to(torch.float64).requires_grad_(rg)


def ref_sdpa(q, k, v, is_causal=False, scale=None):
    """The oracle: F.scaled_dot_product_attention with the math backend (differentiable at any order)."""
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)


def composition_sdpa(q, k, v, is_causal=False, scale=None):
    """softmax(q k^T * scale, causal top-left) @ v, written out."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        visible = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~visible, float("-inf"))
    return torch.softmax(s, -1) @ v


@contextlib.contextmanager
def vmap_fallback_disabled():
    """Inside, an op without a vmap batching rule raises instead of looping per sample, and the
    fallback's 'There is a performance drop' warning is enabled (so either signal would show)."""
    fc = torch._C._functorch
    was_enabled = fc._is_vmap_fallback_enabled()
    fc._set_vmap_fallback_warning_enabled(True)
    fc._set_vmap_fallback_enabled(False)
    try:
        yield
    finally:
        fc._set_vmap_fallback_enabled(was_enabled)
        fc._set_vmap_fallback_warning_enabled(False)


def seed_of(*parts):
    """A reproducible seed from test parameters (Python's hash() of str is salted per process)."""
    import zlib
    return zlib.crc32(repr(parts).encode()) % 100_000
