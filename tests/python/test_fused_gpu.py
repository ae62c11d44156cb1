"""The fused CUDA backend against the float64 reference, on fresh random inputs.

Every dtype x head dim x causal x odd (L, S); outputs and gradients; the CUDA caching allocator is
poisoned with NaN before each call so that an element a kernel forgets to write shows up as NaN.
Tolerances come from the one table (theria.tolerance).
"""
import pytest
import torch

import theria

pytestmark = pytest.mark.gpu

DTYPES = [torch.bfloat16, torch.float16, torch.float32]
HEAD_DIMS = [32, 64, 96, 128]
LENGTHS = [(1, 1), (17, 33), (130, 67), (257, 256)]


def rel_err(xs, refs):
    err = max((x.double() - r.double()).abs().max().item() for x, r in zip(xs, refs))
    mag = max(r.double().abs().max().item() for r in refs)
    return err / max(mag, 1.0)


def poison_allocator():
    """Fill cached free GPU memory with NaN: later allocations start out as NaN, not zeros."""
    block = torch.full((64 << 20,), float("nan"), device="cuda")
    del block


def reference(q, k, v, causal):
    """float64 oracle on the same (rounded) inputs, via PyTorch's math SDPA."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return q, k, v, out


def hvp_error(primals, grads, primals64, grads64):
    """The double backward along random directions u: d<g, u>/d(q, k, v) against the float64 reference's."""
    u = [torch.randn_like(t) for t in grads]
    h = torch.autograd.grad(sum((a * w).sum() for a, w in zip(grads, u)), primals)
    hr = torch.autograd.grad(sum((a * w.double()).sum() for a, w in zip(grads64, u)), primals64)
    return rel_err(h, hr)


def jvp_and_reference(primals, primals64, causal):
    """out's tangent along random directions, from theria's fused forward AD and from float64 math SDPA."""
    tangents = [torch.randn_like(t) for t in primals]
    with torch.autograd.forward_ad.dual_level():
        dual = [torch.autograd.forward_ad.make_dual(t.detach(), d) for t, d in zip(primals, tangents)]
        out_dot = torch.autograd.forward_ad.unpack_dual(theria.sdpa(*dual, is_causal=causal, backend="fused")).tangent
        dual_r = [torch.autograd.forward_ad.make_dual(t.detach(), d.double()) for t, d in zip(primals64, tangents)]
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            ref_dot = torch.autograd.forward_ad.unpack_dual(
                torch.nn.functional.scaled_dot_product_attention(*dual_r, is_causal=causal)).tangent
    return out_dot, ref_dot


