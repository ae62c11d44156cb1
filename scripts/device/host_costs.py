"""Host time to enqueue each fused op, median of many calls, per dtype and float32 precision: where a small,
host-bound HVP spends its issue time (the GPU idle before each call: synchronised before, not inside).
    THERIA_LIBRARY=... python3 scripts/device/host_costs.py [--shape 32,4,256,64] [--iters 50]
"""
import argparse

import torch

import theria  # noqa: F401  (loads libtheria: torch.ops.theria)
from hvp_timeline import host_ms, hvp_of  # (this folder is the script's: first on sys.path)

ops = torch.ops.theria


def host_us(fn, iters):
    for _ in range(3):
        fn()
    return 1000.0 * host_ms(fn, (), iters)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="32,4,256,64")
    ap.add_argument("--iters", type=int, default=50)
    a = ap.parse_args()
    shape = tuple(map(int, a.shape.split(",")))
    for label, dtype, precision in (("bf16", torch.bfloat16, "highest"), ("fp32 high", torch.float32, "high"),
                                    ("fp32 highest", torch.float32, "highest")):
        torch.set_float32_matmul_precision(precision)
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v, dout, qd, kd, vd = (torch.randn(shape, device="cuda", dtype=dtype, generator=g) for _ in range(7))
        scale = shape[-1] ** -0.5
        out, lse = ops.sdpa_fwd(q, k, v, False, scale, "fused")
        x = [t.detach().requires_grad_() for t in (q, k, v)]
        theria_hvp = hvp_of(lambda *qkv: theria.sdpa(*qkv, backend="fused"))
        rows = {
            "get_float32_matmul_precision": lambda: torch.get_float32_matmul_precision(),
            "empty_like x1": lambda: torch.empty_like(q),
            "select_backend": lambda: ops.select_backend(q, k, v, False, "fused"),
            "sdpa_fwd": lambda: ops.sdpa_fwd(q, k, v, False, scale, "fused"),
            "sdpa_bwd": lambda: ops.sdpa_bwd(q, k, v, out, lse, dout, False, scale, "fused"),
            "sdpa_jvp": lambda: ops.sdpa_jvp(q, k, v, qd, kd, vd, False, scale, "fused"),
            "sdpa_bwd_jvp": lambda: ops.sdpa_bwd_jvp(q, k, v, out, lse, dout, qd, kd, vd, None, False, scale,
                                                     "fused"),
            "theria.sdpa (grad)": lambda: theria.sdpa(*x, backend="fused"),  # the op with its autograd node
            "HVP": lambda: theria_hvp(q, k, v, dout, (qd, kd, vd)),
        }
        print(f"{label} {a.shape}: " + ", ".join(f"{name} {host_us(fn, a.iters):.1f} us" for name, fn in rows.items()))


if __name__ == "__main__":
    main()
