"""Small fused cases for compute-sanitizer (memcheck, racecheck): odd sizes, causal and not. First order
at head dims 64, 96 and 40 (tensor-core and SIMT kernels); at 128 the warpgroup kernels too: the double
backward (tangent pass, backward-JVP) and the backward-JVP along a dout tangent. The forward over many key blocks
(the warp-specialised kernel) with grouped heads, and float32 at "high" on the warpgroup forward, backward, tangent
and backward-JVP kernels; the warpgroup kernels' grouped and masked builds, and their split last wave; the mma.sync
one-pass JVP at head dim 32. Then degenerate shapes (every zero size, L = 1, S = 1) through every order, and the
deterministic (ordered dQ) path."""
import sys

import torch

sys.path.insert(0, "python")
import theria  # noqa: E402

ops = torch.ops.theria
for dtype, dim in ((torch.bfloat16, 64), (torch.float16, 96), (torch.float32, 40), (torch.bfloat16, 128)):
    for causal in (False, True):
        q, k, v = (torch.randn(1, 2, 37, dim, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
        if dim != 128:
            torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
            continue
        g = torch.autograd.grad(out, (q, k, v), torch.randn_like(out), create_graph=True)
        torch.autograd.grad(sum((gi * torch.randn_like(gi)).sum() for gi in g), (q, k, v))
        with torch.no_grad():
            o, lse = ops.sdpa_fwd(q, k, v, causal, dim ** -0.5, "fused")
            t = [torch.randn_like(q) for _ in range(5)]
            ops.sdpa_bwd_jvp(q, k, v, o, lse, t[0], t[1], t[2], t[3], t[4], causal, dim ** -0.5, "fused")


def every_order(q, k, v, causal):
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = theria.sdpa(q, k, v, is_causal=causal, backend="auto")
    g = torch.autograd.grad(out, (q, k, v), torch.randn_like(out), create_graph=True)
    torch.autograd.grad(sum((gi * torch.randn_like(gi)).sum() for gi in g), (q, k, v), allow_unused=True)
    with torch.autograd.forward_ad.dual_level():
        dual = [torch.autograd.forward_ad.make_dual(x.detach(), torch.randn_like(x)) for x in (q, k, v)]
        torch.autograd.forward_ad.unpack_dual(theria.sdpa(*dual, is_causal=causal))


for dtype, dim in ((torch.bfloat16, 64), (torch.float32, 40)):
    for lead, L, S, E, Ev in (((0, 2), 5, 7, dim, dim), ((1, 2), 0, 7, dim, dim), ((1, 2), 5, 0, dim, dim),
                              ((1, 2), 5, 7, 0, dim), ((1, 2), 5, 7, dim, 0), ((1, 2), 1, 7, dim, dim),
                              ((1, 2), 7, 1, dim, dim)):
        for causal in (False, True):
            every_order(torch.randn(*lead, L, E, device="cuda", dtype=dtype),
                        torch.randn(*lead, S, E, device="cuda", dtype=dtype),
                        torch.randn(*lead, S, Ev, device="cuda", dtype=dtype), causal)
# The forward over many key blocks (the warp-specialised kernel from 8192 keys at head dims 64 and 128, its stage
# rings refilled), ragged ends, L != S under the causal mask, grouped-query heads.
for dim in (64, 128):
    for L, S in ((300, 461), (461, 300), (300, 8250)):
        q = torch.randn(1, 4, L, dim, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(1, 2, S, dim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        for causal in (False, True):
            theria.sdpa(q, k, v, is_causal=causal, enable_gqa=True, backend="fused")
# float32 at precision "high" on the warpgroup forward, backward, tangent and backward-JVP kernels (their operands'
# largest magnitudes first, then their scaled float16 copies in scratch: Float32Half), through every order (the double
# backward, the one-pass JVP), and the backward-JVP along a dout tangent; ragged ends, more queries than keys and
# fewer.
torch.set_float32_matmul_precision("high")
for dim in (64, 128):
    for L, S in ((300, 461), (461, 300)):
        q = torch.randn(1, 2, L, dim, device="cuda")
        k, v = (torch.randn(1, 2, S, dim, device="cuda") for _ in range(2))
        for causal in (False, True):
            every_order(q, k, v, causal)
            o, lse = ops.sdpa_fwd(q, k, v, causal, dim ** -0.5, "fused")
            t = [torch.randn_like(x) for x in (q, q, k, v, q)]  # dout, q_dot, k_dot, v_dot, dout_dot
            ops.sdpa_bwd_jvp(q, k, v, o, lse, t[0], t[1], t[2], t[3], t[4], causal, dim ** -0.5, "fused")
torch.set_float32_matmul_precision("highest")
# The warpgroup kernels' grouped and masked builds at head dim 128 (TMA copies of key-side views addressed by group),
# through the double backward: grouped heads with a key-padding mask, and a float mask.
q = torch.randn(1, 4, 77, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
k, v = (torch.randn(1, 2, 61, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
pad = torch.arange(61, device="cuda") < 50
for mask in (pad.view(1, 1, 1, 61), torch.randn(1, 4, 77, 61, device="cuda", dtype=torch.bfloat16)):
    out = theria.sdpa(q, k, v, attn_mask=mask, enable_gqa=True, backend="fused")
    g = torch.autograd.grad(out, (q, k, v), torch.randn_like(out), create_graph=True)
    torch.autograd.grad(sum((gi * torch.randn_like(gi)).sum() for gi in g), (q, k, v))
# The warpgroup backward kernels' split last wave (tile_policy.h, plan_bwd_tail): a wave of key blocks and a few
# more (three blocks a head, the last ragged), their walks split, through the double backward.
heads = torch.cuda.get_device_properties(0).multi_processor_count // 3 + 1
for dim in (64, 128):
    q = torch.randn(1, heads, 2048, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, heads, 300, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    out = theria.sdpa(q, k, v, backend="fused")
    g = torch.autograd.grad(out, (q, k, v), torch.randn_like(out), create_graph=True)
    torch.autograd.grad(g, (q, k, v), [torch.randn_like(gi) for gi in g])
# The mma.sync one-pass JVP at head dim 32, whose rescale is skipped where no row of a warp moved its max
# (FwdTile::jvp_skips_rescale): fp16 and bf16, causal or not, grouped heads, ragged ends over several key blocks.
for dtype in (torch.bfloat16, torch.float16):
    for causal in (False, True):
        for kv_heads in (4, 2):
            q = torch.randn(2, 4, 131, 32, device="cuda", dtype=dtype)
            k, v = (torch.randn(2, kv_heads, 203, 32, device="cuda", dtype=dtype) for _ in range(2))
            with torch.autograd.forward_ad.dual_level():
                dual = [torch.autograd.forward_ad.make_dual(x, torch.randn_like(x)) for x in (q, k, v)]
                torch.autograd.forward_ad.unpack_dual(theria.sdpa(*dual, is_causal=causal, enable_gqa=kv_heads != 4,
                                                                  backend="fused"))
torch.use_deterministic_algorithms(True)
for dim in (64, 128):
    every_order(*(torch.randn(1, 2, 77, dim, device="cuda", dtype=torch.bfloat16) for _ in range(3)), True)
torch.use_deterministic_algorithms(False)
torch.cuda.synchronize()
print("sanitizer case done")