def inputs(b, h, l, s, e, ev, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, device="cuda", dtype=torch.float32, generator=g).to(dtype)
    return r(b, h, l, e), r(b, h, s, e), r(b, h, s, ev), r(b, h, l, ev)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_fused_forward_backward_match_reference(dtype, head_dim, causal, lengths):
    l, s = lengths
    q, k, v, dout = inputs(2, 3, l, s, head_dim, head_dim, dtype, seed=l * 1000 + s + head_dim)
    qr, kr, vr, out_ref = reference(q, k, v, causal)
    grads_ref = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double())

    q, k, v = (t.requires_grad_() for t in (q, k, v))
    poison_allocator()
    out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
    assert out.dtype == dtype and out.shape == out_ref.shape
    assert rel_err([out], [out_ref]) <= theria.tolerance(dtype, 0)
    poison_allocator()
    grads = torch.autograd.grad(out, (q, k, v), dout)
    assert rel_err(grads, grads_ref) <= theria.tolerance(dtype, 1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", [(700, 1029), (1029, 700), (700, 8250), (8250, 8203)], ids=str)
def test_fused_forward_over_many_key_blocks_with_grouped_heads(dtype, head_dim, causal, lengths):
    """The warp-specialised forward (head dims 64 and 128) streams keys in blocks of 128 through rings of three
    stages of TMA copies, refilled many times here at 8250 keys, ragged ends included (rows past the end arrive as
    zeros); under the causal mask with L != S its CTAs see different numbers of blocks. out and the row log-sum-exp
    against float64; two query heads share each key/value head."""
    l, s = lengths
    g = torch.Generator(device="cuda").manual_seed(l + s + head_dim)
    r = lambda *shape: torch.randn(*shape, device="cuda", generator=g).to(dtype)
    q, k, v = r(1, 4, l, head_dim), r(1, 2, s, head_dim), r(1, 2, s, head_dim)
    poison_allocator()
    out, lse = torch.ops.theria.sdpa_fwd(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), causal,
                                         head_dim ** -0.5, "fused")
    poison_allocator()
    out_gqa = theria.sdpa(q, k, v, is_causal=causal, enable_gqa=True, backend="fused")
    logits = (q.double() @ k.double().repeat_interleave(2, 1).transpose(-1, -2)) * head_dim ** -0.5
    if causal:
        logits = logits.masked_fill(torch.ones(l, s, dtype=torch.bool, device="cuda").triu(1), float("-inf"))
    lse_ref = torch.logsumexp(logits, -1)
    out_ref = torch.softmax(logits, -1) @ v.double().repeat_interleave(2, 1)
    assert rel_err([out], [out_ref]) <= theria.tolerance(dtype, 0)
    torch.testing.assert_close(out_gqa, out, rtol=0, atol=0)
    torch.testing.assert_close(lse.double(), lse_ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_fused_forward_of_keys_broadcast_over_the_batch(head_dim):
    """Keys and values expanded over the batch (stride 0, no copy): the warpgroup forward's TMA copies cannot address
    a zero stride, so such views run the mma.sync forward; out and lse against float64 either way."""
    g = torch.Generator(device="cuda").manual_seed(head_dim)
    r = lambda *shape: torch.randn(*shape, device="cuda", generator=g).to(torch.bfloat16)
    q, k, v = r(3, 2, 300, head_dim), r(1, 2, 333, head_dim), r(1, 2, 333, head_dim)
    k, v = k.expand(3, -1, -1, -1), v.expand(3, -1, -1, -1)
    assert k.stride(0) == 0
    poison_allocator()
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, False, head_dim ** -0.5, "fused")
    logits = (q.double() @ k.double().transpose(-1, -2)) * head_dim ** -0.5
    assert rel_err([out], [torch.softmax(logits, -1) @ v.double()]) <= theria.tolerance(torch.bfloat16, 0)
    torch.testing.assert_close(lse.double(), torch.logsumexp(logits, -1), rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_strided_inputs_match_contiguous(dtype, head_dim, causal):
    """(B, L, H, D) tensors seen as (B, H, L, D): the kernels read the strides, no copy needed. Forward,
    backward and double backward (at D=128 the warpgroup kernels) give what contiguous copies give."""
    g = torch.Generator(device="cuda").manual_seed(7)
    q, k, v, dout = (torch.randn(2, 77, 4, head_dim, device="cuda", generator=g).to(dtype).transpose(1, 2)
                     for _ in range(4))
    assert not q.is_contiguous()
    u = [torch.randn(q.shape, device="cuda", generator=g).to(dtype) for _ in range(3)]

    def run(q, k, v):
        q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
        out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
        grads = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
        hvp = torch.autograd.grad(sum((a * w).sum() for a, w in zip(grads, u)), (q, k, v))
        return out, grads, hvp

    out, grads, hvp = run(q, k, v)
    out_c, grads_c, hvp_c = run(q.contiguous(), k.contiguous(), v.contiguous())
    torch.testing.assert_close(out, out_c, rtol=0, atol=0)
    # dK, dV (and their tangents) are summed in a fixed order; dQ through fp32 atomics in any order.
    for a, b in zip(grads[1:] + hvp[1:], grads_c[1:] + hvp_c[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert rel_err([grads[0], hvp[0]], [grads_c[0], hvp_c[0]]) <= 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_other_head_dims_and_higher_orders(dtype, causal):
    """E != Ev goes to the SIMT kernels; JVP and double backward run through them too."""
    q, k, v, dout = inputs(1, 2, 19, 23, 40, 24, dtype, seed=3)
    qr, kr, vr, out_ref = reference(q, k, v, causal)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
    assert rel_err([out], [out_ref]) <= theria.tolerance(dtype, 0)

    g = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    assert rel_err(g, gr) <= theria.tolerance(dtype, 1)
    assert hvp_error((q, k, v), g, (qr, kr, vr), gr) <= theria.tolerance(dtype, 2)
    out_dot, ref_dot = jvp_and_reference((q, k, v), (qr, kr, vr), causal)
    assert rel_err([out_dot], [ref_dot]) <= theria.tolerance(dtype, 1)


def test_auto_picks_fused_on_cuda():
    q = torch.randn(1, 2, 8, 64, device="cuda", dtype=torch.bfloat16)
    name, reason = theria.select_backend(q, q, q)
    assert name == "fused", reason


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_fused_jvp_matches_reference(dtype, head_dim, causal, lengths):
    """The tensor-core JVP: out and its tangent against float64 forward AD through math SDPA."""
    l, s = lengths
    q, k, v, _ = inputs(2, 3, l, s, head_dim, head_dim, dtype, seed=l * 7 + s + head_dim)
    tangents = [torch.randn_like(t) for t in (q, k, v)]
    fwd = torch.autograd.forward_ad
    with fwd.dual_level():
        poison_allocator()
        out, out_dot = fwd.unpack_dual(theria.sdpa(*[fwd.make_dual(t, d) for t, d in zip((q, k, v), tangents)],
                                                   is_causal=causal, backend="fused"))
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            ref, ref_dot = fwd.unpack_dual(torch.nn.functional.scaled_dot_product_attention(
                *[fwd.make_dual(t.double(), d.double()) for t, d in zip((q, k, v), tangents)], is_causal=causal))
    assert rel_err([out], [ref]) <= theria.tolerance(dtype, 0)
    assert rel_err([out_dot], [ref_dot]) <= theria.tolerance(dtype, 1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [-0.8, 0.0, 0.37])
def test_fused_forward_and_jvp_with_any_scale(dtype, head_dim, causal, scale):
    """The online softmax takes its running max from the raw logits, scaled once a row, only for a positive scale
    (mma.cuh, move_row_max); a negative or zero scale takes the pairs scaled. out, the row log-sum-exp and the JVP's
    tangent over several key blocks (the max moving between them) against float64, in every forward kernel: the
    warpgroup ones at head dims 64 and 128 (the forward and the one-pass JVP), mma.sync at 32 and 96."""
    l, s = 130, 300
    q, k, v, _ = inputs(2, 3, l, s, head_dim, head_dim, dtype, seed=head_dim + int(10 * scale) + 100 * causal)
    tangents = [torch.randn_like(t) for t in (q, k, v)]
    fwd = torch.autograd.forward_ad
    poison_allocator()
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, causal, scale, "fused")
    with fwd.dual_level():
        poison_allocator()
        out_j, out_dot = fwd.unpack_dual(theria.sdpa(*[fwd.make_dual(t, d) for t, d in zip((q, k, v), tangents)],
                                                     is_causal=causal, scale=scale, backend="fused"))
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            ref, ref_dot = fwd.unpack_dual(torch.nn.functional.scaled_dot_product_attention(
                *[fwd.make_dual(t.double(), d.double()) for t, d in zip((q, k, v), tangents)], is_causal=causal,
                scale=scale))
    logits = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        logits = logits.masked_fill(torch.ones(l, s, dtype=torch.bool, device="cuda").triu(1), float("-inf"))
    assert rel_err([out], [ref]) <= theria.tolerance(dtype, 0)
    assert rel_err([out_j], [ref]) <= theria.tolerance(dtype, 0)
    assert rel_err([out_dot], [ref_dot]) <= theria.tolerance(dtype, 1)
    torch.testing.assert_close(lse.double(), torch.logsumexp(logits, -1), rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype, precision", [(torch.bfloat16, None), (torch.float16, None), (torch.float32, "high")],
                         ids=["bfloat16", "float16", "float32-high"])
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", LENGTHS[1:], ids=str)
def test_fused_double_backward_and_forward_over_reverse_match_reference(set_precision, dtype, precision, head_dim,
                                                                        causal, lengths):
    """The tensor-core backward-JVP, as the double backward (HVP, dout_dot absent) and as the tangent of the
    backward (forward-over-reverse, with a dout tangent), against float64; float32 at "high" too (at head dims
    64 and 128 the backward-JVP reuses the parts of q, k, v and their tangents that the tangent pass formed, and
    forms dout's and dout_dot's)."""
    if precision is not None:
        set_precision(precision)
    tolerance = lambda order: (theria.tolerance(dtype, order, float32_precision=precision) if precision
                               else theria.tolerance(dtype, order))
    l, s = lengths
    q, k, v, dout = inputs(2, 3, l, s, head_dim, head_dim, dtype, seed=l * 11 + s + head_dim)
    u = [torch.randn_like(t) for t in (q, k, v)]
    qr, kr, vr, out_ref = reference(q, k, v, causal)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    hr = torch.autograd.grad(sum((a * w.double()).sum() for a, w in zip(gr, u)), (qr, kr, vr))

    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
    g = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
    poison_allocator()
    h = torch.autograd.grad(sum((a * w).sum() for a, w in zip(g, u)), (q, k, v))
    assert rel_err(h, hr) <= tolerance(2)

    # Forward-over-reverse: the tangent of the backward along (u, dout_dot) straight from the op.
    dout_dot = torch.randn_like(dout)
    out_d, lse = torch.ops.theria.sdpa_fwd(q.detach(), k.detach(), v.detach(), causal, head_dim ** -0.5, "fused")
    tangents = torch.ops.theria.sdpa_bwd_jvp(q.detach(), k.detach(), v.detach(), out_d, lse, dout, *u, dout_dot,
                                             causal, head_dim ** -0.5, "fused")
    fwd = torch.autograd.forward_ad
    with fwd.dual_level():
        primals = [t.detach().double().requires_grad_() for t in (q, k, v)]
        dual = [fwd.make_dual(x, d.double()) for x, d in zip(primals, u)]
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            o = torch.nn.functional.scaled_dot_product_attention(*dual, is_causal=causal)
            grads = torch.autograd.grad(o, primals, fwd.make_dual(dout.double(), dout_dot.double()), create_graph=True)
        ref_tangents = [fwd.unpack_dual(x).tangent for x in grads]
        ref_out_dot = fwd.unpack_dual(o).tangent
    assert rel_err(tangents[:3], ref_tangents) <= tolerance(2)
    # The fourth output, out_dot, comes from the tangent pass over the saved out and lse.
    assert rel_err(tangents[3:4], [ref_out_dot]) <= tolerance(1)
    assert tangents[4].numel() == 0  # no mask, no mask gradient


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", [64, 128])
def test_fused_bwd_jvp_reads_strided_saved_out_and_lse(dtype, head_dim):
    """The tangent pass reads the saved out and lse in place: a (B, L, H, E) view, a column-major copy (which
    the binding copies) and a strided lse give the same tangents as contiguous ones."""
    q, k, v, dout = inputs(2, 3, 77, 61, head_dim, head_dim, dtype, seed=5)
    u = [torch.randn_like(t) for t in (q, k, v)]
    scale = head_dim ** -0.5
    out, lse = torch.ops.theria.sdpa_fwd(q, k, v, False, scale, "fused")
    want = torch.ops.theria.sdpa_bwd_jvp(q, k, v, out, lse, dout, *u, None, False, scale, "fused")
    views = {
        "blhe": out.transpose(1, 2).contiguous().transpose(1, 2),
        "column-major": out.transpose(-1, -2).contiguous().transpose(-1, -2),
    }
    lse_strided = lse.transpose(1, 2).contiguous().transpose(1, 2)
    for name, out_view in views.items():
        assert not out_view.is_contiguous(), name
        got = torch.ops.theria.sdpa_bwd_jvp(q, k, v, out_view, lse_strided, dout, *u, None, False, scale, "fused")
        # dk_dot, dv_dot and out_dot are summed in a fixed order; dq_dot through fp32 atomics in any order.
        for a, b in zip(got[1:4], want[1:4]):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
        assert rel_err(got[:1], want[:1]) <= 1e-2, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", [64, 128])
def test_fused_backward_with_its_last_wave_split_matches_reference(dtype, head_dim):
    """The warpgroup backward and backward-JVP split the walks of the key blocks in their last wave over several
    CTAs, which add their dK, dV (dK_dot, dV_dot) to fp32 scratch written out by one more kernel
    (tile_policy.h, plan_bwd_tail). Here the key blocks exceed the SMs by a partial wave whose last block is a
    ragged one (4001 keys), L != S: the split runs (its finishing kernel is launched, by both passes) and the
    gradients and the double backward match float64, with NaN in the allocator's free memory; in deterministic
    mode nothing splits."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    l, s = 4059, 4001  # 32 key blocks of 128 keys
    heads = sms // 32 + 1  # 32 x heads key blocks: a wave and a part of one
    q, k, v, dout = inputs(1, heads, l, s, head_dim, head_dim, dtype, seed=head_dim + heads)
    u = [torch.randn_like(t) for t in (q, k, v)]
    qr, kr, vr, out_ref = reference(q, k, v, False)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    hr = torch.autograd.grad(gr, (qr, kr, vr), [w.double() for w in u])

    x = [t.requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, backend="fused")
    result = {}

    def backward():
        poison_allocator()
        result["g"] = torch.autograd.grad(out, x, dout, create_graph=True)

    def double_backward():
        poison_allocator()
        result["h"] = torch.autograd.grad(result["g"], x, u)

    for step in (backward, double_backward):
        names = cuda_kernel_names(step)
        assert any("sdpa_bwd_tail_finish_kernel" in n for n in names), names
    assert rel_err(result["g"], gr) <= theria.tolerance(dtype, 1)
    assert rel_err(result["h"], hr) <= theria.tolerance(dtype, 2)

    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        names = cuda_kernel_names(backward)
    finally:
        torch.use_deterministic_algorithms(was)
    assert any("sdpa_bwd_wg_kernel" in n for n in names), names
    assert not any("sdpa_bwd_tail_finish_kernel" in n for n in names), names
    assert rel_err(result["g"], gr) <= theria.tolerance(dtype, 1)


@pytest.mark.parametrize("dtype, precision", [(torch.bfloat16, None), (torch.float16, None), (torch.float32, "high")],
                         ids=["bfloat16", "float16", "float32-high"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", [(1029, 700), (700, 1029)], ids=str)
def test_fused_backward_kernels_over_many_query_steps_match_reference(set_precision, dtype, precision, head_dim,
                                                                      causal, lengths):
    """The warpgroup backward and backward-JVP walk many query steps a key block (6 to 33, their query-side buffers,
    row statistics and deferred dQ^T adds taken in turn), ending on a ragged step, L above and below S: gradients and
    the double backward against float64, with NaN in the allocator's free memory; the same inputs twice give the same
    dK, dV (their sums have a fixed order)."""
    if precision is not None:
        set_precision(precision)
    tolerance = lambda order: (theria.tolerance(dtype, order, float32_precision=precision) if precision
                               else theria.tolerance(dtype, order))
    l, s = lengths
    q, k, v, dout = inputs(1, 3, l, s, head_dim, head_dim, dtype, seed=l + 7 * s + head_dim)
    u = [torch.randn_like(t) for t in (q, k, v)]
    qr, kr, vr, out_ref = reference(q, k, v, causal)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    hr = torch.autograd.grad(gr, (qr, kr, vr), [w.double() for w in u])

    x = [t.requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, is_causal=causal, backend="fused")
    poison_allocator()
    g = torch.autograd.grad(out, x, dout, create_graph=True)
    poison_allocator()
    h = torch.autograd.grad(g, x, u)
    assert rel_err(g, gr) <= tolerance(1)
    assert rel_err(h, hr) <= tolerance(2)
    again = torch.autograd.grad(out, x, dout, create_graph=True)
    for a, b in zip(g[1:], again[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture
def medium_precision():
    """torch.set_float32_matmul_precision("medium") for one test: float32 products may use bfloat16."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_float32_at_medium_precision_runs_the_bfloat16_tensor_cores_at_every_order(medium_precision, head_dim,
                                                                                    causal):
    """At matmul precision "medium" float32 runs the bf16 tensor-core kernels (bf16 copies in, float32 out):
    forward, backward, double backward and JVP within the bfloat16 row of the tolerance table against float64,
    and bit for bit what the same kernels give on bfloat16 copies of the inputs."""
    q, k, v, dout = inputs(2, 3, 130, 67, head_dim, head_dim, torch.float32, seed=11 + head_dim)
    reason = theria.select_backend(q, k, v)
    assert reason[0] == "fused" and "bfloat16" in reason[1], reason
    qr, kr, vr, out_ref = reference(q, k, v, causal)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
    assert out.dtype == torch.float32
    assert rel_err([out], [out_ref]) <= theria.tolerance(torch.bfloat16, 0)
    with torch.no_grad():
        out_bf16 = theria.sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=causal, backend="fused")
    torch.testing.assert_close(out, out_bf16.float(), rtol=0, atol=0)

    g = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    assert all(t.dtype == torch.float32 for t in g)
    assert rel_err(g, gr) <= theria.tolerance(torch.bfloat16, 1)
    assert hvp_error((q, k, v), g, (qr, kr, vr), gr) <= theria.tolerance(torch.bfloat16, 2)
    out_dot, ref_dot = jvp_and_reference((q, k, v), (qr, kr, vr), causal)
    assert out_dot.dtype == torch.float32
    assert rel_err([out_dot], [ref_dot]) <= theria.tolerance(torch.bfloat16, 1)


