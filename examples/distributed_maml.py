"""MAML meta-batches across processes with torch.distributed and theria (docs/distributed.md).

    torchrun --standalone --nproc-per-node 2 examples/distributed_maml.py --out out/dist     # Gloo, CPU
    torchrun --standalone --nproc-per-node 2 examples/distributed_maml.py --device cuda      # NCCL, one GPU per rank
    python examples/distributed_maml.py                                                     # one process

DistributedDataParallel is the wrong tool for MAML: its reducer does not support backward with create_graph
(PyTorch issue 63812). What a meta-batch needs is simpler: every rank takes a contiguous block of the meta-batch's
tasks, computes the sum of their second-order meta-gradients (theria's double backward through attention), and one
all-reduce of all gradients, flattened into a single message, adds them; every rank divides by the global task
count and takes the same Adam step. The union of the ranks' tasks is the one-process run's meta-batch, so the
result is the one-process result up to the order of a floating-point sum.
"""
import argparse
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import theria


class TinyAttentionClassifier(nn.Module):
    """One attention block over a sequence, classifying its first token."""

    def __init__(self, dim=16, heads=2, classes=3, backend="auto"):
        super().__init__()
        self.heads, self.backend = heads, backend
        # No bias: a key bias leaves attention unchanged (each query's logits shift by one constant), so its gradient
        # is zero up to rounding, and Adam would turn that rounding into full-size steps that differ run to run.
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):  # x: (batch, tokens, dim)
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = theria.sdpa(q, k, v, backend=self.backend).transpose(1, 2).reshape(b, t, d)
        return self.head((x + self.out(a))[:, 0])


def task(index, device, tokens=7, dim=16, classes=3):
    """Task `index` of the stream: drawn from a generator seeded by its index, so any rank can make any task."""
    g = torch.Generator().manual_seed(1000 + index)
    x = lambda n: torch.randn(n, tokens, dim, generator=g).to(device)  # noqa: E731
    y = lambda n: torch.randint(0, classes, (n,), generator=g).to(device)  # noqa: E731
    return (x(10), y(10)), (x(12), y(12))


def query_loss_after_adaptation(model, params, support, query, inner_steps, inner_lr):
    """MAML (FULL): the inner steps keep their graph, so the meta-gradient has every second-order term."""
    fast = dict(params)
    for _ in range(inner_steps):
        loss = F.cross_entropy(functional_call(model, fast, (support[0],)), support[1])
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {name: p - inner_lr * g for (name, p), g in zip(fast.items(), grads)}
    return F.cross_entropy(functional_call(model, fast, (query[0],)), query[1])


def block_of(count, rank, world):
    """Tasks [begin, end) of `count` that `rank` takes: contiguous blocks in rank order (the C++ lab's block_of)."""
    base, extra = divmod(count, world)
    begin = rank * base + min(rank, extra)
    return begin, begin + base + (1 if rank < extra else 0)


def all_reduce_mean(grads, total_tasks):
    """The ranks' gradient sums, added in one message and divided by the global task count."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    if dist.is_initialized():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= total_tasks
    return [part.view_as(g) for part, g in zip(flat.split([g.numel() for g in grads]), grads)]


def train(meta_steps, meta_batch, inner_steps=2, inner_lr=0.3, device="cpu", backend="auto", seed=0):
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.manual_seed(seed)  # the same initial weights on every rank
    model = TinyAttentionClassifier(backend=backend).to(device)
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=3e-3)
    losses = []
    for step in range(meta_steps):
        begin, end = block_of(meta_batch, rank, world)
        first = step * meta_batch
        loss_sum = torch.zeros((), device=device)
        for i in range(first + begin, first + end):
            loss_sum = loss_sum + query_loss_after_adaptation(model, params, *task(i, device), inner_steps, inner_lr)
        grads = (torch.autograd.grad(loss_sum, list(params.values())) if end > begin
                 else [torch.zeros_like(p) for p in params.values()])
        # The loss travels with the gradients: one all-reduce per meta-step.
        reduced = all_reduce_mean(list(grads) + [loss_sum.detach().reshape(1)], meta_batch)
        for p, g in zip(params.values(), reduced[:-1]):
            p.grad = g
        opt.step()
        losses.append(reduced[-1].item())
    return model, losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-steps", type=int, default=20)
    parser.add_argument("--meta-batch", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", default=None, help="rank 0 saves the trained state_dict and losses here (torch.save)")
    args = parser.parse_args()
    device = "cpu"
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if args.device == "cuda":
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    elif args.device == "cuda":
        device = "cuda"
    model, losses = train(args.meta_steps, args.meta_batch, device=device, backend=args.backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        print(f"{args.meta_steps} meta-steps of {args.meta_batch} tasks on "
              f"{dist.get_world_size() if dist.is_initialized() else 1} process(es): "
              f"meta-loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if args.out:
            torch.save({"state_dict": model.state_dict(), "losses": losses}, args.out)
    if dist.is_initialized():
        dist.barrier()  # every rank done (rank 0 has saved) before any rank takes its connections down
        dist.destroy_process_group()
        # A Gloo worker thread can still be freeing the last all-reduce's tensors when the interpreter shuts down; the
        # GIL it then takes ends the thread and aborts the process ("terminate called without an active exception";
        # seen here under load, and pytorch/pytorch PR 179291). Everything is written by now: leave without the
        # interpreter's shutdown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
