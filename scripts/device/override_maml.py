"""A MAML meta-step through an unmodified nn.TransformerEncoderLayer stack on the GPU, three ways, same run:

  theria    inside theria.sdpa_override() (every attention call served by theria's fused kernels)
  math      PyTorch's math SDPA backend (the one PyTorch backend whose backward is twice differentiable)
  default   PyTorch's own choice (flash / efficient): its backward has no derivative, so the meta-step raises

One meta-step = `inner` SGD steps on a support batch with create_graph=True, the query loss through the adapted
weights, and its gradient with respect to the initial weights (second order through every attention call).
Time: CUDA events, medians of --iters after --warmup; memory: peak allocated during one step.
  python scripts/device/override_maml.py --seq-len 1024,2048,4096 --json out.json
"""
import argparse
import json
import statistics

import torch
from torch.func import functional_call

import theria


def model_and_data(args, seq_len, device, dtype):
    torch.manual_seed(0)
    layer = lambda: torch.nn.TransformerEncoderLayer(args.dim, args.heads, 4 * args.dim, dropout=0.0,  # noqa: E731
                                                     batch_first=True, norm_first=True)
    model = torch.nn.Sequential(*[layer() for _ in range(args.layers)]).to(device, dtype)
    x = lambda: torch.randn(args.batch, seq_len, args.dim, device=device, dtype=dtype)  # noqa: E731
    return model, (x(), x(), x(), x())


def meta_step(model, data, inner, lr):
    xs, ys, xq, yq = data
    params = {n: p for n, p in model.named_parameters()}
    fast = dict(params)
    for _ in range(inner):
        loss = (functional_call(model, fast, (xs,)) - ys).float().pow(2).mean()
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {n: w - lr * g for (n, w), g in zip(fast.items(), grads)}
    meta_loss = (functional_call(model, fast, (xq,)) - yq).float().pow(2).mean()
    return torch.autograd.grad(meta_loss, list(params.values()))


def measure(way, model, data, args):
    def one():
        if way == "theria":
            with theria.sdpa_override(strict=True) as routed:
                out = meta_step(model, data, args.inner, args.lr)
            assert routed.served > 0 and not routed.fallbacks
            return out
        if way == "math":
            with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
                return meta_step(model, data, args.inner, args.lr)
        return meta_step(model, data, args.inner, args.lr)

    try:
        for _ in range(args.warmup):
            one()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        times = []
        for _ in range(args.iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            grads = one()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        return {"status": "ok", "median_ms": statistics.median(times), "peak_mib": peak, "grads": grads}
    except torch.OutOfMemoryError:
        return {"status": "out of memory"}
    except RuntimeError as e:
        return {"status": "raises: " + str(e).splitlines()[0][:160]}
    finally:
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", default="1024,2048,4096")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--inner", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    rows = []
    print(f"MAML meta-step ({args.inner} inner step) through {args.layers} x nn.TransformerEncoderLayer"
          f"(d={args.dim}, heads={args.heads}), batch {args.batch}, {args.dtype}, {torch.cuda.get_device_name()}")
    print(f"{'T':>6} {'way':>8} {'median ms':>10} {'peak MiB':>9} {'vs math':>8} {'cos vs math':>11}  status")
    for t in (int(s) for s in args.seq_len.split(",")):
        model, data = model_and_data(args, t, "cuda", dtype)
        results = {way: measure(way, model, data, args) for way in ("math", "theria", "default")}
        m = results["math"]
        for way, r in results.items():
            row = {"seq_len": t, "way": way, "status": r["status"]}
            if r["status"] == "ok":
                row.update(median_ms=r["median_ms"], peak_mib=r["peak_mib"])
                if m["status"] == "ok":
                    row["speedup_vs_math"] = m["median_ms"] / r["median_ms"]
                    a = torch.cat([g.double().flatten() for g in r["grads"]])
                    b = torch.cat([g.double().flatten() for g in m["grads"]])
                    row["cosine_vs_math"] = (a @ b / (a.norm() * b.norm())).item()
            rows.append(row)
            fmt = lambda k, f: format(row[k], f) if k in row else "-"  # noqa: E731
            print(f"{t:>6} {way:>8} {fmt('median_ms', '10.2f')} {fmt('peak_mib', '9.0f')} "
                  f"{fmt('speedup_vs_math', '8.2f')} {fmt('cosine_vs_math', '11.6f')}  {row['status']}")
        del model, data, results
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python scripts/device/override_maml.py", "args": vars(args),
                       "device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
