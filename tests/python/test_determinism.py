"""PyTorch's determinism contract (torch.use_deterministic_algorithms): under it, every theria op gives
bit-wise equal results from run to run. The fused backward and backward-JVP then add the key blocks'
dQ shares in a fixed order (docs/contract.md, "Determinism"); the CPU kernels and the reference are deterministic
by construction."""
import pytest
import torch

import theria

params = pytest.mark.parametrize


@pytest.fixture
def deterministic():
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(was)


def _runs(device, dtype, shape, causal, backend, order, repeats):
    """dq (order 1) or the HVP's q part (order 2) from `repeats` runs on the same inputs."""
    g = torch.Generator().manual_seed(11)
    r = lambda s: torch.randn(s, generator=g).to(device, dtype)  # noqa: E731
    B, H, L, S, D = shape
    q0, k0, v0, dout = r((B, H, L, D)), r((B, H, S, D)), r((B, H, S, D)), r((B, H, L, D))
    u = [r((B, H, L, D)), r((B, H, S, D)), r((B, H, S, D))]
    results = []
    for _ in range(repeats):
        q, k, v = (x.detach().requires_grad_() for x in (q0, k0, v0))
        out = theria.sdpa(q, k, v, is_causal=causal, backend=backend)
        grads = torch.autograd.grad(out, (q, k, v), dout, create_graph=order == 2)
        if order == 2:
            grads = torch.autograd.grad(sum((gi * ui).sum() for gi, ui in zip(grads, u)), (q, k, v))
        results.append([x.detach().clone() for x in grads])
    return results


def _assert_bitwise_equal(results):
    for run in results[1:]:
        for a, b in zip(results[0], run):
            assert torch.equal(a, b), f"runs differ by up to {(a.double() - b.double()).abs().max().item():.3e}"


@pytest.mark.gpu
@params("order", [1, 2], ids=["backward", "double_backward"])
@params("causal", [False, True])
@params("dim", [64, 128])  # mma.sync kernels; the warpgroup kernels at 128
@params("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_fused_is_bitwise_reproducible_in_deterministic_mode(deterministic, dtype, dim, causal, order):
    # Many key blocks per query block, so that unordered atomics would vary.
    _assert_bitwise_equal(_runs("cuda", dtype, (2, 4, 1000, 1200, dim), causal, "fused", order, repeats=5))


@params("backend", ["explicit", "reference"])
@params("order", [1, 2], ids=["backward", "double_backward"])
def test_cpu_backends_are_bitwise_reproducible(deterministic, backend, order):
    _assert_bitwise_equal(_runs("cpu", torch.float32, (2, 2, 67, 90, 24), True, backend, order, repeats=3))
