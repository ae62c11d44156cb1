"""torch.compile(fullgraph=True) over theria.sdpa on CPU (explicit backend): forward and
loss.backward() match eager, with static and dynamic shapes."""
import pytest
import torch

import theria
from sdpa_testing import FIRST, FORWARD, Shape, assert_all_within_tolerance, assert_within_tolerance, make_qkv, randn

F32 = torch.float32


def _forward(q, k, v, w):
    out = theria.sdpa(q, k, v, is_causal=True, backend="explicit")
    return out, (out * w).sum()


def _run(fn, shape, seed):
    """fn's forward, then loss.backward() (compiled by AOTAutograd when fn is compiled)."""
    q, k, v = make_qkv(shape, F32, seed=seed, requires_grad=True)
    w = randn(shape.out, F32, seed=seed + 100)
    out, loss = fn(q, k, v, w)
    loss.backward()
    return out.detach(), (q.grad, k.grad, v.grad)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compare(compiled, shape, seed):
    out_c, grads_c = _run(compiled, shape, seed)
    out_e, grads_e = _run(_forward, shape, seed)
    # eager is the same float32 kernels: compiled must agree within the float32 tolerances
    assert_within_tolerance(out_c, out_e, F32, FORWARD, "compiled out vs eager")
    assert_all_within_tolerance(grads_c, grads_e, F32, FIRST, ["dq", "dk", "dv"])


def test_compile_forward_backward():
    compiled = torch.compile(_forward, fullgraph=True)
    _compare(compiled, Shape((2, 3), 9, 13, 8, 4), seed=1)


def test_compile_dynamic_shapes():
    compiled = torch.compile(_forward, fullgraph=True, dynamic=True)
    for i, shape in enumerate([Shape((2, 3), 9, 13, 8, 4), Shape((3, 2), 5, 17, 8, 4)]):
        _compare(compiled, shape, seed=10 + i)
