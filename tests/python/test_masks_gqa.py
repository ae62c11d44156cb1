"""The rest of F.scaled_dot_product_attention's signature at every order (issue 16): boolean and additive masks,
grouped-query attention and broadcast leading sizes, against PyTorch's math SDPA in float64 -- forward, VJP, HVP
(double backward), JVP, forward-over-reverse -- on odd shapes, with gradcheck / gradgradcheck / forward-AD checks,
a float mask's own gradient, and the errors PyTorch raises. The GPU tests (fused kernels, 16-bit and float32)
compare with the float64 reference at the tolerance table's bounds."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import theria
from sdpa_testing import max_rel_err

params = pytest.mark.parametrize
CPU_BACKENDS = ["reference", "explicit"]


def math_sdpa(*args, **kw):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(*args, **kw)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rand(shape, seed, dtype=torch.float64):
    return torch.randn(shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def key_padding(B, S, keep):
    """(B, 1, 1, S): batch element b keeps its first keep[b] keys."""
    m = torch.zeros(B, 1, 1, S, dtype=torch.bool)
    for b, n in enumerate(keep):
        m[b, ..., :n] = True
    return m


def cases(L=5, S=7, E=8):
    """name -> (q shape, k shape, v shape, mask maker (or None), sdpa keyword arguments); L, S, E: the query and
    key lengths and the head dim (value head dims stay below E), smaller for the finite-difference checks."""
    B, Hq = 2, 6
    Ev = E - 3
    full = lambda: torch.rand(B, Hq, L, S, generator=gen(9)) > 0.35  # noqa: E731
    row_hidden = lambda: full().index_put_((torch.tensor([0]), torch.tensor([1]), torch.tensor([2])),  # noqa: E731
                                           torch.tensor(False))
    return {
        "gqa-3": ((B, Hq, L, E), (B, 2, S, E), (B, 2, S, Ev), None, dict(enable_gqa=True)),
        "mqa": ((B, Hq, L, E), (B, 1, S, E), (B, 1, S, Ev), None, dict(enable_gqa=True)),
        "key-padding": ((B, 3, L, E), (B, 3, S, E), (B, 3, S, E), lambda: key_padding(B, S, [S, 3]), {}),
        "gqa+key-padding": ((B, Hq, L, E), (B, 3, S, E), (B, 3, S, E), lambda: key_padding(B, S, [S - 3, S]),
                            dict(enable_gqa=True)),
        "full-bool+hidden-row": ((B, Hq, L, E), (B, Hq, S, E), (B, Hq, S, E), row_hidden, {}),
        "per-row": ((B, 3, L, E), (B, 3, S, E), (B, 3, S, E), lambda: torch.rand(B, 1, L, 1, generator=gen(3)) > 0.3,
                    {}),
        "bias-heads": ((B, 3, L, E), (B, 3, S, E), (B, 3, S, E - 2), lambda: rand((1, 3, L, S), 4), dict(scale=-0.6)),
        "bias-2d+gqa": ((B, Hq, L, E), (B, 2, S, E), (B, 2, S, E), lambda: rand((L, S), 5), dict(enable_gqa=True)),
        "bias-inf": ((B, 2, L, E), (B, 2, S, E), (B, 2, S, E),
                     lambda: rand((B, 1, L, S), 6).masked_fill(key_padding(B, S, [2, S - 1]).logical_not(),
                                                                float("-inf")),
                     {}),
        "bias-full": ((B, 3, L, E), (B, 3, S, E), (B, 3, S, E), lambda: rand((B, 3, L, S), 11), {}),
        "bias-keys+gqa": ((B, Hq, L, E), (B, 2, S, E), (B, 2, S, E), lambda: rand((B, 1, 1, S), 12),
                          dict(enable_gqa=True)),
        "broadcast": ((2, 4, L, E), (1, 4, S, E), (2, 1, S, E), None, {}),
        "ranks": ((4, L, E), (2, 4, S, E), (2, 4, S, E), None, dict(scale=0.0)),
        "3-leading+mask": ((2, 3, 2, L, E), (2, 3, 1, S, E), (2, 3, 1, S, E),
                           lambda: torch.rand(2, 1, 1, L, S, generator=gen(7)) > 0.3, dict(enable_gqa=True)),
    }


CASES = cases()
# The finite-difference checks' cost grows with the square of the inputs' size: the same cases, smaller.
SMALL_CASES = cases(L=3, S=4, E=4)


def inputs(case, dtype=torch.float64, device="cpu", table=CASES):
    qs, ks, vs, mask, kw = table[case]
    q, k, v = (rand(s, i, dtype).to(device) for i, s in enumerate((qs, ks, vs)))
    m = mask() if mask is not None else None
    if m is not None:
        m = m.to(device) if m.dtype == torch.bool else m.to(device, dtype)
    return q, k, v, m, kw


def orders(attn, *inputs, seed=10):
    """Forward, VJP, HVP (double backward along u) and JVP of attn at its inputs (q, k, v, and a float mask where it
    is differentiated too), as one flat list."""
    x = [t.detach().clone().requires_grad_() for t in inputs]
    out = attn(*x)
    dout = rand(out.shape, seed, out.dtype).to(out.device)
    grads = torch.autograd.grad(out, x, dout, create_graph=True)
    u = [rand(t.shape, seed + 1 + i, t.dtype).to(t.device) for i, t in enumerate(x)]
    hvp = torch.autograd.grad(grads, x, u)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(t.detach(), d) for t, d in zip(inputs, u)]
        jvp = fwAD.unpack_dual(attn(*duals)).tangent
    return [out, *grads, *hvp, jvp]


@params("backend", CPU_BACKENDS)
@params("case", list(CASES))
def test_every_order_equals_the_math_backend(case, backend):
    q, k, v, m, kw = inputs(case)
    got = orders(lambda a, b, c: theria.sdpa(a, b, c, attn_mask=m, backend=backend, **kw), q, k, v)
    want = orders(lambda a, b, c: math_sdpa(a, b, c, attn_mask=m, **kw), q, k, v)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"result {i}: shape {tuple(g.shape)} vs {tuple(w.shape)}"
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12), f"result {i}: max error {(g - w).abs().max():.3e}"


@params("backend", CPU_BACKENDS)
@params("case", ["gqa+key-padding", "bias-heads", "3-leading+mask", "broadcast"])
def test_gradcheck_gradgradcheck_and_forward_ad(case, backend):
    q, k, v, m, kw = inputs(case, table=SMALL_CASES)
    x = [t.requires_grad_() for t in (q, k, v)]
    f = lambda a, b, c: theria.sdpa(a, b, c, attn_mask=m, backend=backend, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(f, x, check_forward_ad=True, check_batched_grad=False)
    assert torch.autograd.gradgradcheck(f, x, check_fwd_over_rev=True, check_batched_grad=False)


@params("backend", CPU_BACKENDS)
def test_a_fully_masked_row_gives_zeros_and_zero_gradients_as_pytorch_math(backend):
    q, k, v, _, _ = inputs("key-padding")
    m = key_padding(2, 7, [7, 0])  # batch element 1 sees no key at all
    x = [t.requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, attn_mask=m, backend=backend)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    grads = torch.autograd.grad(out.pow(2).sum() + out.sum(), x, create_graph=True)
    assert torch.equal(grads[0][1], torch.zeros_like(grads[0][1]))
    hvp = torch.autograd.grad(sum(g.sum() for g in grads), x)
    assert all(torch.isfinite(h).all() for h in hvp) and torch.equal(hvp[0][1], torch.zeros_like(hvp[0][1]))
    want = math_sdpa(*x, attn_mask=m)
    assert torch.allclose(out, want, rtol=1e-12, atol=1e-14)


BIAS_CASES = ["bias-heads", "bias-2d+gqa", "bias-inf", "bias-full", "bias-keys+gqa"]


def mask_orders(attn, q, k, v, m):
    """orders() with a float mask among the differentiated inputs: the gradients of (q, k, v, mask), the double
    backward along u over all four (the mask's row and column of the Hessian included), the JVP along u."""
    return orders(attn, q, k, v, m, seed=20)


MASK_ORDER_LABELS = ["out", "dq", "dk", "dv", "dmask", "hvp_q", "hvp_k", "hvp_v", "hvp_mask", "jvp"]


@params("backend", CPU_BACKENDS)
@params("case", BIAS_CASES)
def test_a_float_mask_that_requires_grad_every_order_equals_the_math_backend(case, backend):
    """The mask's gradient dS (summed over the dims it broadcasts over), its tangent folded into the logits' and the
    mixed second derivatives, from the kernels: equal to PyTorch's math SDPA; auto keeps its backend and says why."""
    q, k, v, m, kw = inputs(case)
    m.requires_grad_()
    name, reason = theria.select_backend(q, k, v, attn_mask=m, enable_gqa=kw.get("enable_gqa", False))
    assert name == "explicit" and "attn_mask requires grad: the kernels write its gradient" in reason
    got = mask_orders(lambda a, b, c, d: theria.sdpa(a, b, c, attn_mask=d, backend=backend, **kw), q, k, v, m)
    want = mask_orders(lambda a, b, c, d: math_sdpa(a, b, c, attn_mask=d, **kw), q, k, v, m)
    for label, g, w in zip(MASK_ORDER_LABELS, got, want):
        assert g.shape == w.shape, f"{label}: shape {tuple(g.shape)} vs {tuple(w.shape)}"
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12), f"{label}: max error {(g - w).abs().max():.3e}"


