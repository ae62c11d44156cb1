"""Finite-difference checks (torch.autograd.gradcheck / gradgradcheck) of theria.sdpa and of the
primitive ops, float64, small odd shapes. gradcheck's own defaults (eps=1e-6, atol=1e-5,
rtol=1e-3) are the finite-difference tolerances: central differences with eps=1e-6 on O(1)
inputs carry truncation + roundoff error ~1e-8..1e-10, far below them."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import theria
from sdpa_testing import Shape, make_qkv, randn, seed_of

SHAPE = Shape((1, 2), 3, 5, 4, 3)
SHAPE_LONG_Q = Shape((2,), 4, 2, 3, 2)   # L > S

params = pytest.mark.parametrize
backends = params("backend", ["explicit", "reference"])
causal = params("is_causal", [False, True], ids=["full", "causal"])
shapes = params("shape", [SHAPE, SHAPE_LONG_Q], ids=lambda s: s.id)


def _inputs(shape, *salt):
    return make_qkv(shape, seed=seed_of(shape, *salt), requires_grad=True)


@backends
@causal
@shapes
def test_gradcheck_sdpa(backend, is_causal, shape):
    f = lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)  # noqa: E731
    assert gradcheck(f, _inputs(shape, backend, is_causal), check_forward_ad=True, check_batched_grad=True)


@params("backend", ["explicit", "reference"])
@causal
def test_gradcheck_sdpa_batched_forward_grad(backend, is_causal):
    f = lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)  # noqa: E731
    assert gradcheck(f, _inputs(SHAPE, backend, is_causal, "bfg"), check_forward_ad=True,
                     check_backward_ad=False, check_batched_forward_grad=True)


@backends
@causal
@shapes
def test_gradgradcheck_sdpa(backend, is_causal, shape):
    f = lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)  # noqa: E731
    assert gradgradcheck(f, _inputs(shape, backend, is_causal), check_fwd_over_rev=True, check_rev_over_rev=True)


@backends
@causal
def test_gradcheck_sdpa_with_scale(backend, is_causal):
    f = lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, scale=0.83, backend=backend)  # noqa: E731
    assert gradcheck(f, _inputs(SHAPE, backend, is_causal, "scale"), check_forward_ad=True)


def _sdpa_bwd_of(backend, is_causal, scale):
    """(q, k, v, dout) -> (dq, dk, dv) through the primitive op, with out/lse recomputed from
    detached (q, k, v) inside: sdpa_bwd treats them as statistics of (q, k, v), not as inputs."""
    def f(q, k, v, dout):
        out, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), is_causal, scale, backend)
        return torch.ops.theria.sdpa_bwd(q, k, v, out, lse, dout, is_causal, scale, backend)[:3]
    return f


@backends
@causal
@shapes
def test_gradcheck_op_sdpa_bwd(backend, is_causal, shape):
    q, k, v = _inputs(shape, "bwd", backend, is_causal)
    dout = randn(shape.out, seed=seed_of(shape, "dout"), requires_grad=True)
    f = _sdpa_bwd_of(backend, is_causal, shape.E ** -0.5)
    assert gradcheck(f, (q, k, v, dout), check_forward_ad=True)


@backends
@causal
def test_gradgradcheck_op_sdpa_bwd(backend, is_causal):
    """Third order of sdpa overall: the derivative of sdpa_bwd's derivative (the exact path)."""
    shape = SHAPE
    q, k, v = _inputs(shape, "bwd2", backend, is_causal)
    dout = randn(shape.out, seed=seed_of(shape, "dout2"), requires_grad=True)
    f = _sdpa_bwd_of(backend, is_causal, shape.E ** -0.5)
    assert gradgradcheck(f, (q, k, v, dout), check_fwd_over_rev=True, check_rev_over_rev=True)


@backends
@causal
def test_gradcheck_op_sdpa_fwd(backend, is_causal):
    f = lambda q, k, v: torch.ops.theria.sdpa_fwd(q, k, v, is_causal, 0.5, backend)  # noqa: E731
    assert gradcheck(f, _inputs(SHAPE, "fwd", backend, is_causal), check_forward_ad=True)


@backends
@causal
def test_gradcheck_op_sdpa_jvp(backend, is_causal):
    shape = SHAPE
    inputs = _inputs(shape, "jvp", backend, is_causal) + tuple(
        randn(s, seed=seed_of("jvp-t", i), requires_grad=True) for i, s in enumerate((shape.q, shape.k, shape.v)))
    f = lambda q, k, v, qd, kd, vd: torch.ops.theria.sdpa_jvp(q, k, v, qd, kd, vd, is_causal, 0.5,  # noqa: E731
                                                                backend)
    assert gradcheck(f, inputs, check_forward_ad=True)


@backends
@causal
def test_gradcheck_op_sdpa_bwd_jvp(backend, is_causal):
    shape = SHAPE
    q, k, v = _inputs(shape, "bwdjvp", backend, is_causal)
    dout = randn(shape.out, seed=seed_of("bwdjvp-dout"), requires_grad=True)
    tangents = tuple(randn(s, seed=seed_of("bwdjvp-t", i), requires_grad=True)
                     for i, s in enumerate((shape.q, shape.k, shape.v, shape.out)))

    def f(q, k, v, dout, qd, kd, vd, dd):
        out, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), is_causal, 0.5, backend)
        return torch.ops.theria.sdpa_bwd_jvp(q, k, v, out, lse, dout, qd, kd, vd, dd, is_causal, 0.5, backend)[:4]

    assert gradcheck(f, (q, k, v, dout, *tangents), check_forward_ad=True)
