"""Per-op times of the fused backend (the pieces of the HVP: sdpa_fwd, sdpa_jvp, sdpa_bwd, sdpa_bwd_jvp
as the double backward calls it) and a correctness check of each against the float64 reference, for
comparing kernel variants built side by side (scripts/device/variants.sh). CUDA events, warm-up,
median over iterations, three input sets rotated.
    THERIA_LIBRARY=... python3 scripts/device/op_times.py [--shapes 8,16,2048,64 ...]
"""
import argparse
import statistics

import torch

import theria  # noqa: F401  (loads libtheria: torch.ops.theria)

ops = torch.ops.theria


def timed(fn, sets, warmup=3, iters=15):
    for i in range(warmup):
        fn(*sets[i % len(sets)])
    times = []
    for i in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*sets[i % len(sets)])
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def make(shape, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(shape, device="cuda", dtype=dtype, generator=g) for _ in range(7)]


def rel_err(x, ref):
    if x is None or x.numel() == 0:  # an output the call did not ask for (bwd_jvp's mask gradient)
        return 0.0
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp_min(1.0)).item()


def check(dtype, d, causal, precision):
    # Odd sizes; fresh inputs; fused vs the reference backend in float64.
    q, k, v, dout, qd, kd, vd = make((2, 3, 77, d), dtype, seed=d + causal)
    k, v, kd, vd = (t[:, :, :61].contiguous() for t in (k, v, kd, vd))
    scale = d ** -0.5
    out, lse = ops.sdpa_fwd(q, k, v, causal, scale, "fused")
    args64 = [t.double() for t in (q, k, v)]
    out64, lse64 = ops.sdpa_fwd(*args64, causal, scale, "reference")
    tang = [qd, kd, vd]
    got = ops.sdpa_jvp(q, k, v, *tang, causal, scale, "fused")
    ref = ops.sdpa_jvp(*args64, *[t.double() for t in tang], causal, scale, "reference")
    errs = {"jvp": max(rel_err(a, b) for a, b in zip(got, ref))}
    got = ops.sdpa_bwd_jvp(q, k, v, out, lse, dout, *tang, None, causal, scale, "fused")
    ref = ops.sdpa_bwd_jvp(*args64, out64, lse64, dout.double(), *[t.double() for t in tang], None, causal, scale,
                           "reference")
    errs["bwd_jvp"] = max(rel_err(a, b) for a, b in zip(got, ref))
    got = ops.sdpa_bwd(q, k, v, out, lse, dout, causal, scale, "fused")
    ref = ops.sdpa_bwd(*args64, out64, lse64, dout.double(), causal, scale, "reference")
    errs["bwd"] = max(rel_err(a, b) for a, b in zip(got, ref))
    tol = ops.float32_tolerance(precision, 2) if dtype == torch.float32 else ops.tolerance(dtype, 2)
    return errs, tol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="*", default=["8,16,2048,64", "8,16,2048,128"])
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--deterministic", action="store_true",
                    help="also time bwd and bwd_jvp under torch.use_deterministic_algorithms(True) (ordered dQ adds)")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--float32-precision", default="highest", choices=["highest", "high", "medium"],
                    help="torch.set_float32_matmul_precision for --dtype fp32 (the kernels theria picks follow it)")
    args = ap.parse_args()
    causal = args.causal
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    torch.set_float32_matmul_precision(args.float32_precision)
    worst = 0.0
    for d in (64, 128):
        for check_causal in (False, True):  # (its own name: the timings below use --causal)
            errs, tol = check(dtype, d, check_causal, args.float32_precision)
            worst = max(worst, max(errs.values()) / tol)
            print(f"check d={d} causal={check_causal}: " + " ".join(f"{k}={v:.2e}" for k, v in errs.items())
                  + f" tol={tol:.1e}")
    print(f"check worst error / tolerance = {worst:.2f} ({'ok' if worst <= 1 else 'FAIL'})")
    for s in args.shapes:
        b, h, l, d = map(int, s.split(","))
        sets = [make((b, h, l, d), dtype, seed=i) for i in range(3)]
        scale = d ** -0.5
        stats = [ops.sdpa_fwd(q, k, v, causal, scale, "fused") for q, k, v, *_ in sets]
        sets = [(*t, *st) for t, st in zip(sets, stats)]
        bwd = lambda q, k, v, do, qd, kd, vd, out, lse: ops.sdpa_bwd(q, k, v, out, lse, do, causal, scale,  # noqa: E731
                                                                     "fused")
        bwd_jvp = lambda q, k, v, do, qd, kd, vd, out, lse: ops.sdpa_bwd_jvp(  # noqa: E731
            q, k, v, out, lse, do, qd, kd, vd, None, causal, scale, "fused")
        row = {
            "fwd": timed(lambda q, k, v, *r: ops.sdpa_fwd(q, k, v, causal, scale, "fused"), sets),
            "jvp": timed(lambda q, k, v, o, qd, kd, vd, *r: ops.sdpa_jvp(q, k, v, qd, kd, vd, causal, scale, "fused"),
                         sets),
            "bwd": timed(bwd, sets),
            "bwd_jvp": timed(bwd_jvp, sets),
        }
        if args.deterministic:
            torch.use_deterministic_algorithms(True)
            row["bwd_det"], row["bwd_jvp_det"] = timed(bwd, sets), timed(bwd_jvp, sets)
            torch.use_deterministic_algorithms(False)
        # Matrix products of L x S x D per pass (2 L S D FLOPs each): the double backward's bwd_jvp is a
        # tangent pass (5) and the backward-JVP (10).
        products = {"fwd": 2, "jvp": 6, "bwd": 5, "bwd_jvp": 15, "bwd_det": 5, "bwd_jvp_det": 15}
        flop = 2.0 * b * h * l * l * d * (0.5 if causal else 1.0)
        print(f"times {s}: " + " ".join(f"{k}={v:.3f}ms ({products[k] * flop / v / 1e9:.0f} TFLOP/s)"
                                         for k, v in row.items()))


if __name__ == "__main__":
    main()
