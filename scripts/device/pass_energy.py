"""Energy per call of each attention pass at the card's power cap: every pass run alone in a loop long enough to hold
the cap (after a warm-up as long), while nvidia-smi samples board power and SM clock; per pass the time per call
(CUDA events over the loop), the median SM clock and power of the loop's samples, and the energy per call and per
matrix product (2·L·S·D FLOPs each, as `theria bench` counts them). The question it answers (issue 18): at a power
cap the time of a pass is its energy over the cap, so which pass spends the most energy per product?
    THERIA_LIBRARY=... python3 scripts/device/pass_energy.py [--shape 2,16,8192,128] [--seconds 3] [--passes "theria b,flash"]
"""
import argparse
import statistics
import subprocess
import tempfile
import time

import torch

import theria  # noqa: F401  (registers torch.ops.theria)
from clock_summary import stamp  # nvidia-smi's timestamps (this folder's scripts)
from hvp_timeline import flash_fwd_bwd_of, hvp_of

ops = torch.ops.theria


def passes(q, k, v, dout, u, scale):
    """name -> (call, matrix products per call)."""
    with torch.no_grad():
        out, lse = ops.sdpa_fwd(q, k, v, False, scale, "fused")
        f = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, scale=scale)

    def flash_bwd():  # (out, logsumexp, cum_seq_q, cum_seq_k, max_q, max_k, philox seed and offset) of the forward
        torch.ops.aten._scaled_dot_product_flash_attention_backward(
            dout, q, k, v, f[0], f[1], f[2], f[3], f[4], f[5], 0.0, False, f[6], f[7], scale=scale)

    hvp = hvp_of(lambda *x: ops.sdpa(*x, False, scale, "fused"))  # as `theria bench --mode hvp` takes it
    flash_fwd_bwd = flash_fwd_bwd_of(False)  # (its default scale: D ** -0.5, as here)
    return {
        "theria forward": (lambda: ops.sdpa_fwd(q, k, v, False, scale, "fused"), 2),
        "theria JVP (one pass)": (lambda: ops.sdpa_jvp(q, k, v, u[0], u[1], u[2], False, scale, "fused"), 6),
        "theria backward": (lambda: ops.sdpa_bwd(q, k, v, out, lse, dout, False, scale, "fused"), 5),
        "theria tangent + backward-JVP": (
            lambda: ops.sdpa_bwd_jvp(q, k, v, out, lse, dout, u[0], u[1], u[2], None, False, scale, "fused"), 15),
        "theria HVP": (lambda: hvp(q, k, v, dout, u), 22),
        "flash forward": (lambda: torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, scale=scale), 2),
        "flash backward": (flash_bwd, 5),
        "flash forward+backward": (lambda: flash_fwd_bwd(q, k, v, dout, u), 7),
    }


def loop(fn, seconds):
    """Calls fn for about `seconds`; returns (calls, ms per call by CUDA events, host start, host end)."""
    torch.cuda.synchronize()
    start_host = time.time()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    calls = 0
    while time.time() - start_host < seconds:
        for _ in range(4):
            fn()
        calls += 4
        if calls % 32 == 0:  # (the host no more than 32 calls ahead)
            torch.cuda.synchronize()
    end.record()
    end.synchronize()
    return calls, start.elapsed_time(end) / calls, start_host, time.time()


def sampler(log):
    """nvidia-smi sampling every 20 ms into the file `log` (a pipe would fill and stall it)."""
    fields = "timestamp,clocks.sm,power.draw.instant"
    probe = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or "Field" in probe.stdout + probe.stderr:
        fields = "timestamp,clocks.sm,power.draw"
    return subprocess.Popen(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-lms", "20"],
                            stdout=log), fields


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="2,16,8192,128")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--passes", default="", help="comma-separated prefixes of the pass names to run (default: all)")
    args = ap.parse_args()
    B, H, L, D = (int(x) for x in args.shape.split(","))
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    u = [torch.randn_like(q) for _ in range(3)]
    flops_per_product = 2.0 * B * H * L * L * D
    log = tempfile.TemporaryFile(mode="w+")
    proc, fields = sampler(log)
    results = []
    wanted = [w.strip() for w in args.passes.split(",") if w.strip()]
    for name, (fn, products) in passes(q, k, v, dout, u, D ** -0.5).items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        loop(fn, args.seconds)  # warm-up: the clock settles at the cap
        calls, ms, t0, t1 = loop(fn, args.seconds)
        results.append((name, products, calls, ms, t0, t1))
        time.sleep(0.5)
    time.sleep(0.2)
    proc.terminate()
    proc.wait()
    log.seek(0)
    samples = []
    for line in log.read().splitlines():
        cells = [c.strip() for c in line.split(",")]
        try:
            samples.append((stamp(cells[0]), float(cells[1]), float(cells[2])))
        except (ValueError, IndexError):
            continue
    print(f"theria pass energy on {torch.cuda.get_device_name()}: bf16 {args.shape}, non-causal, {args.seconds:.1f} s "
          f"a pass after as long a warm-up ({fields.split(',')[-1]} sampled every 20 ms)\n")
    print(f"{'pass':32s} {'products':>8s} {'ms/call':>8s} {'TFLOP/s':>8s} {'SM MHz':>7s} {'W':>6s} {'J/call':>7s} "
          f"{'mJ/product':>10s}")
    for name, products, calls, ms, t0, t1 in results:
        inside = [s for s in samples if t0 + 0.1 <= s[0] <= t1]
        if not inside:
            print(f"{name:32s} no samples")
            continue
        watts = statistics.mean(s[2] for s in inside)
        mhz = statistics.median(s[1] for s in inside)
        joules = watts * ms / 1000.0
        tflops = products * flops_per_product / (ms / 1000.0) / 1e12
        print(f"{name:32s} {products:8d} {ms:8.3f} {tflops:8.1f} {mhz:7.0f} {watts:6.0f} {joules:7.3f} "
              f"{1000.0 * joules / products:10.2f}")


if __name__ == "__main__":
    main()
