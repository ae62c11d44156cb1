"""The MAML step as PyTorch users write it — torch.func.functional_call plus
torch.autograd.grad(create_graph=True) — with theria.sdpa inside a small nn.Module."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import theria

# The model of the distributed example (examples/distributed_maml.py), the one small attention model the tests share.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from distributed_maml import TinyAttentionClassifier  # noqa: E402


def meta_loss(model, params, support, query, inner_steps=2, inner_lr=0.3, create_graph=True):
    fast = dict(params)
    for _ in range(inner_steps):
        loss = F.cross_entropy(functional_call(model, fast, (support[0],)), support[1])
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        fast = {name: p - inner_lr * g for (name, p), g in zip(fast.items(), grads)}
    return F.cross_entropy(functional_call(model, fast, (query[0],)), query[1])


def make_task(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = lambda n: torch.randn(n, 7, 16, generator=g, dtype=dtype)  # noqa: E731
    y = lambda n: torch.randint(0, 3, (n,), generator=g)  # noqa: E731
    return (x(10), y(10)), (x(12), y(12))


def meta_gradient(backend, create_graph=True, inner_steps=2):
    torch.manual_seed(0)
    model = TinyAttentionClassifier(backend=backend).double()
    params = {n: p for n, p in model.named_parameters()}
    loss = meta_loss(model, params, *make_task(1), inner_steps=inner_steps, create_graph=create_graph)
    return loss, torch.autograd.grad(loss, list(params.values()), retain_graph=True)


def flat(gs):
    return torch.cat([g.reshape(-1) for g in gs])


@pytest.mark.parametrize("inner_steps", [1, 3])
def test_explicit_meta_gradient_equals_reference(inner_steps):
    _, got = meta_gradient("explicit", inner_steps=inner_steps)
    _, want = meta_gradient("reference", inner_steps=inner_steps)
    assert ((flat(got) - flat(want)).norm() / flat(want).norm()).item() <= 1e-9


def test_full_maml_differs_from_first_order_through_theria_double_backward():
    loss, full = meta_gradient("explicit", create_graph=True)
    _, first_order = meta_gradient("explicit", create_graph=False)
    assert ((flat(full) - flat(first_order)).norm() / flat(full).norm()).item() > 1e-3

    names, stack, seen = set(), [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack.extend(fn for fn, _ in node.next_functions)
    assert "theria::SdpaBwdBackward" in names


def test_meta_training_step_reduces_query_loss():
    model = TinyAttentionClassifier(backend="explicit").double()
    params = {n: p for n, p in model.named_parameters()}
    support, query = make_task(2)
    before = meta_loss(model, params, support, query).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        meta_loss(model, params, support, query).backward()
        opt.step()
    assert meta_loss(model, params, support, query).item() < before
