"""A small fused forward + backward for compute-sanitizer (memcheck, racecheck): odd sizes, causal."""
import sys

import torch

sys.path.insert(0, "python")
import theria  # noqa: E402

for dtype, dim in ((torch.bfloat16, 64), (torch.float16, 96), (torch.float32, 40)):
    for causal in (False, True):
        q, k, v = (torch.randn(1, 2, 37, dim, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        out = theria.sdpa(q, k, v, is_causal=causal, backend="fused")
        torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
torch.cuda.synchronize()
print("sanitizer case done")