def test_the_explicit_kernels_differentiate_the_mask_through_theria_nodes():
    """With a mask that requires grad the explicit backend still records theria's nodes (no L x S graph), and the
    mask is their input: its gradient comes out of sdpa_bwd, the double backward's out of sdpa_bwd_jvp."""
    q, k, v, m, kw = inputs("bias-heads")
    x = [t.requires_grad_() for t in (q, k, v, m)]
    out = theria.sdpa(*x, backend="explicit", **kw)
    assert out.grad_fn.name() == "theria::SdpaBackward" and len(out.grad_fn.next_functions) == 4
    grads = torch.autograd.grad(out.sum(), x, create_graph=True)
    assert grads[3].grad_fn.name() == "theria::SdpaBwdBackward" and len(grads[3].grad_fn.next_functions) == 5


@params("backend", CPU_BACKENDS)
@params("case", ["bias-heads", "bias-2d+gqa", "bias-keys+gqa"])
def test_a_float_mask_gradcheck_gradgradcheck_and_forward_ad(case, backend):
    q, k, v, m, kw = inputs(case, table=SMALL_CASES)
    x = [t.requires_grad_() for t in (q, k, v, m)]
    f = lambda a, b, c, d: theria.sdpa(a, b, c, attn_mask=d, backend=backend, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(f, x, check_forward_ad=True, check_batched_grad=False)
    assert torch.autograd.gradgradcheck(f, x, check_fwd_over_rev=True, check_batched_grad=False)


def test_third_order_through_a_float_mask():
    """Beyond second order the exact path (the reference composition) differentiates the mask too."""
    q, k, v, m, kw = inputs("bias-2d+gqa")
    x = [t.requires_grad_() for t in (q, k, v, m)]

    def third(attn):
        g1 = torch.autograd.grad(attn(*x).pow(2).sum(), x, create_graph=True)
        g2 = torch.autograd.grad(sum((g * g).sum() for g in g1), x, create_graph=True)
        return torch.autograd.grad(sum(g.sum() for g in g2), x)

    got = third(lambda a, b, c, d: theria.sdpa(a, b, c, attn_mask=d, backend="explicit", **kw))
    want = third(lambda a, b, c, d: math_sdpa(a, b, c, attn_mask=d, **kw))
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-11) for a, b in zip(got, want))


