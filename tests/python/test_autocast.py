"""Under autocast theria.sdpa casts like F.scaled_dot_product_attention (it is on the
lower-precision list): same output dtype, values within the tolerance of that dtype."""
import pytest
import torch
import torch.nn.functional as F

import theria
from sdpa_testing import FIRST, FORWARD, Shape, assert_all_within_tolerance, assert_within_tolerance, make_qkv, \
    randn, ref_sdpa

SHAPE = Shape((2, 3), 9, 13, 8, 5)
causal = pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])


def _check(device, amp_dtype, backend, is_causal):
    q, k, v = (x.to(device) for x in make_qkv(SHAPE, torch.float32, seed=3, requires_grad=False))
    q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
    with torch.autocast(device, dtype=amp_dtype):
        out = theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)
        out_torch = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert out.dtype == out_torch.dtype == amp_dtype
    # the oracle: float64 on the inputs as autocast rounded them
    rounded = [x.detach().to(amp_dtype).double().requires_grad_() for x in (q, k, v)]
    ref = ref_sdpa(*rounded, is_causal=is_causal)
    assert_within_tolerance(out, ref, amp_dtype, FORWARD, "autocast out vs float64")
    assert_within_tolerance(out_torch, ref, amp_dtype, FORWARD, "F.sdpa under autocast vs float64 (sanity)")

    dout = randn(SHAPE.out, amp_dtype, seed=4).to(device)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    assert all(g.dtype == torch.float32 for g in grads)  # the cast back to the float32 leaves
    ref_grads = torch.autograd.grad(ref, rounded, dout.double())
    assert_all_within_tolerance(grads, ref_grads, amp_dtype, FIRST, ["dq", "dk", "dv"])


@pytest.mark.parametrize("backend", ["auto", "explicit", "reference"])
@causal
def test_autocast_cpu_bfloat16(backend, is_causal):
    _check("cpu", torch.bfloat16, backend, is_causal)


@pytest.mark.gpu
@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@causal
def test_autocast_cuda(amp_dtype, is_causal):
    _check("cuda", amp_dtype, "auto", is_causal)