@pytest.fixture
def set_precision():
    """Sets torch.set_float32_matmul_precision within one test, and puts the setting back after it."""
    before = torch.get_float32_matmul_precision()
    yield torch.set_float32_matmul_precision
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", LENGTHS[1:], ids=str)
def test_float32_at_high_precision_runs_tf32_class_tensor_cores_at_every_order(set_precision, head_dim, causal,
                                                                               lengths):
    """At "high" (PyTorch allows TF32 products) float32 runs the tensor-core kernels on float16 copies scaled by
    powers of two at head dims 64 and 128 (TF32's mantissa) and on bfloat16-split operands at 32 and 96: forward,
    backward, double backward and JVP within TF32's row of the tolerance table, and closer to float64 than the same
    inputs at "medium" (bfloat16 products), by float16's three more mantissa bits or the split's eight."""
    set_precision("high")
    l, s = lengths
    q, k, v, dout = inputs(2, 3, l, s, head_dim, head_dim, torch.float32, seed=7 * l + s + head_dim)
    half_copies = head_dim in (64, 128)
    reason = theria.select_backend(q, k, v)
    assert reason[0] == "fused" and ("float16 copies" if half_copies else "split") in reason[1], reason
    tol = lambda order: theria.tolerance(torch.float32, order, float32_precision="high")
    qr, kr, vr, out_ref = reference(q, k, v, causal)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    poison_allocator()
    out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
    assert out.dtype == torch.float32
    err_high = rel_err([out], [out_ref])
    assert err_high <= tol(0)
    g = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    assert all(t.dtype == torch.float32 for t in g)
    assert rel_err(g, gr) <= tol(1)
    assert hvp_error((q, k, v), g, (qr, kr, vr), gr) <= tol(2)
    out_dot, ref_dot = jvp_and_reference((q, k, v), (qr, kr, vr), causal)
    assert rel_err([out_dot], [ref_dot]) <= tol(1)

    set_precision("medium")
    with torch.no_grad():
        err_medium = rel_err([theria.sdpa(q, k, v, is_causal=causal, backend="fused")], [out_ref])
    assert err_high * (3 if half_copies else 30) <= err_medium, (err_high, err_medium)