@params("backend", CPU_BACKENDS)
def test_the_ops_give_the_mask_gradient_and_its_tangent_only_when_asked(backend):
    """sdpa_bwd(mask_grad=True) returns dS summed to the mask's shape, sdpa_bwd_jvp its tangent along the mask's tangent
    too; without mask_grad an empty tensor stands there. A vmapped call gives each sample's mask gradient."""
    q, k, v, m, _ = inputs("bias-heads")
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, False, 0.4, backend, m)
    dout = rand(out.shape, 30)
    got = torch.ops.theria.sdpa_bwd(q, k, v, out, lse, dout, False, 0.4, backend, m, True)
    want = torch.ops.theria.sdpa_bwd(q, k, v, out, lse, dout, False, 0.4, "reference", m, True)
    assert got[3].shape == m.shape and all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(got, want))
    assert torch.ops.theria.sdpa_bwd(q, k, v, out, lse, dout, False, 0.4, backend, m)[3].numel() == 0
    m_dot = rand(m.shape, 31)
    got = torch.ops.theria.sdpa_bwd_jvp(q, k, v, out, lse, dout, None, None, None, None, False, 0.4, backend, m, m_dot,
                                        True)
    x = [t.detach().clone().requires_grad_() for t in (q, k, v, m)]
    grads = torch.autograd.grad(math_sdpa(*x[:3], attn_mask=x[3], scale=0.4), x, dout, create_graph=True)
    want = torch.autograd.grad(grads[3], x, m_dot)  # the Hessian is symmetric: the mask row is the tangent of all
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(got[:3], want[:3]))
    assert torch.allclose(got[4], want[3], rtol=1e-10, atol=1e-12)
    per_sample = torch.vmap(lambda d: torch.ops.theria.sdpa_bwd(q, k, v, out, lse, d, False, 0.4, backend, m, True)[3])
    ref = torch.ops.theria.sdpa_bwd(q, k, v, out, lse, dout, False, 0.4, "reference", m, True)[3]
    got = per_sample(torch.stack([dout, 2 * dout, -dout]))  # dS is linear in dout
    assert torch.allclose(got, torch.stack([ref, 2 * ref, -ref]), rtol=1e-10, atol=1e-12)


