"""Bad inputs fail with an error that names the argument and the expected form, on every backend
and with or without autograd; theria.select_backend reports or refuses the backend."""
import math

import pytest
import torch

import theria
from sdpa_testing import Shape, make_qkv, randn

SHAPE = Shape((2, 3), 5, 7, 4, 6)
params = pytest.mark.parametrize
backends = params("backend", ["auto", "reference", "explicit"])
grad = params("requires_grad", [False, True], ids=["no_grad", "grad"])


def _qkv(requires_grad=False, dtype=torch.float64):
    return make_qkv(SHAPE, dtype, seed=1, requires_grad=requires_grad)


def _leaf(shape, dtype=torch.float64, requires_grad=False):
    return randn(shape, dtype, seed=2, requires_grad=requires_grad and dtype.is_floating_point)


# ------------------------------------------------------------------------------------------ shapes

@backends
@grad
def test_query_rank_too_small(backend, requires_grad):
    q = _leaf((4,), requires_grad=requires_grad)
    with pytest.raises(RuntimeError, match=r"query must have shape \(\.\.\., L, E\) with at least 2 dimensions, "
                                           r"got a 1-D tensor"):
        theria.sdpa(q, q, q, backend=backend)


@backends
@grad
def test_ranks_and_leading_sizes_broadcast_as_pytorch(backend, requires_grad):
    """theria.sdpa broadcasts leading sizes (and ranks) as F.scaled_dot_product_attention does; the primitive ops,
    which take broadcast operands, still refuse ranks that differ."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = _qkv(requires_grad)
    for args in ((q, k[0], v), (q, k, v[None]), (q, _leaf((2, 1, SHAPE.S, SHAPE.E), requires_grad=requires_grad), v)):
        with sdpa_kernel(SDPBackend.MATH):
            want = torch.nn.functional.scaled_dot_product_attention(*args)
        assert torch.allclose(theria.sdpa(*args, backend=backend), want, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match=r"key must have shape \(\.\.\., S, E\) with the same number of "
                                           r"dimensions as query \(4\), got a 3-D tensor"):
        torch.ops.theria.sdpa_fwd(q.detach(), k[0].detach(), v.detach(), False, 0.5, backend)


@backends
@grad
def test_leading_sizes_that_do_not_broadcast(backend, requires_grad):
    q, k, _ = _qkv(requires_grad)
    v = _leaf((3, 3, SHAPE.S, SHAPE.Ev), requires_grad=requires_grad)
    with pytest.raises(RuntimeError, match=r"leading \(batch/head\) sizes of query .* do not broadcast"):
        theria.sdpa(q, k, v, backend=backend)


@backends
@grad
def test_feature_size_e_differs(backend, requires_grad):
    q, _, v = _qkv(requires_grad)
    k = _leaf((2, 3, SHAPE.S, SHAPE.E + 1), requires_grad=requires_grad)
    with pytest.raises(RuntimeError, match=r"key must have the feature size E of query \(4\) in its last dim, "
                                           r"got key of shape \[2, 3, 7, 5\]"):
        theria.sdpa(q, k, v, backend=backend)


@backends
@grad
def test_length_s_differs(backend, requires_grad):
    q, k, _ = _qkv(requires_grad)
    v = _leaf((2, 3, SHAPE.S + 2, SHAPE.Ev), requires_grad=requires_grad)
    with pytest.raises(RuntimeError, match=r"value must have the length S of key \(7\) in dim -2, "
                                           r"got value of shape \[2, 3, 9, 6\]"):
        theria.sdpa(q, k, v, backend=backend)


# ------------------------------------------------------------------------------------------ dtypes

@backends
@params("which", ["query", "key", "value"])
@params("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
def test_non_floating_dtype(backend, which, dtype):
    x = dict(zip(("query", "key", "value"), _qkv()))
    x[which] = x[which].to(dtype)
    with pytest.raises(RuntimeError, match=fr"{which} must be a floating-point tensor \(float16, bfloat16, "
                                           r"float32 or float64\), got"):
        theria.sdpa(x["query"], x["key"], x["value"], backend=backend)


@backends
@grad
def test_mixed_dtypes(backend, requires_grad):
    q, k, v = _qkv(requires_grad)
    with pytest.raises(RuntimeError, match=r"query, key and value must have one dtype, got query Double, "
                                           r"key Float, value Double"):
        theria.sdpa(q, k.float(), v, backend=backend)


# -------------------------------------------------------------------------------------- arguments

@grad
def test_unknown_backend(requires_grad):
    q, k, v = _qkv(requires_grad)
    with pytest.raises(RuntimeError, match=r"unknown backend 'flash': expected one of 'auto', 'reference', "
                                           r"'explicit', 'fused'"):
        theria.sdpa(q, k, v, backend="flash")


@grad
def test_fused_refuses_cpu_tensors(requires_grad):
    q, k, v = _qkv(requires_grad)
    with pytest.raises(RuntimeError, match=r"backend 'fused' runs on CUDA tensors only, got query on cpu"):
        theria.sdpa(q, k, v, backend="fused")


@pytest.mark.gpu
def test_explicit_refuses_cuda_tensors():
    q, k, v = (x.cuda() for x in _qkv())
    with pytest.raises(RuntimeError, match=r"backend 'explicit' runs on CPU tensors only, got query on cuda"):
        theria.sdpa(q, k, v, backend="explicit")


@pytest.mark.gpu
def test_mixed_devices():
    q, k, v = _qkv()
    with pytest.raises(RuntimeError, match=r"query, key and value must be on one device"):
        theria.sdpa(q.cuda(), k, v.cuda(), backend="reference")


@backends
def test_dropout_rejected(backend):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"dropout_p must be 0.0 \(no dropout\), got 0.1"):
        theria.sdpa(q, k, v, dropout_p=0.1, backend=backend)


@backends
@grad
@params("scale", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_scale(backend, requires_grad, scale):
    q, k, v = _qkv(requires_grad)
    with pytest.raises(RuntimeError, match=r"scale must be a finite number, got"):
        theria.sdpa(q, k, v, scale=scale, backend=backend)


# ---------------------------------------------------------------------------------- primitive ops
#
# Each primitive op is called on three paths: the reference backend, the explicit kernels, and
# the explicit backend with inputs that require grad (sdpa_jvp and sdpa_bwd_jvp then take the
# "exact path", the reference composition, so that PyTorch can differentiate them).

def _paths():
    """(backend, requires_grad) cases: the reference backend, the explicit kernels, the exact path."""
    cases = [("reference", False), ("explicit", False), ("explicit", True)]
    return [pytest.param(b, g, id=f"{b}-{'grad' if g else 'no_grad'}") for b, g in cases]




def _bwd_args(requires_grad=False, **override):
    q, k, v = _qkv(requires_grad)
    scale = SHAPE.E ** -0.5
    out, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), False, scale, "explicit")
    args = dict(q=q, k=k, v=v, out=out, lse=lse, dout=torch.ones_like(out))
    args.update(override)
    return [args[n] for n in ("q", "k", "v", "out", "lse", "dout")] + [False, scale]


@params("backend,requires_grad", _paths())
@params("bad,expected", [
    (dict(lse=torch.zeros(2, 3, 5, dtype=torch.float32)), r"lse must be Double for Double inputs, got Float"),
    (dict(lse=torch.zeros(2, 3, 6, dtype=torch.float64)), r"lse must have shape \(\.\.\., L\) = \[2, 3, 5\], "
                                                          r"got \[2, 3, 6\]"),
    (dict(out=torch.zeros(2, 3, 5, 4, dtype=torch.float64)), r"out must have shape \[2, 3, 5, 6\], got "
                                                             r"\[2, 3, 5, 4\]"),
    (dict(dout=torch.zeros(2, 3, 5, 6, dtype=torch.float32)), r"dout must have the dtype of query \(Double\), "
                                                              r"got Float"),
    (dict(dout=torch.zeros(1, 3, 5, 6, dtype=torch.float64)), r"dout must have shape \[2, 3, 5, 6\], got "
                                                              r"\[1, 3, 5, 6\]"),
], ids=["lse_dtype", "lse_shape", "out_shape", "dout_dtype", "dout_broadcastable"])
def test_sdpa_bwd_checks_its_arguments(backend, requires_grad, bad, expected):
    with pytest.raises(RuntimeError, match=r"theria\.sdpa_bwd: " + expected):
        torch.ops.theria.sdpa_bwd(*_bwd_args(requires_grad, **bad), backend)


@params("backend,requires_grad", _paths())
@params("which", ["q_dot", "k_dot", "v_dot"])
@params("bad", ["wrong_last_dim", "broadcastable", "wrong_dtype"])
def test_sdpa_jvp_checks_tangents(backend, requires_grad, which, bad):
    q, k, v = _qkv(requires_grad)
    primal = dict(q_dot=q, k_dot=k, v_dot=v)[which]
    tangent = {"wrong_last_dim": torch.zeros(*primal.shape[:-1], primal.shape[-1] + 1, dtype=torch.float64),
               "broadcastable": torch.zeros(1, *primal.shape[1:], dtype=torch.float64),
               "wrong_dtype": torch.zeros(primal.shape, dtype=torch.float32)}[bad]
    tangents = dict(q_dot=None, k_dot=None, v_dot=None)
    tangents[which] = tangent
    expected = "must have the dtype of" if bad == "wrong_dtype" else "must have shape"
    with pytest.raises(RuntimeError, match=fr"theria\.sdpa_jvp: {which} {expected}"):
        torch.ops.theria.sdpa_jvp(q, k, v, *tangents.values(), False, 0.5, backend)


@params("backend,requires_grad", _paths())
@params("bad,expected", [
    ("dout_dot_dtype", r"dout_dot must have the dtype of dout"),
    ("dout_dot_broadcastable", r"dout_dot must have shape"),
    ("v_dot_shape", r"v_dot must have shape"),
    ("lse_dtype", r"lse must be Double for Double inputs"),
], ids=lambda x: x if x.isidentifier() else "")
def test_sdpa_bwd_jvp_checks_its_arguments(backend, requires_grad, bad, expected):
    args = _bwd_args(requires_grad)
    tangents = [None, None, None, None]
    if bad == "dout_dot_dtype":
        tangents[3] = torch.zeros(2, 3, 5, 6, dtype=torch.float32)
    elif bad == "dout_dot_broadcastable":
        tangents[3] = torch.zeros(2, 1, 5, 6, dtype=torch.float64)
    elif bad == "v_dot_shape":
        tangents[2] = torch.zeros(2, 3, 7, 5, dtype=torch.float64)
    else:
        args[4] = args[4].float()
    with pytest.raises(RuntimeError, match=r"theria\.sdpa_bwd_jvp: " + expected):
        torch.ops.theria.sdpa_bwd_jvp(*args[:6], *tangents, *args[6:], backend)


def test_tolerance_rejects_bad_order():
    with pytest.raises(RuntimeError, match=r"order must be 0 \(forward\) to 3, got 4"):
        theria.tolerance(torch.float32, 4)


def test_tolerance_rejects_integer_dtype():
    with pytest.raises(RuntimeError, match=r"no tolerance for dtype"):
        theria.tolerance(torch.int32, 0)


# --------------------------------------------------------------------------------- select_backend

def test_select_backend_cpu_auto_is_explicit():
    name, reason = theria.select_backend(*_qkv())
    assert name == "explicit"
    assert isinstance(reason, str) and "CPU" in reason


@params("backend", ["reference", "explicit"])
def test_select_backend_honours_a_request(backend):
    name, reason = theria.select_backend(*_qkv(), backend=backend)
    assert name == backend and reason.startswith("requested")


def test_select_backend_unknown():
    with pytest.raises(RuntimeError, match=r"unknown backend 'cudnn': expected one of"):
        theria.select_backend(*_qkv(), backend="cudnn")


def test_select_backend_fused_on_cpu():
    with pytest.raises(RuntimeError, match=r"backend 'fused' runs on CUDA tensors only"):
        theria.select_backend(*_qkv(), backend="fused")


def test_select_backend_checks_shapes():
    q, k, v = _qkv()
    with pytest.raises(RuntimeError, match=r"theria\.select_backend: key must have the feature size E"):
        theria.select_backend(q, k[..., :2], v)