@pytest.mark.parametrize("magnitudes", ["large", "small", "mixed"])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_float32_at_high_scales_float16_copies_to_any_magnitude(set_precision, magnitudes, head_dim):
    """The float16 copies of "high" carry each operand's power of two: inputs far outside float16's range (k, v,
    dout and the tangents near 1e5 or 1e-6, q the inverse, so that the logits stay of order one; or every operand its
    own magnitude) give TF32's accuracy at every order, where float16 copies taken as they are would overflow to inf
    or lose every bit to float16's subnormals (scripts/numerics/float32_products_emulation.py)."""
    set_precision("high")
    big = {"large": 1e5, "small": 1e-6, "mixed": None}[magnitudes]
    q, k, v, dout = inputs(2, 3, 200, 333, head_dim, head_dim, torch.float32, seed=head_dim + len(magnitudes))
    u = [torch.randn_like(t) for t in (q, k, v)]
    if big is not None:
        q, k, v, dout = q / big, k * big, v * big, dout * big
        u = [u[0] / big, u[1] * big, u[2] * big]
    else:  # every operand and tangent its own power of ten
        q, k, v, dout = q * 3e-3, k * 2e2, v * 7e4, dout * 4e-5
        u = [u[0] * 1e-7, u[1] * 5e3, u[2] * 2e-2]
    assert not all(torch.isfinite(t.half()).all() and (t.half() != 0).all() for t in (q, k, v, dout)), \
        "the inputs must be out of float16's range"
    tol = lambda order: theria.tolerance(torch.float32, order, float32_precision="high")
    qr, kr, vr, out_ref = reference(q, k, v, False)
    gr = torch.autograd.grad(out_ref, (qr, kr, vr), dout.double(), create_graph=True)
    hr = torch.autograd.grad(sum((a * w.double()).sum() for a, w in zip(gr, u)), (qr, kr, vr))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = theria.sdpa(q, k, v, backend="fused")
    g = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
    h = torch.autograd.grad(sum((a * w).sum() for a, w in zip(g, u)), (q, k, v))
    # (relative errors: the table's floor of 1 would hide every error of tiny outputs)
    rel = lambda xs, refs: max((a.double() - b).abs().max().item() for a, b in zip(xs, refs)) / \
        max(b.abs().max().item() for b in refs)
    assert rel([out], [out_ref]) <= tol(0)
    assert rel(g, gr) <= tol(1)
    assert rel(h, hr) <= tol(2)


