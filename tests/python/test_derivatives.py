"""Derivatives of theria.sdpa at orders 1-3 (reverse, forward, mixed) and of the primitive ops
torch.ops.theria.{sdpa_fwd, sdpa_bwd, sdpa_jvp, sdpa_bwd_jvp}, against the float64 oracle
(F.scaled_dot_product_attention, math backend) differentiated by PyTorch."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, jvp, vjp

import theria
from sdpa_testing import (FIRST, FORWARD, SECOND, THIRD, Shape, assert_all_within_tolerance,
                          assert_within_tolerance, make_qkv, randn, ref_sdpa, seed_of, to64)

F64 = torch.float64
NAMES = ("q", "k", "v")
SHAPES = [
    Shape((2, 3), 5, 7, 4, 3),      # L < S, E != Ev, 4-D
    Shape((3,), 9, 4, 5, 6),        # L > S, 3-D
    Shape((1, 2, 2), 1, 3, 2, 2),   # L = 1, 5-D
]
BACKENDS = ("reference", "explicit")

params = pytest.mark.parametrize
shapes = params("shape", SHAPES, ids=lambda s: s.id)
causal = params("is_causal", [False, True], ids=["full", "causal"])
backends = params("backend", BACKENDS)


def _problem(shape, backend, is_causal, *salt, dtype=F64):
    seed = seed_of(shape, backend, is_causal, *salt)
    q, k, v = make_qkv(shape, dtype, seed=seed, requires_grad=True)
    dout = randn(shape.out, dtype, seed=seed + 11)
    tangents = tuple(randn(x.shape, dtype, seed=seed + 20 + i) for i, x in enumerate((q, k, v)))
    return (q, k, v), dout, tangents


def _theria(backend, is_causal, scale=None):
    return lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, scale=scale, backend=backend)


def _ref(is_causal, scale=None):
    return lambda q, k, v: ref_sdpa(q, k, v, is_causal=is_causal, scale=scale)


def _leaves64(xs):
    return tuple(to64(x, requires_grad=True) for x in xs)


def _hvp_reverse(f, x, dout, u, create_graph=False):
    """Reverse-over-reverse: d/dx <grad_x <dout, f(x)>, u>."""
    out = f(*x)
    g = torch.autograd.grad(out, x, dout, create_graph=True)
    return torch.autograd.grad(sum((gi * ui).sum() for gi, ui in zip(g, u)), x, create_graph=create_graph)


# ----------------------------------------------------------------------------------------- order 1

@backends
@causal
@shapes
def test_backward(backend, is_causal, shape):
    x, dout, _ = _problem(shape, backend, is_causal)
    out = theria.sdpa(*x, is_causal=is_causal, backend=backend)
    grads = torch.autograd.grad(out, x, dout)
    x64 = _leaves64(x)
    ref_grads = torch.autograd.grad(ref_sdpa(*x64, is_causal=is_causal), x64, dout)
    assert_all_within_tolerance(grads, ref_grads, F64, FIRST, [f"d{n}" for n in NAMES])


@backends
@causal
@shapes
def test_jvp_forward_ad(backend, is_causal, shape):
    x, _, t = _problem(shape, backend, is_causal)
    x = tuple(xi.detach() for xi in x)
    with fwAD.dual_level():
        dual = [fwAD.make_dual(xi, ti) for xi, ti in zip(x, t)]
        out, out_dot = fwAD.unpack_dual(theria.sdpa(*dual, is_causal=is_causal, backend=backend))
    ref_out, ref_dot = jvp(_ref(is_causal), x, t)
    assert_within_tolerance(out, ref_out, F64, FORWARD, "primal")
    assert_within_tolerance(out_dot, ref_dot, F64, FIRST, "out_dot")


@backends
@causal
@shapes
def test_jvp_torch_func(backend, is_causal, shape):
    x, _, t = _problem(shape, backend, is_causal)
    x = tuple(xi.detach() for xi in x)
    out, out_dot = jvp(_theria(backend, is_causal), x, t)
    ref_out, ref_dot = jvp(_ref(is_causal), x, t)
    assert_within_tolerance(out, ref_out, F64, FORWARD, "primal")
    assert_within_tolerance(out_dot, ref_dot, F64, FIRST, "out_dot")


@backends
@params("which", [0, 1, 2], ids=["q_only", "k_only", "v_only"])
def test_jvp_single_tangent(backend, which):
    """Forward AD with only one input dual (the others plain tensors)."""
    shape = SHAPES[0]
    x, _, t = _problem(shape, backend, True, which)
    x = tuple(xi.detach() for xi in x)
    with fwAD.dual_level():
        args = [fwAD.make_dual(xi, ti) if i == which else xi for i, (xi, ti) in enumerate(zip(x, t))]
        out_dot = fwAD.unpack_dual(theria.sdpa(*args, is_causal=True, backend=backend)).tangent
    zt = [ti if i == which else torch.zeros_like(ti) for i, ti in enumerate(t)]
    _, ref_dot = jvp(_ref(True), x, tuple(zt))
    assert_within_tolerance(out_dot, ref_dot, F64, FIRST, "out_dot")


# ----------------------------------------------------------------------------------------- order 2

@backends
@causal
@shapes
@params("dout_requires_grad", [False, True], ids=["dout_const", "dout_grad"])
def test_double_backward_hvp(backend, is_causal, shape, dout_requires_grad):
    x, dout, u = _problem(shape, backend, is_causal, dout_requires_grad)
    dout = dout.requires_grad_(dout_requires_grad)
    wrt = x + (dout,) if dout_requires_grad else x

    def second(f, inputs, d):
        out = f(*inputs[:3])
        g = torch.autograd.grad(out, inputs[:3], d, create_graph=True)
        return torch.autograd.grad(sum((gi * ui).sum() for gi, ui in zip(g, u)), inputs)

    h = second(_theria(backend, is_causal), wrt, dout)
    wrt64 = _leaves64(wrt)
    h_ref = second(_ref(is_causal), wrt64, wrt64[3] if dout_requires_grad else dout)
    assert_all_within_tolerance(h, h_ref, F64, SECOND, ["Hq", "Hk", "Hv", "J u (d dout)"][: len(h)])


@backends
@causal
@shapes
def test_forward_over_reverse_hvp(backend, is_causal, shape):
    x, dout, u = _problem(shape, backend, is_causal)
    x = tuple(xi.detach() for xi in x)

    def loss(f):
        return lambda q, k, v: (f(q, k, v) * dout).sum()

    _, h_fwd = jvp(grad(loss(_theria(backend, is_causal)), argnums=(0, 1, 2)), x, u)
    _, h_ref = jvp(grad(loss(_ref(is_causal)), argnums=(0, 1, 2)), x, u)
    xr = tuple(xi.clone().requires_grad_(True) for xi in x)
    h_rev = _hvp_reverse(_theria(backend, is_causal), xr, dout, u)
    assert_all_within_tolerance(h_fwd, h_ref, F64, SECOND, [f"fwd-over-rev H{n} vs reference" for n in NAMES])
    assert_all_within_tolerance(h_fwd, h_rev, F64, SECOND, [f"fwd-over-rev H{n} vs rev-over-rev" for n in NAMES])


@backends
@causal
def test_forward_over_reverse_with_dout_tangent(backend, is_causal):
    """Forward AD through the backward op itself: tangent of (dq, dk, dv) along (u, dout_dot)."""
    shape = SHAPES[0]
    x, dout, u = _problem(shape, backend, is_causal)
    x = tuple(xi.detach() for xi in x)
    dd = randn(shape.out, seed=99)

    def vjp_of(f):
        def g(q, k, v, d):
            _, pullback = vjp(f, q, k, v)
            return pullback(d)
        return g

    _, t = jvp(vjp_of(_theria(backend, is_causal)), (*x, dout), (*u, dd))
    _, t_ref = jvp(vjp_of(_ref(is_causal)), (*x, dout), (*u, dd))
    assert_all_within_tolerance(t, t_ref, F64, SECOND, [f"d{n}_dot" for n in NAMES])


@backends
@causal
@params("scale", [None, 0.61])
def test_hvp_with_scale(backend, is_causal, scale):
    shape = SHAPES[1]
    x, dout, u = _problem(shape, backend, is_causal, scale)
    h = _hvp_reverse(_theria(backend, is_causal, scale), x, dout, u)
    x64 = _leaves64(x)
    h_ref = _hvp_reverse(_ref(is_causal, scale), x64, dout, u)
    assert_all_within_tolerance(h, h_ref, F64, SECOND, [f"H{n}" for n in NAMES])


# ----------------------------------------------------------------------------------------- order 3

@backends
@causal
@shapes
def test_third_order(backend, is_causal, shape):
    x, dout, u = _problem(shape, backend, is_causal)
    w = tuple(randn(xi.shape, seed=seed_of(shape, "w", i)) for i, xi in enumerate(x))

    def third(f, inputs):
        h = _hvp_reverse(f, inputs, dout, u, create_graph=True)
        return torch.autograd.grad(sum((hi * wi).sum() for hi, wi in zip(h, w)), inputs)

    t = third(_theria(backend, is_causal), x)
    t_ref = third(_ref(is_causal), _leaves64(x))
    assert_all_within_tolerance(t, t_ref, F64, THIRD, [f"T{n}" for n in NAMES])


# ------------------------------------------------------------------------------------ primitive ops

def _stats_ref(q, k, is_causal, scale):
    s = (q @ k.mT) * scale
    if is_causal:
        visible = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        s = s.masked_fill(~visible, float("-inf"))
    return torch.logsumexp(s, -1)


@backends
@causal
@shapes
def test_op_sdpa_fwd(backend, is_causal, shape):
    (q, k, v), _, _ = _problem(shape, backend, is_causal)
    q, k, v = q.detach(), k.detach(), v.detach()
    scale = shape.E ** -0.5
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, is_causal, scale, backend)
    assert lse.dtype == F64 and lse.shape == shape.q[:-1]
    assert_within_tolerance(out, ref_sdpa(q, k, v, is_causal), F64, FORWARD, "out")
    assert_within_tolerance(lse, _stats_ref(q, k, is_causal, scale), F64, FORWARD, "lse")


@backends
@causal
@shapes
def test_op_sdpa_bwd(backend, is_causal, shape):
    x, dout, _ = _problem(shape, backend, is_causal)
    q, k, v = (xi.detach() for xi in x)
    scale = shape.E ** -0.5
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, is_causal, scale, backend)
    *grads, dmask = torch.ops.theria.sdpa_bwd(q, k, v, out, lse, dout, is_causal, scale, backend)
    assert dmask.numel() == 0  # no mask gradient asked for
    x64 = _leaves64(x)
    ref = torch.autograd.grad(ref_sdpa(*x64, is_causal=is_causal), x64, dout)
    assert_all_within_tolerance(grads, ref, F64, FIRST, [f"d{n}" for n in NAMES])


TANGENT_SETS = [(True, True, True), (True, False, False), (False, True, False), (False, False, True),
                (False, True, True)]


def _tangent_id(mask):
    return "+".join(n for n, m in zip(NAMES, mask) if m) + "_dot"


@backends
@causal
@params("mask", TANGENT_SETS, ids=_tangent_id)
def test_op_sdpa_jvp(backend, is_causal, mask):
    shape = SHAPES[0]
    x, _, t = _problem(shape, backend, is_causal, mask)
    x = tuple(xi.detach() for xi in x)
    tangents = [ti if m else None for ti, m in zip(t, mask)]
    out, lse, out_dot = torch.ops.theria.sdpa_jvp(*x, *tangents, is_causal, shape.E ** -0.5, backend)
    zt = tuple(ti if m else torch.zeros_like(ti) for ti, m in zip(t, mask))
    ref_out, ref_dot = jvp(_ref(is_causal), x, zt)
    assert_within_tolerance(out, ref_out, F64, FORWARD, "out")
    assert_within_tolerance(lse, _stats_ref(x[0], x[1], is_causal, shape.E ** -0.5), F64, FORWARD, "lse")
    assert_within_tolerance(out_dot, ref_dot, F64, FIRST, "out_dot")


@backends
@causal
@shapes
@params("mask", TANGENT_SETS, ids=_tangent_id)
@params("with_dout_dot", [False, True], ids=["no_dout_dot", "dout_dot"])
def test_op_sdpa_bwd_jvp(backend, is_causal, shape, mask, with_dout_dot):
    x, dout, t = _problem(shape, backend, is_causal, mask, with_dout_dot)
    x = tuple(xi.detach() for xi in x)
    scale = shape.E ** -0.5
    dd = randn(shape.out, seed=seed_of(shape, mask, "dd")) if with_dout_dot else None
    out, lse = torch.ops.theria.sdpa_fwd(*x, is_causal, scale, backend)
    tangents = [ti if m else None for ti, m in zip(t, mask)]
    dq_dot, dk_dot, dv_dot, out_dot, _ = torch.ops.theria.sdpa_bwd_jvp(
        *x, out, lse, dout, *tangents, dd, is_causal, scale, backend)

    # oracle: PyTorch forward-over-reverse through F.sdpa (math), absent tangents as zeros
    def backward_of_ref(q, k, v, d):
        _, pullback = vjp(_ref(is_causal), q, k, v)
        return pullback(d)

    zt = tuple(ti if m else torch.zeros_like(ti) for ti, m in zip(t, mask))
    zdd = dd if dd is not None else torch.zeros_like(dout)
    _, ref_bwd_dot = jvp(backward_of_ref, (*x, dout), (*zt, zdd))
    _, ref_out_dot = jvp(_ref(is_causal), x, zt)
    assert_all_within_tolerance((dq_dot, dk_dot, dv_dot), ref_bwd_dot, F64, SECOND,
                                [f"d{n}_dot" for n in NAMES])
    assert_within_tolerance(out_dot, ref_out_dot, F64, FIRST, "out_dot")


# --------------------------------------------------------------------------- float32 explicit kernels

F32_SHAPES = [Shape((2, 3), 17, 23, 8, 5), Shape((2,), 70, 9, 4, 6)]


@causal
@params("shape", F32_SHAPES, ids=lambda s: s.id)
def test_float32_explicit_backward(is_causal, shape):
    x, dout, _ = _problem(shape, "explicit", is_causal, dtype=torch.float32)
    grads = torch.autograd.grad(theria.sdpa(*x, is_causal=is_causal, backend="explicit"), x, dout)
    assert all(g.dtype == torch.float32 for g in grads)
    x64 = _leaves64(x)
    ref = torch.autograd.grad(ref_sdpa(*x64, is_causal=is_causal), x64, to64(dout))
    assert_all_within_tolerance(grads, ref, torch.float32, FIRST, [f"d{n}" for n in NAMES])


@causal
@params("shape", F32_SHAPES, ids=lambda s: s.id)
def test_float32_explicit_hvp(is_causal, shape):
    x, dout, u = _problem(shape, "explicit", is_causal, dtype=torch.float32)
    h = _hvp_reverse(_theria("explicit", is_causal), x, dout, u)
    assert all(hi.dtype == torch.float32 for hi in h)
    h_ref = _hvp_reverse(_ref(is_causal), _leaves64(x), to64(dout), tuple(to64(ui) for ui in u))
    assert_all_within_tolerance(h, h_ref, torch.float32, SECOND, [f"H{n}" for n in NAMES])


@causal
def test_float32_explicit_jvp(is_causal):
    shape = F32_SHAPES[0]
    x, _, t = _problem(shape, "explicit", is_causal, dtype=torch.float32)
    x = tuple(xi.detach() for xi in x)
    _, out_dot = jvp(_theria("explicit", is_causal), x, t)
    _, ref_dot = jvp(_ref(is_causal), tuple(map(to64, x)), tuple(map(to64, t)))
    assert_within_tolerance(out_dot, ref_dot, torch.float32, FIRST, "out_dot")


@params("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@causal
def test_low_precision_explicit_backward(dtype, is_causal):
    shape = F32_SHAPES[0]
    x, dout, _ = _problem(shape, "explicit", is_causal, dtype=dtype)
    grads = torch.autograd.grad(theria.sdpa(*x, is_causal=is_causal, backend="explicit"), x, dout)
    assert all(g.dtype == dtype for g in grads)
    x64 = _leaves64(x)
    ref = torch.autograd.grad(ref_sdpa(*x64, is_causal=is_causal), x64, to64(dout))
    assert_all_within_tolerance(grads, ref, dtype, FIRST, [f"d{n}" for n in NAMES])


# ------------------------------------------------------------------------------ layouts and mixes

@backends
@causal
@params("layout", ["sum_loss", "transposed", "expanded_rows"])
def test_backward_with_strided_dout(backend, is_causal, layout):
    """dout as autograd hands it over: stride-0 from .sum(), transposed, or broadcast along rows."""
    shape = Shape((2, 3), 6, 5, 4, 7)
    x, _, _ = _problem(shape, backend, is_causal, layout)
    if layout == "sum_loss":
        dout = torch.ones(shape.out, dtype=F64)
        grads = torch.autograd.grad(theria.sdpa(*x, is_causal=is_causal, backend=backend).sum(), x)
    else:
        if layout == "transposed":
            dout = randn((2, 6, 3, 7), seed=5).transpose(1, 2)
        else:
            dout = randn((2, 3, 1, 7), seed=6).expand(shape.out)
        grads = torch.autograd.grad(theria.sdpa(*x, is_causal=is_causal, backend=backend), x, dout)
    x64 = _leaves64(x)
    ref = torch.autograd.grad(ref_sdpa(*x64, is_causal=is_causal), x64, dout.contiguous())
    assert_all_within_tolerance(grads, ref, F64, FIRST, [f"d{n}" for n in NAMES])


@backends
@causal
def test_reverse_over_forward(backend, is_causal):
    """grad of a function of the JVP: sdpa_jvp differentiated in reverse mode."""
    shape = SHAPES[0]
    x, _, t = _problem(shape, backend, is_causal)
    x = tuple(xi.detach() for xi in x)
    w = randn(shape.out, seed=7)

    def loss(f):
        return lambda q, k, v: (jvp(f, (q, k, v), t)[1] * w).sum()

    g = grad(loss(_theria(backend, is_causal)), argnums=(0, 1, 2))(*x)
    g_ref = grad(loss(_ref(is_causal)), argnums=(0, 1, 2))(*x)
    assert_all_within_tolerance(g, g_ref, F64, SECOND, [f"d{n} of <out_dot, w>" for n in NAMES])


@backends
@causal
def test_forward_ad_and_reverse_together(backend, is_causal):
    """Inputs that are dual and require grad: the output carries a tangent and a reverse graph."""
    shape = SHAPES[0]
    x, dout, t = _problem(shape, backend, is_causal)
    with fwAD.dual_level():
        dual = [fwAD.make_dual(xi, ti) for xi, ti in zip(x, t)]
        out = theria.sdpa(*dual, is_causal=is_causal, backend=backend)
        out_dot = fwAD.unpack_dual(out).tangent
        grads = torch.autograd.grad(fwAD.unpack_dual(out).primal, x, dout)
    x64 = _leaves64(x)
    ref_out = ref_sdpa(*x64, is_causal=is_causal)
    _, ref_dot = jvp(_ref(is_causal), tuple(xi.detach() for xi in x64), t)
    assert_within_tolerance(out_dot, ref_dot, F64, FIRST, "out_dot")
    assert_all_within_tolerance(grads, torch.autograd.grad(ref_out, x64, dout), F64, FIRST,
                                [f"d{n}" for n in NAMES])
