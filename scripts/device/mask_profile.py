"""Kernel times (torch.profiler, per forward + backward, mean of 5 after 3 warm-up) of theria's fused backend on
B8 H16 T2048 D64 bf16 under masks that vary by query, beside no mask and is_causal: what the tile map costs
(mask_tiles_kernel), what an all-visible mask costs the masked build (all-true, zero-bias), and how far a causal mask
passed as a tensor is from is_causal.
    eval "$(bash scripts/device/use_build.sh)"; PYTHONPATH=python python3 scripts/device/mask_profile.py
"""
import torch
import theria
from torch.profiler import profile, ProfilerActivity

B, H, L, D = 8, 16, 2048, 64
dt = torch.bfloat16
q, k, v, do = (torch.randn(B, H, L, D, device="cuda", dtype=dt) for _ in range(4))
tril = torch.ones(L, L, dtype=torch.bool, device="cuda").tril()
masks = {
    "none": None,
    "all-true": torch.ones(B, 1, L, L, dtype=torch.bool, device="cuda"),
    "causal-tensor": tril.expand(B, 1, L, L).contiguous(),
    "causal-padding": tril.expand(B, 1, L, L).contiguous(),
    "zero-bias": torch.zeros(1, 1, L, L, dtype=dt, device="cuda"),
}
masks["causal-padding"][B // 2:, ..., : L // 4] = False
for name, m in list(masks.items()) + [("is_causal", None)]:
    kw = dict(is_causal=True) if name == "is_causal" else dict(attn_mask=m)
    qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
    for _ in range(3):
        out = theria.sdpa(qq, kk, vv, backend="fused", **kw)
        torch.autograd.grad(out, (qq, kk, vv), do)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            out = theria.sdpa(qq, kk, vv, backend="fused", **kw)
            torch.autograd.grad(out, (qq, kk, vv), do)
        torch.cuda.synchronize()
    rows = {}
    for e in prof.key_averages():
        if e.device_type.name == "CUDA" or getattr(e, "self_device_time_total", 0) > 0:
            t = getattr(e, "self_device_time_total", 0) / 5 / 1000
            if t > 0.001:
                rows[e.key[:60]] = t
    print(f"== {name}: " + ", ".join(f"{k} {t:.3f} ms" for k, t in sorted(rows.items(), key=lambda x: -x[1])))