def test_third_order_with_a_mask_and_grouped_heads():
    q, k, v, m, kw = inputs("gqa+key-padding")
    x = [t.requires_grad_() for t in (q, k, v)]

    def third(attn):
        out = attn(*x)
        g1 = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        g2 = torch.autograd.grad(sum((g * g).sum() for g in g1), x, create_graph=True)
        return torch.autograd.grad(sum(g.sum() for g in g2), x)

    got = third(lambda a, b, c: theria.sdpa(a, b, c, attn_mask=m, backend="explicit", **kw))
    want = third(lambda a, b, c: math_sdpa(a, b, c, attn_mask=m, **kw))
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-11) for a, b in zip(got, want))


def test_grouped_heads_are_summed_in_the_kernels_not_expanded():
    """The explicit backend's dK of a grouped-query call has the key's own Hkv heads straight from the kernel: the
    autograd graph holds theria's nodes and no repeat or expand of the key."""
    q, k, v, m, kw = inputs("gqa-3")
    x = [t.requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, backend="explicit", **kw)
    report = theria.inspect_graph(out.sum())
    names = [name for name, _ in report.node_names]
    assert report.sdpa_nodes == 1
    assert not any("Repeat" in n or "Index" in n or "Expand" in n for n in names), names


def test_vmap_over_a_batched_mask():
    q, k, v, _, _ = inputs("key-padding")
    masks = torch.rand(4, 2, 1, 5, 7, generator=gen(8)) > 0.3
    got = torch.vmap(lambda m: theria.sdpa(q, k, v, attn_mask=m, backend="explicit"))(masks)
    want = torch.stack([math_sdpa(q, k, v, attn_mask=m) for m in masks])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)


def test_opcheck_with_a_mask_and_grouped_heads():
    q, k, v, m, kw = inputs("gqa+key-padding")
    for t in (q, k, v):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.theria.sdpa.default, (q, k, v, False, None, "explicit", m, True))
    out, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), False, 0.3, "explicit", m)
    dout = rand(out.shape, 3)
    torch.library.opcheck(torch.ops.theria.sdpa_bwd.default, (q, k, v, out, lse, dout, False, 0.3, "explicit", m))


