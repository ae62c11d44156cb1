"""The tensor cores' dense bf16 rate on this GPU: torch.matmul (cuBLAS) of square bf16 matrices, CUDA events, median
of 20 after 5 warm-up, at several sizes; the largest rate is the ceiling docs/performance.md sets each pass against.
    python3 scripts/device/dense_ceiling.py
"""
import statistics

import torch


def rate(n, iters=20, warmup=5):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(warmup):
        a @ b
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    return ms, 2.0 * n ** 3 / ms / 1e9


def main():
    print(f"device: {torch.cuda.get_device_name()}")
    for n in (4096, 8192, 16384):
        ms, tflops = rate(n)
        print(f"dense bf16 {n}^3: {ms:.3f} ms, {tflops:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