def cuda_kernel_names(fn):
    """The names of the CUDA kernels that fn() launches (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


@pytest.mark.parametrize("head_dim", [64, 128])
def test_float32_at_high_runs_the_warpgroup_kernels_on_float16_copies(set_precision, head_dim):
    """At "high" the float32 forward, backward, JVP and the double backward's tangent pass and backward-JVP at head
    dims 64 and 128 run the warpgroup kernels on float16 copies (Float32Half) formed first from the operands'
    largest magnitudes (operand_amax_kernel, scaled_half_rows_kernel), not the split or mma.sync ones: the results
    alone cannot tell, so the kernels' names do. At "highest" none of them runs."""
    q, k, v, _ = inputs(2, 3, 300, 461, head_dim, head_dim, torch.float32, seed=head_dim)
    set_precision("high")
    kernel = lambda name: f"{name}<theria::kernels::cuda::Float32Half,"
    names = cuda_kernel_names(lambda: theria.sdpa(q, k, v, backend="fused"))
    assert any("operand_amax_kernel" in n for n in names), names
    assert any("scaled_half_rows_kernel" in n for n in names), names  # (its columns a thread: 4 or 2)
    assert any(kernel("sdpa_fwd_wg_kernel") in n for n in names), names
    assert not any("sdpa_fwd_tc_kernel" in n for n in names), names
    x = [t.detach().requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, backend="fused")
    names = cuda_kernel_names(lambda: torch.autograd.grad(out, x, torch.ones_like(out)))
    assert any(kernel("sdpa_bwd_wg_kernel") in n and f"BwdWgTraits<{head_dim}, false, false," in n for n in names), \
        names
    assert any(kernel("sdpa_dq_finish_kernel") in n for n in names), names
    assert not any("sdpa_bwd_tc_kernel" in n for n in names), names

    def jvp():
        with torch.autograd.forward_ad.dual_level():
            dual = [torch.autograd.forward_ad.make_dual(x, torch.randn_like(x)) for x in (q, k, v)]
            torch.autograd.forward_ad.unpack_dual(theria.sdpa(*dual, backend="fused"))
    names = cuda_kernel_names(jvp)
    assert any(kernel("sdpa_tangent_wg_kernel") in n for n in names), names
    assert not any("sdpa_fwd_tc_kernel" in n for n in names), names
    for dout_tangent in (False, True):
        dout = torch.randn_like(out).requires_grad_(dout_tangent)

        def double_backward():
            grads = torch.autograd.grad(theria.sdpa(*x, backend="fused"), x, dout, create_graph=True)
            torch.autograd.grad(grads, x + ([dout] if dout_tangent else []), [torch.randn_like(g) for g in grads])

        names = cuda_kernel_names(double_backward)
        assert any(kernel("sdpa_tangent_wg_kernel") in n and f"TangentWgTraits<{head_dim}, false, false>" in n
                   for n in names), names
        assert any(kernel("sdpa_bwd_wg_kernel") in n and f"BwdWgTraits<{head_dim}, true, false," in n
                   for n in names), names
        assert not any("sdpa_fwd_tc_kernel" in n or "sdpa_bwd_jvp_tc_kernel" in n for n in names), names
    set_precision("highest")
    names = cuda_kernel_names(lambda: theria.sdpa(q, k, v, backend="fused"))
    assert not any("Float32Half" in n or "scaled_half_rows_kernel" in n for n in names), names


