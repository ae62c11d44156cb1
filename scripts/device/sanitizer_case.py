"""Small fused cases for compute-sanitizer (memcheck, racecheck): odd sizes, causal and not. First order
at head dims 64, 96 and 40 (tensor-core and SIMT kernels); at 128 the warpgroup kernels too: the double
backward (tangent pass, backward-JVP) and the backward-JVP along a dout tangent."""
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
torch.cuda.synchronize()
print("sanitizer case done")
