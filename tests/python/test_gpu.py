"""CUDA: the reference backend (and "auto") against the float64 oracle in float32/float16/
bfloat16; 'explicit' refuses CUDA tensors; 'fused' is compared with the reference when this
build has it (theria.select_backend says so), otherwise refused with a clear message."""
import pytest
import torch

import theria
from sdpa_testing import (FIRST, FORWARD, SECOND, Shape, assert_all_within_tolerance, assert_within_tolerance,
                          make_qkv, randn, ref_sdpa, seed_of, to64)

pytestmark = pytest.mark.gpu

SHAPES = [Shape((2, 3), 17, 33, 16, 8), Shape((1, 2), 1, 9, 8, 16), Shape((2,), 40, 7, 32, 32)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
params = pytest.mark.parametrize
shapes = params("shape", SHAPES, ids=lambda s: s.id)
dtypes = params("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
causal = params("is_causal", [False, True], ids=["full", "causal"])


def _cuda_problem(shape, dtype, *salt):
    seed = seed_of(shape, str(dtype), *salt)
    x = tuple(t.cuda().requires_grad_() for t in make_qkv(shape, dtype, seed=seed))
    dout = randn(shape.out, dtype, seed=seed + 1, device="cuda")
    u = tuple(randn(t.shape, dtype, seed=seed + 2 + i, device="cuda") for i, t in enumerate(x))
    return x, dout, u


def _hvp(f, x, dout, u):
    g = torch.autograd.grad(f(*x), x, dout, create_graph=True)
    return torch.autograd.grad(sum((gi * ui).sum() for gi, ui in zip(g, u)), x)


@params("backend", ["reference", "auto"])
@dtypes
@causal
@shapes
def test_cuda_forward_backward_hvp(backend, dtype, is_causal, shape):
    x, dout, u = _cuda_problem(shape, dtype, backend, is_causal)
    f = lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)  # noqa: E731
    x64 = tuple(to64(t).cpu().requires_grad_() for t in x)
    ref_f = lambda q, k, v: ref_sdpa(q, k, v, is_causal=is_causal)  # noqa: E731

    out = f(*x)
    assert out.device.type == "cuda" and out.dtype == dtype
    assert_within_tolerance(out, ref_f(*x64), dtype, FORWARD, "out")

    grads = torch.autograd.grad(out, x, dout)
    ref_grads = torch.autograd.grad(ref_f(*x64), x64, to64(dout).cpu())
    assert_all_within_tolerance(grads, ref_grads, dtype, FIRST, ["dq", "dk", "dv"])

    h = _hvp(f, x, dout, u)
    h_ref = _hvp(ref_f, x64, to64(dout).cpu(), tuple(to64(t).cpu() for t in u))
    assert_all_within_tolerance(h, h_ref, dtype, SECOND, ["Hq", "Hk", "Hv"])


@causal
def test_cuda_forward_ad(is_causal):
    shape = SHAPES[0]
    x, _, t = _cuda_problem(shape, torch.float32, "jvp", is_causal)
    x = tuple(xi.detach() for xi in x)
    out, out_dot = torch.func.jvp(lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal), x, t)
    _, ref_dot = torch.func.jvp(lambda q, k, v: ref_sdpa(q, k, v, is_causal=is_causal),
                                tuple(to64(xi).cpu() for xi in x), tuple(to64(ti).cpu() for ti in t))
    assert_within_tolerance(out_dot, ref_dot, torch.float32, FIRST, "out_dot")


def test_cuda_explicit_refuses():
    x, _, _ = _cuda_problem(SHAPES[0], torch.float32, "explicit")
    with pytest.raises(RuntimeError, match=r"backend 'explicit' runs on CPU tensors only, got query on cuda"):
        theria.sdpa(*x, backend="explicit")
    with pytest.raises(RuntimeError, match=r"backend 'explicit' runs on CPU tensors only"):
        theria.select_backend(*x, backend="explicit")


@dtypes
@causal
def test_cuda_fused_or_refused(dtype, is_causal):
    shape = SHAPES[0]
    x, dout, u = _cuda_problem(shape, dtype, "fused", is_causal)
    try:  # (auto may prefer the reference even where fused serves: core::reference_beats_simt)
        theria.select_backend(*x, is_causal=is_causal, backend="fused")
    except RuntimeError as e:
        assert "backend 'fused' is not available" in str(e)
        with pytest.raises(RuntimeError, match=r"backend 'fused' is not available"):
            theria.sdpa(*x, is_causal=is_causal, backend="fused")
        return
    fused = lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, backend="fused")  # noqa: E731
    x64 = tuple(to64(t).cpu().requires_grad_() for t in x)
    ref_f = lambda q, k, v: ref_sdpa(q, k, v, is_causal=is_causal)  # noqa: E731
    out = fused(*x)
    assert_within_tolerance(out, ref_f(*x64), dtype, FORWARD, "fused out")
    grads = torch.autograd.grad(out, x, dout)
    ref_grads = torch.autograd.grad(ref_f(*x64), x64, to64(dout).cpu())
    assert_all_within_tolerance(grads, ref_grads, dtype, FIRST, ["dq", "dk", "dv"])
    h = _hvp(fused, x, dout, u)
    h_ref = _hvp(ref_f, x64, to64(dout).cpu(), tuple(to64(t).cpu() for t in u))
    assert_all_within_tolerance(h, h_ref, dtype, SECOND, ["Hq", "Hk", "Hv"])