@pytest.mark.parametrize("precision, head_dim", [("high", 64), ("high", 128), ("highest", 64)])
def test_float32_dq_is_bitwise_reproducible_under_deterministic_algorithms(set_precision, precision, head_dim):
    """The float32 kernels' dQ (fp32 atomics by default; float16 copies at "high", three parts at "highest") adds in a
    fixed order under torch.use_deterministic_algorithms(True), as the 16-bit kernels' does: two runs agree bit for
    bit, at first and second order."""
    set_precision(precision)
    q, k, v, dout = inputs(2, 4, 300, 200, head_dim, head_dim, torch.float32, seed=3)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    u = [torch.randn_like(t) for t in (q, k, v)]
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            out = theria.sdpa(q, k, v, backend="fused")
            g = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
            h = torch.autograd.grad(sum((a * w).sum() for a, w in zip(g, u)), (q, k, v))
            runs.append([t.detach() for t in (*g, *h)])
    finally:
        torch.use_deterministic_algorithms(before)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_float32_at_highest_precision_and_masked_or_grouped_float32_at_high_keep_float32_products(set_precision):
    """At "highest" float32 runs the three-part tensor-core kernels at head dims 32 and 64 (the float32 row) and the
    SIMT kernels at 96 and 128 when 'fused' is named, and auto's reason says which. At "high" the float32 kernels have a
    plain build only: an attn_mask or grouped heads take the SIMT kernels (float32 row), and auto says so."""
    q, k, v, _ = inputs(1, 4, 33, 40, 64, 64, torch.float32, seed=5)
    _, _, _, out_ref = reference(q, k, v, False)
    set_precision("highest")
    out = theria.sdpa(q, k, v, backend="fused")
    assert rel_err([out], [out_ref]) <= theria.tolerance(torch.float32, 0)
    assert "three" in theria.select_backend(q, k, v)[1]
    q96, k96, v96, _ = inputs(1, 4, 33, 40, 96, 96, torch.float32, seed=6)
    assert "highest" in theria.select_backend(q96, k96, v96)[1]

    set_precision("high")
    mask = torch.rand(33, 40, device="cuda") > 0.3
    mask[:, 0] = True
    _, _, _, out_ref_masked = reference_masked(q, k, v, mask)
    out = theria.sdpa(q, k, v, attn_mask=mask, backend="fused")
    assert rel_err([out], [out_ref_masked]) <= theria.tolerance(torch.float32, 0)
    name, why = theria.select_backend(q, k, v, attn_mask=mask)
    assert "attn_mask or grouped heads" in why, why
    k2, v2 = k[:, :2].contiguous(), v[:, :2].contiguous()
    _, _, _, out_ref_gqa = reference(q, k2.repeat_interleave(2, 1), v2.repeat_interleave(2, 1), False)
    out = theria.sdpa(q, k2, v2, enable_gqa=True, backend="fused")
    assert rel_err([out], [out_ref_gqa]) <= theria.tolerance(torch.float32, 0)
    assert "attn_mask or grouped heads" in theria.select_backend(q, k2, v2, enable_gqa=True)[1]


def reference_masked(q, k, v, mask):
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return q, k, v, out


