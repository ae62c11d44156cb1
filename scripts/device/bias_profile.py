"""Kernel times (torch.profiler, mean of 5 after 3 warm-up) of theria's fused backend on B8 H16 T2048 D64/D128 bf16
under an additive bias: where a dense bias's time goes. Rows: no mask; a (1, H, L, S) bias of zeros (the tile map
shows every tile plain: nothing folded); a random (1, H, L, S) bias (every tile folded), without and with its
gradient (the backward then writes dS into the bias's shape with atomics); the same random bias as a full
(B, H, L, S) tensor with its gradient (stored, no atomics).
    eval "$(bash scripts/device/use_build.sh)"; PYTHONPATH=python python3 scripts/device/bias_profile.py
"""
import torch
import theria
from torch.profiler import profile, ProfilerActivity

B, H, L = 8, 16, 2048
dt = torch.bfloat16
for D in (64, 128):
    q, k, v, do = (torch.randn(B, H, L, D, device="cuda", dtype=dt) for _ in range(4))
    bias = torch.randn(1, H, L, L, device="cuda", dtype=dt) * 0.5
    cases = {
        "none": (None, False),
        "zero-bias": (torch.zeros_like(bias), False),
        "bias": (bias, False),
        "bias+grad": (bias, True),
        "full-bias+grad": (bias.expand(B, H, L, L).contiguous(), True),
    }
    for name, (m, grad) in cases.items():
        x = [t.detach().requires_grad_() for t in (q, k, v)]
        if grad:
            x.append(m.detach().requires_grad_())

        def step():
            out = theria.sdpa(*x[:3], attn_mask=x[3] if grad else m, backend="fused")
            torch.autograd.grad(out, x, do)

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        rows = {}
        for e in prof.key_averages():
            t = getattr(e, "self_device_time_total", 0) / 5 / 1000
            if t > 0.005:
                rows[e.key[:70]] = t
        total = sum(rows.values())
        print(f"D={D} {name}: total {total:.3f} ms")
        for key, t in sorted(rows.items(), key=lambda kv: -kv[1])[:6]:
            print(f"    {t:8.3f} ms  {key}")
