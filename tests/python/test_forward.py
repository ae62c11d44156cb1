"""Forward output of theria.sdpa against the float64 math-backend oracle, for every CPU backend,
dtype, causal mode and a range of odd shapes and layouts; large logits; NaN/Inf propagation."""
import math

import pytest
import torch

import theria
from sdpa_testing import (FORWARD, Shape, assert_within_tolerance, make_qkv, max_rel_err, randn, ref_sdpa, seed_of,
                          to64)

SHAPES = [
    Shape((2, 3), 1, 7, 5, 3),        # L = 1, 4-D
    Shape((2,), 5, 11, 4, 6),         # L < S, E != Ev, 3-D
    Shape((1, 2, 3), 13, 5, 3, 7),    # L > S, 5-D
    Shape((2, 1), 37, 37, 8, 8),      # L = S, crosses the 16-row query blocks
    Shape((1,), 19, 70, 4, 5),        # S > 64, crosses the 64-key tiles
    Shape((), 3, 2, 2, 1),            # plain 2-D inputs, Ev = 1
]

BACKENDS = ("reference", "explicit", "auto")


def _cases():
    for backend in BACKENDS:
        dtypes = [torch.float64, torch.float32]
        if backend != "reference":  # low precision is computed in float by the explicit kernels
            dtypes += [torch.bfloat16, torch.float16]
        for dtype in dtypes:
            yield backend, dtype


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("backend,dtype", list(_cases()), ids=lambda x: str(x).replace("torch.", ""))
def test_forward_matches_reference(backend, dtype, is_causal, shape):
    seed = seed_of(backend, str(dtype), is_causal, shape)
    q, k, v = make_qkv(shape, dtype, seed=seed)
    out = theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)
    assert out.shape == shape.out and out.dtype == dtype and out.device == q.device
    ref = ref_sdpa(to64(q), to64(k), to64(v), is_causal=is_causal)
    assert_within_tolerance(out, ref, dtype, FORWARD, f"{backend} {dtype} causal={is_causal} {shape.id}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_non_contiguous_inputs(backend, is_causal):
    B, L, S, H, E, Ev = 2, 7, 9, 3, 5, 4
    q = randn((B, L, H, E), seed=1).transpose(1, 2)  # (B, H, L, E), not contiguous
    k = randn((B, S, H, E), seed=2).transpose(1, 2)
    v = randn((B, S, H, Ev), seed=3).transpose(1, 2)
    assert not q.is_contiguous() and not k.is_contiguous() and not v.is_contiguous()
    out = theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)
    ref = ref_sdpa(q, k, v, is_causal=is_causal)
    assert_within_tolerance(out, ref, torch.float64, FORWARD, "transposed inputs")
    same = theria.sdpa(q.contiguous(), k.contiguous(), v.contiguous(), is_causal=is_causal, backend=backend)
    assert_within_tolerance(out, same, torch.float64, FORWARD, "transposed vs contiguous")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_expanded_inputs(backend, is_causal):
    B, H, L, S, E, Ev = 3, 2, 6, 5, 4, 3
    q = randn((B, H, L, E), seed=4)
    k = randn((1, H, S, E), seed=5).expand(B, H, S, E)      # stride 0 over the batch
    v = randn((B, 1, S, Ev), seed=6).expand(B, H, S, Ev)    # stride 0 over the heads
    out = theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)
    ref = ref_sdpa(q, k.contiguous(), v.contiguous(), is_causal=is_causal)
    assert_within_tolerance(out, ref, torch.float64, FORWARD, "expanded k/v")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [None, "default", 0.37, -0.8, 0.0, 3.0])
def test_scale(backend, scale):
    shape = Shape((2, 2), 5, 6, 9, 4)
    q, k, v = make_qkv(shape, seed=7)
    if scale == "default":
        scale = 1.0 / math.sqrt(shape.E)
    out = theria.sdpa(q, k, v, scale=scale, backend=backend)
    ref = ref_sdpa(q, k, v, scale=scale)
    assert_within_tolerance(out, ref, torch.float64, FORWARD, f"scale={scale}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_scale_is_inverse_sqrt_e(backend):
    q, k, v = make_qkv(Shape((2,), 4, 5, 9, 3), seed=8)
    default = theria.sdpa(q, k, v, backend=backend)
    explicit = theria.sdpa(q, k, v, scale=1.0 / 3.0, backend=backend)
    assert_within_tolerance(default, explicit, torch.float64, FORWARD, "scale=None vs 1/sqrt(E)")
    other = theria.sdpa(q, k, v, scale=0.5, backend=backend)
    assert max_rel_err(other, default) > 1e-3  # the scale is actually used


@pytest.mark.parametrize("backend,dtype", [(b, d) for b in BACKENDS for d in (torch.float64, torch.float32)]
                         + [("explicit", torch.bfloat16)], ids=lambda x: str(x).replace("torch.", ""))
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_large_logits(backend, dtype, is_causal):
    # Integer q, k in [-100, 100] with scale 1: every logit is an exact integer in every dtype
    # tested (|q.k| < 2^24 in float32 accumulation; the integers are exact in bfloat16 too), so
    # only the softmax's handling of magnitudes ~1e4 is measured. A naive exp(s) overflows.
    g = torch.Generator().manual_seed(9)
    shape = Shape((2, 2), 9, 12, 4, 5)
    q = torch.randint(-100, 101, shape.q, generator=g).to(dtype)
    k = torch.randint(-100, 101, shape.k, generator=g).to(dtype)
    v = randn(shape.v, dtype, seed=10)
    logits = to64(q) @ to64(k).mT
    assert logits.abs().max() > 1e4
    out = theria.sdpa(q, k, v, is_causal=is_causal, scale=1.0, backend=backend)
    assert torch.isfinite(out).all()
    ref = ref_sdpa(to64(q), to64(k), to64(v), is_causal=is_causal, scale=1.0)
    assert_within_tolerance(out, ref, dtype, FORWARD, "logits ~1e4")


def _nan_inf_pattern_matches(out, ref):
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), "NaN pattern differs from F.sdpa math"
    assert torch.equal(torch.isinf(out), torch.isinf(ref)), "Inf pattern differs from F.sdpa math"
    finite = torch.isfinite(ref)
    assert_within_tolerance(out[finite], ref[finite], out.dtype, FORWARD, "finite entries")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_nan_in_one_query_row(backend, is_causal):
    shape = Shape((2, 2), 6, 7, 4, 3)
    q, k, v = make_qkv(shape, seed=11)
    q[1, 0, 3, 2] = float("nan")
    out = theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)
    ref = ref_sdpa(q, k, v, is_causal=is_causal)
    _nan_inf_pattern_matches(out, ref)
    # exactly that one output row is NaN
    nan_rows = torch.isnan(out).any(-1)
    expected = torch.zeros_like(nan_rows)
    expected[1, 0, 3] = True
    assert torch.equal(nan_rows, expected)
    assert torch.isnan(out[1, 0, 3]).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf")], ids=["+inf", "-inf"])
def test_inf_in_a_key(backend, value):
    shape = Shape((2, 2), 6, 7, 4, 3)
    q, k, v = make_qkv(shape, seed=12)
    k[0, 1, 4, 0] = value
    out = theria.sdpa(q, k, v, backend=backend)
    ref = ref_sdpa(q, k, v)
    _nan_inf_pattern_matches(out, ref)
    # the poisoned rows are those whose logit for that key is +inf (inf - inf in the softmax)
    assert torch.isnan(out[0, 1]).any() and not torch.isnan(out[1]).any()
