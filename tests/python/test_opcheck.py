"""torch.library.opcheck on every theria op: schema (no mutation/aliasing), autograd registration,
fake (meta) kernels against the real ones, and AOT dispatch with dynamic shapes."""
import pytest
import torch

from sdpa_testing import Shape, make_qkv, randn, seed_of

SHAPE = Shape((2, 3), 5, 7, 4, 3)
SCALE = SHAPE.E ** -0.5

params = pytest.mark.parametrize
backends = params("backend", ["explicit", "reference"])
causal = params("is_causal", [False, True], ids=["full", "causal"])
grad = params("requires_grad", [False, True], ids=["no_grad", "grad"])
dtypes = params("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=["f64", "f32", "bf16"])


def _qkv(requires_grad, dtype, *salt):
    return make_qkv(SHAPE, dtype, seed=seed_of(*salt), requires_grad=requires_grad)


def _stats(q, k, v, is_causal, backend):
    out, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), is_causal, SCALE, backend)
    return out, lse


def _opcheck(op, args):
    result = torch.library.opcheck(op, args, raise_exception=False)
    failed = {name: status for name, status in result.items() if status != "SUCCESS"}
    assert not failed, f"opcheck failures: {failed}"


@backends
@causal
@grad
@dtypes
def test_opcheck_sdpa(backend, is_causal, requires_grad, dtype):
    q, k, v = _qkv(requires_grad, dtype, "sdpa", backend, is_causal)
    _opcheck(torch.ops.theria.sdpa.default, (q, k, v, is_causal, None, backend))


@backends
def test_opcheck_sdpa_with_scale(backend):
    q, k, v = _qkv(True, torch.float64, "sdpa-scale")
    _opcheck(torch.ops.theria.sdpa.default, (q, k, v, False, 0.7, backend))


@backends
@causal
@grad
@dtypes
def test_opcheck_sdpa_fwd(backend, is_causal, requires_grad, dtype):
    q, k, v = _qkv(requires_grad, dtype, "fwd", backend, is_causal)
    _opcheck(torch.ops.theria.sdpa_fwd.default, (q, k, v, is_causal, SCALE, backend))


@backends
@causal
@grad
@params("with_tangents", [(True, True, True), (True, False, None)], ids=["all_tangents", "q_dot_only"])
def test_opcheck_sdpa_jvp(backend, is_causal, requires_grad, with_tangents):
    q, k, v = _qkv(requires_grad, torch.float64, "jvp", backend, is_causal)
    tangents = [randn(x.shape, seed=seed_of("jvp-t", i)) if w else None
                for i, (x, w) in enumerate(zip((q, k, v), with_tangents))]
    _opcheck(torch.ops.theria.sdpa_jvp.default, (q, k, v, *tangents, is_causal, SCALE, backend))


@backends
@causal
@grad
@dtypes
def test_opcheck_sdpa_bwd(backend, is_causal, requires_grad, dtype):
    q, k, v = _qkv(requires_grad, dtype, "bwd", backend, is_causal)
    out, lse = _stats(q, k, v, is_causal, backend)
    dout = randn(SHAPE.out, dtype, seed=seed_of("bwd-dout"), requires_grad=requires_grad)
    _opcheck(torch.ops.theria.sdpa_bwd.default, (q, k, v, out, lse, dout, is_causal, SCALE, backend))


@backends
@causal
@grad
@params("with_dout_dot", [False, True], ids=["no_dout_dot", "dout_dot"])
def test_opcheck_sdpa_bwd_jvp(backend, is_causal, requires_grad, with_dout_dot):
    q, k, v = _qkv(requires_grad, torch.float64, "bwdjvp", backend, is_causal)
    out, lse = _stats(q, k, v, is_causal, backend)
    dout = randn(SHAPE.out, seed=seed_of("bwdjvp-dout"), requires_grad=requires_grad)
    q_dot = randn(SHAPE.q, seed=seed_of("bwdjvp-q"))
    v_dot = randn(SHAPE.v, seed=seed_of("bwdjvp-v"))
    dout_dot = randn(SHAPE.out, seed=seed_of("bwdjvp-dd")) if with_dout_dot else None
    _opcheck(torch.ops.theria.sdpa_bwd_jvp.default,
             (q, k, v, out, lse, dout, q_dot, None, v_dot, dout_dot, is_causal, SCALE, backend))