@params("backend", CPU_BACKENDS)
def test_opcheck_with_a_float_mask_that_requires_grad(backend):
    q, k, v, m, kw = inputs("bias-keys+gqa")
    for t in (q, k, v, m):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.theria.sdpa.default, (q, k, v, False, None, backend, m, True))
    out, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), False, 0.3, backend, m.detach())
    dout, m_dot = rand(out.shape, 3), rand(m.shape, 4)
    torch.library.opcheck(torch.ops.theria.sdpa_jvp.default, (q, k, v, None, None, None, False, 0.3, backend, m, m_dot))
    torch.library.opcheck(torch.ops.theria.sdpa_bwd.default,
                          (q, k, v, out, lse, dout, False, 0.3, backend, m, True))
    torch.library.opcheck(torch.ops.theria.sdpa_bwd_jvp.default,
                          (q, k, v, out, lse, dout, None, None, None, None, False, 0.3, backend, m, m_dot, True))


# ------------------------------------------------------------------------------------------ errors

def test_a_mask_with_is_causal_raises_as_pytorch_does():
    q, k, v, m, _ = inputs("key-padding")
    with pytest.raises(RuntimeError, match=r"attn_mask must not be set when is_causal=True"):
        theria.sdpa(q, k, v, attn_mask=m, is_causal=True)
    with pytest.raises(RuntimeError):
        math_sdpa(q, k, v, attn_mask=m, is_causal=True)


@params("bad, message", [
    (lambda q: torch.ones(5, 7, dtype=torch.int64), r"attn_mask must be a bool tensor .* or a float tensor of query's"),
    (lambda q: torch.ones(5, 7, dtype=torch.float32), r"attn_mask must be a bool tensor .* got Float"),
    (lambda q: torch.ones(5, 6, dtype=torch.bool), r"attn_mask must be broadcastable to \(\.\.\., L, S\) = \[2, 3, 5, 7\]"),
    (lambda q: torch.ones(4, 2, 3, 5, 7, dtype=torch.bool), r"attn_mask must be broadcastable"),
], ids=["int", "float32-for-float64", "wrong-S", "too-many-dims"])
def test_a_bad_mask_is_named(bad, message):
    q, k, v, _, _ = inputs("key-padding")
    with pytest.raises(RuntimeError, match=message):
        theria.sdpa(q, k, v, attn_mask=bad(q), backend="explicit")


@params("backend", CPU_BACKENDS)
def test_a_mask_derivative_asked_of_a_boolean_or_absent_mask_is_refused(backend):
    q, k, v, m, _ = inputs("key-padding")
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, False, 0.4, backend, m)
    with pytest.raises(RuntimeError, match=r"theria\.sdpa_bwd: mask_grad \(a mask's gradient\) needs a float "
                                           r"attn_mask, got a boolean mask"):
        torch.ops.theria.sdpa_bwd(q, k, v, out, lse, out, False, 0.4, backend, m, True)
    with pytest.raises(RuntimeError, match=r"theria\.sdpa_jvp: mask_dot \(a mask's tangent\) needs a float attn_mask, "
                                           r"got none"):
        torch.ops.theria.sdpa_jvp(q, k, v, None, None, None, False, 0.4, backend, None, torch.zeros(5, 7,
                                                                                                   dtype=q.dtype))
    bias = rand((2, 1, 5, 7), 5)
    with pytest.raises(RuntimeError, match=r"theria\.sdpa_bwd_jvp: mask_dot must have shape \[2, 1, 5, 7\], got "
                                           r"\[1, 1, 5, 7\]"):
        torch.ops.theria.sdpa_bwd_jvp(q, k, v, out, lse, out, None, None, None, None, False, 0.4, backend, bias,
                                      bias[:1], True)


def test_grouped_heads_must_divide_and_need_enable_gqa():
    q, k, v, _, _ = inputs("gqa-3")
    with pytest.raises(RuntimeError, match=r"do not broadcast \(for fewer key/value heads pass enable_gqa=True\)"):
        theria.sdpa(q, k, v)
    with pytest.raises(RuntimeError, match=r"with enable_gqa the number of heads .* must be equal and divide query's, "
                                           r"got query 6, key 4, value 4"):
        theria.sdpa(q, torch.zeros(2, 4, 7, 8, dtype=q.dtype), torch.zeros(2, 4, 7, 5, dtype=q.dtype), enable_gqa=True)
    with pytest.raises(RuntimeError, match=r"enable_gqa needs query, key and value with a heads dim"):
        theria.sdpa(q[0, 0], k[0, 0], v[0, 0], enable_gqa=True)


