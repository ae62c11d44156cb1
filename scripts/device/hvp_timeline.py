"""Where an HVP's time goes: every CUDA kernel of one HVP as `theria bench --mode hvp` takes it (backward with
create_graph, then the gradient of <g, u>), from torch.profiler's CUDA activity records, summed per kernel name and
divided by the iterations; beside it the iteration's wall time (CUDA events) and the GPU's idle share, and flash's
forward+backward the same way for the issue-18 ratio (or, with --compare math, PyTorch math's HVP: issue 19's
float32 floors). With --host, where a host-bound HVP's issue time goes: the host time to enqueue one HVP (no
synchronisation inside) and the operators and CUDA runtime calls per iteration by self CPU time. With --gaps, where
the GPU idles inside one iteration (synchronised before it, as the benchmark's CUDA events are): every kernel in
launch order with the idle time before it, from a marker kernel launched just before the call (medians of --iters).
    THERIA_LIBRARY=... python3 scripts/device/hvp_timeline.py [--shapes 8,16,2048,64 ...] [--iters 5]
        [--dtype bf16|fp32] [--float32-precision highest|high|medium] [--backend fused|auto] [--compare flash|math]
        [--host] [--gaps] [--causal]
"""
import argparse
import collections
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

import theria


def hvp_of(attention, form="vjp"):
    """One HVP as `theria bench --mode hvp --hvp-form FORM` takes it: vjp hands u to the backward of g as its
    grad_outputs (as torch.autograd.functional.hvp does), dot differentiates the scalar <g, u>."""
    def hvp_once(q, k, v, dout, u):
        x = [t.detach().requires_grad_() for t in (q, k, v)]
        out = attention(*x)
        g = torch.autograd.grad(out, x, dout, create_graph=True)
        if form == "vjp":
            torch.autograd.grad(g, x, u)
        else:
            torch.autograd.grad(sum((gi * ui).sum() for gi, ui in zip(g, u)), x)
    return hvp_once


def math_of(causal):
    def math_sdpa(q, k, v):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return math_sdpa


def flash_fwd_bwd_of(causal):
    def flash_fwd_bwd_once(q, k, v, dout, u):
        x = [t.detach().requires_grad_() for t in (q, k, v)]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = F.scaled_dot_product_attention(*x, is_causal=causal)
        torch.autograd.grad(out, x, dout)
    return flash_fwd_bwd_once


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


def host_ms(fn, inputs, iters):
    """Host time to enqueue one call, the GPU idle at its start (synchronised before, not inside)."""
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*inputs)
        times.append((time.perf_counter() - start) * 1000.0)
    torch.cuda.synchronize()
    return statistics.median(times)


def host_table(fn, inputs, iters):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            fn(*inputs)
        torch.cuda.synchronize()
    rows = [(e.self_cpu_time_total / 1000.0 / iters, e.count // iters, e.key) for e in prof.key_averages()]
    return sorted(rows, reverse=True)


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


def gap_table(fn, inputs, iters):
    """Per kernel of one iteration, in order: (idle before it, its own time, name), ms; medians over iterations.
    The first row's idle runs from the end of a marker kernel enqueued just before the call."""
    marker = torch.zeros(1, device="cuda")
    runs = []
    for _ in range(iters):
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            marker.zero_()
            fn(*inputs)
            torch.cuda.synchronize()
        kernels = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                         if e.device_type == torch.autograd.DeviceType.CUDA)
        rows, previous_end = [], kernels[0][1]
        for start, end, name in kernels[1:]:
            rows.append((max(0.0, start - previous_end) / 1000.0, (end - start) / 1000.0, name))
            previous_end = max(previous_end, end)
        runs.append(rows)
    count = min(len(r) for r in runs)
    return [(statistics.median(r[i][0] for r in runs), statistics.median(r[i][1] for r in runs), runs[0][i][2])
            for i in range(count)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=["8,16,2048,64", "8,16,2048,128"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--float32-precision", choices=["highest", "high", "medium"], default="highest")
    ap.add_argument("--backend", default="fused", help="theria's backend argument")
    ap.add_argument("--compare", choices=["flash", "math"], default="flash")
    ap.add_argument("--hvp-form", choices=["vjp", "dot"], default="vjp", help="as theria bench's --hvp-form")
    ap.add_argument("--host", action="store_true", help="also the host's issue time and its operators")
    ap.add_argument("--gaps", action="store_true", help="also the GPU's idle time before each kernel of an iteration")
    ap.add_argument("--causal", action="store_true", help="causal masking (is_causal) for every implementation")
    a = ap.parse_args()
    torch.set_float32_matmul_precision(a.float32_precision)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    theria_hvp = hvp_of(lambda q, k, v: theria.sdpa(q, k, v, is_causal=a.causal, backend=a.backend), a.hvp_form)
    math_hvp = ("math HVP", hvp_of(math_of(a.causal), a.hvp_form))
    other = ("flash fwd+bwd", flash_fwd_bwd_of(a.causal)) if a.compare == "flash" else math_hvp
    for shape in a.shapes:
        b, h, l, d = map(int, shape.split(","))
        g = torch.Generator(device="cuda").manual_seed(d)
        q, k, v, dout, uq, uk, uv = (torch.randn((b, h, l, d), device="cuda", dtype=dtype, generator=g)
                                     for _ in range(7))
        inputs = (q, k, v, dout, (uq, uk, uv))
        for label, fn in ((f"theria HVP ({a.backend})", theria_hvp), other):
            for _ in range(3):
                fn(*inputs)
            wall = wall_ms(fn, inputs, a.iters)
            table = kernel_table(fn, inputs, a.iters)
            busy = sum(ms for ms, _, _ in table)
            causal = " causal" if a.causal else ""
            print(f"\n{label} {shape}{causal}: wall {wall:.3f} ms, kernels {busy:.3f} ms ({100 * busy / wall:.0f} % busy)")
            for ms, n, name in table:
                print(f"  {ms:8.3f} ms  x{n:<3d} {name[:150]}")
            if a.gaps:
                rows = gap_table(fn, inputs, a.iters)
                print(f"  idle before each kernel, in launch order (total idle {sum(r[0] for r in rows):.3f} ms):")
                for idle, ms, name in rows:
                    print(f"  idle {idle:7.3f}  run {ms:7.3f} ms  {name[:110]}")
            if a.host:
                print(f"  host: {host_ms(fn, inputs, a.iters):.3f} ms to enqueue; self CPU per iteration "
                      "(profiled, so inflated):")
                for ms, n, name in host_table(fn, inputs, a.iters)[:25]:
                    print(f"  {ms:8.3f} ms  x{n:<3d} {name[:100]}")


if __name__ == "__main__":
    main()
