"""Where an HVP's time goes: every CUDA kernel of one HVP as `theria bench --mode hvp` takes it (backward with
create_graph, then the gradient of <g, u>), from torch.profiler's CUDA activity records, summed per kernel name and
divided by the iterations; beside it the iteration's wall time (CUDA events) and the GPU's idle share, and flash's
forward+backward the same way for the issue-18 ratio.
    THERIA_LIBRARY=... python3 scripts/device/hvp_timeline.py [--shapes 8,16,2048,64 ...] [--iters 5]
"""
import argparse
import collections
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

import theria


def hvp_once(q, k, v, dout, u):
    x = [t.detach().requires_grad_() for t in (q, k, v)]
    out = theria.sdpa(*x, backend="fused")
    g = torch.autograd.grad(out, x, dout, create_graph=True)
    gu = sum((gi * ui).sum() for gi, ui in zip(g, u))
    torch.autograd.grad(gu, x)


def flash_fwd_bwd_once(q, k, v, dout, u):
    x = [t.detach().requires_grad_() for t in (q, k, v)]
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out = F.scaled_dot_product_attention(*x)
    torch.autograd.grad(out, x, dout)


def wall_ms(fn, inputs, iters):
    times = []
    for i in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*inputs)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_table(fn, inputs, iters):
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn(*inputs)
        torch.cuda.synchronize()
    per_name = collections.defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per_name[e.name][0] += e.device_time / 1000.0 / iters  # us -> ms per iteration
            per_name[e.name][1] += 1
    return sorted(((ms, n // iters, name) for name, (ms, n) in per_name.items()), reverse=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=["8,16,2048,64", "8,16,2048,128"])
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    for shape in a.shapes:
        b, h, l, d = map(int, shape.split(","))
        g = torch.Generator(device="cuda").manual_seed(d)
        q, k, v, dout, uq, uk, uv = (torch.randn((b, h, l, d), device="cuda", dtype=torch.bfloat16, generator=g)
                                     for _ in range(7))
        inputs = (q, k, v, dout, (uq, uk, uv))
        for label, fn in (("theria HVP", hvp_once), ("flash fwd+bwd", flash_fwd_bwd_once)):
            for _ in range(3):
                fn(*inputs)
            wall = wall_ms(fn, inputs, a.iters)
            table = kernel_table(fn, inputs, a.iters)
            busy = sum(ms for ms, _, _ in table)
            print(f"\n{label} {shape}: wall {wall:.3f} ms, kernels {busy:.3f} ms ({100 * busy / wall:.0f} % busy)")
            for ms, n, name in table:
                print(f"  {ms:8.3f} ms  x{n:<3d} {name[:150]}")


if __name__ == "__main__":
    main()