# ------------------------------------------------------------------------------------------ GPU

GPU_CASES = {
    # name: (B, Hq, Hkv, L, S, D, mask kind)
    "gqa": (2, 8, 2, 131, 97, 64, None),
    "gqa-d32+padding": (3, 6, 2, 45, 170, 32, "padding"),
    "gqa-causal": (2, 8, 2, 150, 150, 64, "causal"),
    "gqa-causal-d128": (1, 6, 3, 130, 200, 128, "causal"),
    "gqa-d128": (1, 4, 1, 70, 200, 128, None),
    "key-padding": (3, 4, 4, 100, 150, 64, "padding"),
    "gqa+padding-d128": (2, 6, 3, 77, 129, 128, "padding"),
    "bool-full": (2, 2, 2, 64, 90, 32, "full"),
    "bias": (2, 4, 2, 60, 70, 96, "bias"),
    # Whole key blocks hidden (skipped in the forward, whole backward CTAs with nothing to add) and partly hidden.
    "padding-blocks-d128": (2, 4, 2, 200, 300, 128, "half"),
    "padding-blocks-d64": (2, 2, 2, 150, 333, 64, "half"),
    # A per-key mask that differs per head, under grouped-query attention (the per-element path).
    "head-padding+gqa": (2, 4, 2, 90, 140, 64, "heads"),
    # Masks that vary by query, classified a block at a time from their tile map: whole blocks hidden (skipped, their
    # operands not loaded), plain (nothing folded) and mixed, with rows that see no key, and maps per batch element
    # and per head.
    "causal-padding": (3, 4, 4, 300, 300, 64, "causal-padding"),
    "causal-padding-d128": (2, 4, 2, 200, 200, 128, "causal-padding"),
    "documents+gqa": (2, 8, 2, 257, 257, 128, "documents"),
    "window-bias+gqa": (1, 4, 2, 333, 290, 32, "window"),
}


def causal_padding(B, L, S, pad):
    """(B, 1, L, S) bool, as a Hugging Face decoder passes a left-padded batch: query i sees keys j <= i, and batch
    element b's first pad[b] keys are padding (its first pad[b] queries see no key at all)."""
    m = torch.ones(L, S, dtype=torch.bool).tril().expand(B, 1, L, S).clone()
    for b, n in enumerate(pad):
        m[b, ..., :n] = False
    return m


def documents(B, L, lengths):
    """(B, 1, L, L) bool, block diagonal: batch element b packs documents of lengths[b] (the rest of L is one more)."""
    m = torch.zeros(B, 1, L, L, dtype=torch.bool)
    for b, ls in enumerate(lengths):
        start = 0
        for n in list(ls) + [L - sum(ls)]:
            m[b, 0, start:start + n, start:start + n] = True
            start += n
    return m


def window(H, L, S, widths, dtype):
    """(1, H, L, S) additive: a small bias where |i - j| < widths[h], -inf elsewhere (a sliding window per head)."""
    i, j = torch.arange(L)[:, None], torch.arange(S)[None, :]
    m = torch.full((1, H, L, S), float("-inf"), dtype=torch.float64)
    for h, w in enumerate(widths):
        near = (i - j).abs() < w
        m[0, h][near] = 0.1 * torch.cos((i - j).double()).expand(L, S)[near]
    return m.to(dtype)


def gpu_inputs(case, dtype):
    B, Hq, Hkv, L, S, D, kind = GPU_CASES[case]
    q, k, v = (rand(s, i, dtype).cuda() for i, s in enumerate(((B, Hq, L, D), (B, Hkv, S, D), (B, Hkv, S, D))))
    m = None
    if kind == "padding":
        m = key_padding(B, S, [S - 7 * b for b in range(B)]).cuda()
        m[-1] = False  # one batch element sees no key: zeros, as PyTorch math
    elif kind == "full":
        m = (torch.rand(B, Hq, L, S, generator=gen(5)) > 0.4).cuda()
    elif kind == "bias":
        m = rand((1, Hq, L, S), 6, dtype).cuda()
    elif kind == "half":
        m = key_padding(B, S, [S, 100]).cuda()
    elif kind == "heads":
        m = (torch.rand(B, Hq, 1, S, generator=gen(7)) > 0.3).cuda()
        m[0, 1] = False
    elif kind == "causal-padding":
        m = causal_padding(B, L, S, [0, 70, 5][:B]).cuda()
    elif kind == "documents":
        m = documents(B, L, [[40, 100, 3], [200]][:B]).cuda()
    elif kind == "window":
        m = window(Hq, L, S, [20, 64, 100, 400][:Hq], dtype).cuda()
    return q, k, v, m, dict(enable_gqa=Hq != Hkv, is_causal=kind == "causal")


