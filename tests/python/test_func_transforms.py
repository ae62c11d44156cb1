"""torch.func transforms (grad, jvp, vmap, functional_call, hessian) over theria.sdpa, each
against the same transform of F.scaled_dot_product_attention (math backend) in float64."""
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap

import theria
from sdpa_testing import (FIRST, FORWARD, SECOND, Shape, assert_all_within_tolerance, assert_within_tolerance,
                          make_qkv, randn, ref_sdpa, seed_of, vmap_fallback_disabled)

F64 = torch.float64
SHAPE = Shape((2, 3), 5, 7, 4, 3)
params = pytest.mark.parametrize
backends = params("backend", ["explicit", "reference"])
causal = params("is_causal", [False, True], ids=["full", "causal"])


def _attn(backend, is_causal):
    if backend == "F.sdpa":
        return lambda q, k, v: ref_sdpa(q, k, v, is_causal=is_causal)
    return lambda q, k, v: theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)


def _loss(attn, w):
    return lambda q, k, v: (attn(q, k, v) * w).sum()


@pytest.fixture
def no_vmap_fallback():
    """vmap must use theria's batching rules: the per-sample fallback raises, and its
    'There is a performance drop' warning would be recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with vmap_fallback_disabled():
            yield
    drops = [str(w.message) for w in caught if "There is a performance drop" in str(w.message)]
    assert not drops, drops


@backends
@causal
def test_grad(backend, is_causal):
    q, k, v = make_qkv(SHAPE, seed=seed_of("grad", backend, is_causal))
    w = randn(SHAPE.out, seed=1)
    g = grad(_loss(_attn(backend, is_causal), w), argnums=(0, 1, 2))(q, k, v)
    g_ref = grad(_loss(_attn("F.sdpa", is_causal), w), argnums=(0, 1, 2))(q, k, v)
    assert_all_within_tolerance(g, g_ref, F64, FIRST, ["dq", "dk", "dv"])


@backends
@causal
def test_jvp(backend, is_causal):
    x = make_qkv(SHAPE, seed=seed_of("jvp", backend, is_causal))
    t = make_qkv(SHAPE, seed=seed_of("jvp-t", backend, is_causal))
    out, out_dot = jvp(_attn(backend, is_causal), x, t)
    ref, ref_dot = jvp(_attn("F.sdpa", is_causal), x, t)
    assert_within_tolerance(out, ref, F64, FORWARD, "out")
    assert_within_tolerance(out_dot, ref_dot, F64, FIRST, "out_dot")


VMAP_CASES = {
    "all_dim0": ((0, 0, 0), 0),
    "key_unbatched": ((0, None, 0), 0),
    "query_dim1": ((1, 0, 0), 0),
    "value_dim2_out1": ((0, 0, 2), 1),
}


@backends
@causal
@params("case", list(VMAP_CASES))
def test_vmap(backend, is_causal, case, no_vmap_fallback):
    in_dims, out_dims = VMAP_CASES[case]
    n = 4
    base = make_qkv(SHAPE, seed=seed_of("vmap", backend, is_causal, case))
    batched = [x if d is None else torch.stack([x * (1 + 0.1 * i) for i in range(n)], d)
               for x, d in zip(base, in_dims)]
    out = vmap(_attn(backend, is_causal), in_dims=in_dims, out_dims=out_dims)(*batched)
    ref = torch.stack([ref_sdpa(*[x if d is None else x.select(d, i) for x, d in zip(batched, in_dims)],
                                is_causal=is_causal) for i in range(n)], out_dims)
    assert_within_tolerance(out, ref, F64, FORWARD, "vmap out")


@backends
@causal
def test_vmap_of_grad(backend, is_causal, no_vmap_fallback):
    n = 3
    shape = Shape((2,), 5, 6, 4, 3)
    batch = Shape((n, 2), 5, 6, 4, 3)
    q, k, v = make_qkv(batch, seed=seed_of("vmapgrad", backend, is_causal))
    w = randn(shape.out, seed=2)
    g = vmap(grad(_loss(_attn(backend, is_causal), w), argnums=(0, 1, 2)), in_dims=(0, 0, 0))(q, k, v)
    per_sample = [grad(_loss(_attn("F.sdpa", is_causal), w), argnums=(0, 1, 2))(q[i], k[i], v[i])
                  for i in range(n)]
    g_ref = [torch.stack(gs) for gs in zip(*per_sample)]
    assert_all_within_tolerance(g, g_ref, F64, FIRST, ["dq", "dk", "dv"])


@backends
@causal
def test_vmap_of_jvp(backend, is_causal, no_vmap_fallback):
    """Several tangents at once (one vmap over jvp: a batch of directional derivatives)."""
    x = make_qkv(SHAPE, seed=seed_of("vmapjvp", backend, is_causal))
    tq = torch.stack([randn(SHAPE.q, seed=30 + i) for i in range(3)])

    def dir_deriv(attn):
        return lambda t: jvp(lambda q: attn(q, x[1], x[2]), (x[0],), (t,))[1]

    d = vmap(dir_deriv(_attn(backend, is_causal)))(tq)
    d_ref = torch.stack([dir_deriv(_attn("F.sdpa", is_causal))(t) for t in tq])
    assert_within_tolerance(d, d_ref, F64, FIRST, "batched out_dot")


class TinyAttention(nn.Module):
    def __init__(self, dim, heads, attn):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, dtype=F64)
        self.proj = nn.Linear(dim, dim, dtype=F64)
        self.attn = attn

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = self.attn(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


@backends
@causal
def test_functional_call(backend, is_causal):
    torch.manual_seed(seed_of("module", backend, is_causal))
    model = TinyAttention(8, 2, _attn(backend, is_causal))
    reference = TinyAttention(8, 2, _attn("F.sdpa", is_causal))
    reference.load_state_dict(model.state_dict())
    weights = {n: p.detach() for n, p in model.named_parameters()}
    x = randn((2, 5, 8), seed=3)

    def loss(m):
        return lambda p, x: (functional_call(m, p, (x,)) ** 2).sum()

    out = functional_call(model, weights, (x,))
    assert_within_tolerance(out, functional_call(reference, weights, (x,)), F64, FORWARD, "module output")
    g = grad(loss(model))(weights, x)
    g_ref = grad(loss(reference))(weights, x)
    assert_all_within_tolerance([g[n] for n in weights], [g_ref[n] for n in weights], F64, FIRST, list(weights))


@backends
@causal
def test_hessian(backend, is_causal, no_vmap_fallback):
    shape = Shape((1, 2), 3, 4, 2, 3)
    q, k, v = make_qkv(shape, seed=seed_of("hessian", backend, is_causal))
    w = randn(shape.out, seed=4)

    def scalar(attn):
        return lambda q: (attn(q, k, v) * w).sum()

    h = hessian(scalar(_attn(backend, is_causal)))(q)
    h_ref = hessian(scalar(_attn("F.sdpa", is_causal)))(q)
    assert h.shape == (*shape.q, *shape.q)
    assert_within_tolerance(h, h_ref, F64, SECOND, "hessian wrt q")


@backends
def test_jacrev_jacfwd_agree(backend, no_vmap_fallback):
    shape = Shape((2,), 3, 4, 2, 2)
    q, k, v = make_qkv(shape, seed=seed_of("jac", backend))
    f = lambda k: theria.sdpa(q, k, v, is_causal=True, backend=backend)  # noqa: E731
    j_rev, j_fwd = jacrev(f)(k), jacfwd(f)(k)
    j_ref = jacrev(lambda k: ref_sdpa(q, k, v, is_causal=True))(k)
    assert_within_tolerance(j_rev, j_ref, F64, FIRST, "jacrev wrt k")
    assert_within_tolerance(j_fwd, j_ref, F64, FIRST, "jacfwd wrt k")


@params("backend", ["explicit", "reference"])
def test_autograd_functional_jacobian_forward_mode_vectorized(backend):
    shape = Shape((1, 2), 3, 5, 4, 3)
    q, k, v = make_qkv(shape, seed=seed_of("afj", backend))
    f = lambda q: theria.sdpa(q, k, v, backend=backend)  # noqa: E731
    j = torch.autograd.functional.jacobian(f, q, vectorize=True, strategy="forward-mode")
    j_ref = torch.autograd.functional.jacobian(lambda q: ref_sdpa(q, k, v), q)
    assert_within_tolerance(j, j_ref, F64, FIRST, "jacobian (forward-mode, vectorized)")