@pytest.mark.gpu
@params("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@params("case", list(GPU_CASES))
def test_fused_every_order_against_the_float64_reference(case, dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, k, v, m, kw = gpu_inputs(case, dtype)
    if dtype != torch.float32:  # (auto sends float32 at the default matmul precision to the reference)
        assert theria.select_backend(q, k, v, attn_mask=m, **kw)[0] == "fused"
    got = orders(lambda a, b, c: theria.sdpa(a, b, c, attn_mask=m, backend="fused", **kw), q, k, v)
    d = lambda t: None if t is None else (t if t.dtype == torch.bool else t.double())  # noqa: E731
    want = orders(lambda a, b, c: theria.sdpa(a, b, c, attn_mask=d(m), backend="reference", **kw),
                  q.double(), k.double(), v.double())
    labels = ["out", "dq", "dk", "dv", "hvp_q", "hvp_k", "hvp_v", "jvp"]
    order = [0, 1, 1, 1, 2, 2, 2, 1]
    for label, o, g, w in zip(labels, order, got, want):
        assert torch.isfinite(g).all(), label
        err = max_rel_err(g, w)
        assert err <= theria.tolerance(dtype, o), f"{label}: {err:.3e} > {theria.tolerance(dtype, o):.1e}"


@pytest.mark.gpu
@params("case", ["padding-blocks-d64", "padding-blocks-d128", "gqa+padding-d128", "causal-padding",
                  "documents+gqa", "gqa-causal", "gqa-d128"])
def test_fused_backward_with_masks_and_groups_is_deterministic_when_asked(case):
    """Under torch.use_deterministic_algorithms(True) the ordered dQ adds hold with skipped key blocks, skipped query
    steps (a tile map's hidden blocks) and grouped heads: two runs agree bit for bit (and with the float64
    reference)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, k, v, m, kw = gpu_inputs(case, torch.bfloat16)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [orders(lambda a, b, c: theria.sdpa(a, b, c, attn_mask=m, backend="fused", **kw), q, k, v)
                for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    want = orders(lambda a, b, c: theria.sdpa(a, b, c, attn_mask=m, backend="reference", **kw),
                  q.double(), k.double(), v.double())
    for o, g, w in zip([0, 1, 1, 1, 2, 2, 2, 1], runs[0], want):
        assert max_rel_err(g, w) <= theria.tolerance(torch.bfloat16, o)


@pytest.mark.gpu
@params("head_dim", [64, 128])
def test_fused_grouped_heads_in_the_layout_models_pass(head_dim):
    """Grouped-query heads as a decoder passes them, (B, S, H, D) views transposed to (B, H, S, D): the backward reads
    the key/value heads where they lie (one CTA per query head, dK and dV summed over the group) at every order."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    B, Hq, Hkv, L, D = 2, 8, 2, 190, head_dim
    q = rand((B, L, Hq, D), 1, torch.bfloat16).cuda().transpose(1, 2)
    k, v = (rand((B, L, Hkv, D), s, torch.bfloat16).cuda().transpose(1, 2) for s in (2, 3))
    got = orders(lambda a, b, c: theria.sdpa(a, b, c, enable_gqa=True, is_causal=True, backend="fused"), q, k, v)
    want = orders(lambda a, b, c: theria.sdpa(a, b, c, enable_gqa=True, is_causal=True, backend="reference"),
                  q.double(), k.double(), v.double())
    for o, g, w in zip([0, 1, 1, 1, 2, 2, 2, 1], got, want):
        assert g.shape == w.shape
        assert max_rel_err(g, w) <= theria.tolerance(torch.bfloat16, o)


# A float mask that requires grad, on the fused kernels: (B, Hq, Hkv, L, S, D, the mask's shape from (B, Hq, L, S)).
GPU_BIAS_CASES = {
    # Broadcast over the batch (a relative-position bias): the kernels add dS with atomics into the mask's shape.
    "heads-bias-d64": (2, 4, 4, 150, 130, 64, lambda B, H, L, S: (1, H, L, S)),
    # One element per pair: stored; D = 128 runs the warpgroup backward.
    "full-bias-d128+gqa": (2, 4, 2, 140, 200, 128, lambda B, H, L, S: (B, H, L, S)),
    # A per-key bias (key padding as a float): every query row of a CTA adds into the same keys.
    "key-bias-d32+gqa": (3, 6, 2, 70, 150, 32, lambda B, H, L, S: (B, 1, 1, S)),
    # A shared (L, S) bias with a sliding window of -inf: hidden pairs have zero gradient, whole tiles skipped.
    "window-bias-d96": (2, 3, 3, 200, 180, 96, None),
    # Rows of a multiple of 8 elements (16-byte aligned): the forward and tangent passes fold the bias from shared
    # memory (StagedBias) for whole key blocks, from global memory for the last, partial one (S = 200).
    "staged-bias-d64+gqa": (2, 4, 2, 150, 200, 64, lambda B, H, L, S: (1, H, L, S)),
    "staged-bias-d32": (2, 3, 3, 77, 136, 32, lambda B, H, L, S: (B, H, L, S)),
}


def gpu_bias_inputs(case, dtype):
    B, Hq, Hkv, L, S, D, shape = GPU_BIAS_CASES[case]
    q, k, v = (rand(s, i, dtype).cuda() for i, s in enumerate(((B, Hq, L, D), (B, Hkv, S, D), (B, Hkv, S, D))))
    m = rand(shape(B, Hq, L, S), 8, dtype) if shape is not None else window(1, L, S, [40], dtype)[0, 0]
    return q, k, v, m.cuda(), dict(enable_gqa=Hq != Hkv)


@pytest.mark.gpu
@params("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@params("case", list(GPU_BIAS_CASES))
def test_fused_float_mask_gradient_at_every_order_against_the_float64_reference(case, dtype):
    """dS written by the fused backward (16-bit: tensor-core kernels; float32: the SIMT kernels), the mask's tangent
    folded into the JVP and tangent passes, dS's tangent written by the backward-JVP: every order, the mask's row and
    column of the Hessian included, within the tolerance table of the float64 reference."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, k, v, m, kw = gpu_bias_inputs(case, dtype)
    m.requires_grad_()
    if dtype != torch.float32:
        assert theria.select_backend(q, k, v, attn_mask=m, **kw)[0] == "fused"
    got = mask_orders(lambda a, b, c, d: theria.sdpa(a, b, c, attn_mask=d, backend="fused", **kw), q, k, v, m)
    want = mask_orders(lambda a, b, c, d: theria.sdpa(a, b, c, attn_mask=d, backend="reference", **kw),
                       q.double(), k.double(), v.double(), m.double())
    order = [0, 1, 1, 1, 1, 2, 2, 2, 2, 1]
    for label, o, g, w in zip(MASK_ORDER_LABELS, order, got, want):
        assert g.shape == w.shape, label
        assert torch.isfinite(g).all(), label
        err = max_rel_err(g, w)
        assert err <= theria.tolerance(dtype, o), f"{label}: {err:.3e} > {theria.tolerance(dtype, o):.1e}"


@pytest.mark.gpu
@params("case", ["heads-bias-d64", "key-bias-d32+gqa"])
def test_fused_float_mask_gradient_is_deterministic_when_asked(case):
    """Under torch.use_deterministic_algorithms(True) a broadcast mask's gradient is stored pair by pair and summed
    after, not added with atomics: two runs agree bit for bit."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, k, v, m, kw = gpu_bias_inputs(case, torch.bfloat16)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [mask_orders(lambda a, b, c, d: theria.sdpa(a, b, c, attn_mask=d, backend="fused", **kw), q, k, v, m)
                for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    for label, a, b in zip(MASK_ORDER_LABELS, *runs):
        assert torch.equal(a, b), label
