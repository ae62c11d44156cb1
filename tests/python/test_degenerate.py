"""Degenerate and hostile inputs on every backend and at every order: zero sizes, L = 1, S = 1, head dims
no kernel serves, batches past the kernels' grid, huge / zero / overlapping strides, misaligned storage,
partial requires-grad masks and empty tangents. Each gives what PyTorch's math SDPA gives (shape, values,
NaN pattern; differential.py) or a clear error naming the argument, never a crash."""
import pytest
import torch

import theria
from differential import Probes, compare, derivatives, reference

params = pytest.mark.parametrize
CPU_BACKENDS = ("auto", "reference", "explicit")
GPU_BACKENDS = ("fused", "auto", "reference")
ZERO_SIZES = {  # (lead, L, S, E, Ev)
    "B=0": ((0, 2), 3, 4, 5, 5), "H=0": ((2, 0), 3, 4, 5, 5), "L=0": ((1, 2), 0, 4, 5, 5),
    "S=0": ((1, 2), 3, 0, 5, 5), "E=0": ((1, 2), 3, 4, 0, 5), "Ev=0": ((1, 2), 3, 4, 5, 0),
    "all=0": ((0,), 0, 0, 0, 0), "no-lead-S=0": ((), 3, 0, 8, 8),
}
SMALL = {"L=1": ((2, 2), 1, 9, 8, 8), "S=1": ((2, 2), 9, 1, 8, 8), "L=S=1": ((3,), 1, 1, 16, 16),
         "L=1-tc": ((1, 2), 1, 70, 64, 64), "S=1-tc": ((1, 2), 70, 1, 128, 128)}


def _inputs(sizes, dtype, device, seed=0):
    lead, L, S, E, Ev = sizes
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device, dtype)  # noqa: E731
    q, k, v = r(*lead, L, E), r(*lead, S, E), r(*lead, S, Ev)
    probes = Probes(dout=r(*lead, L, Ev), tangents=(r(*q.shape), r(*k.shape), r(*v.shape)),
                    hvp_dirs=(r(*q.shape), r(*k.shape), r(*v.shape)))
    return q, k, v, probes


def check_every_order(q, k, v, probes, dtype, backend, causal, requires_grad=(True, True, True), scale=None):
    attn = lambda a, b, c: theria.sdpa(a, b, c, is_causal=causal, scale=scale, backend=backend)  # noqa: E731
    got = derivatives(attn, q, k, v, probes, 2, requires_grad)
    want = reference(q, k, v, probes, 2, requires_grad, True, causal, scale)
    for name, err, tol in compare(got, want, dtype):
        assert err <= tol, f"{name}: error {err:.3e} > {tol:.1e}"
    return got


# ------------------------------------------------------------------------------------------ zero sizes

@params("backend", CPU_BACKENDS)
@params("causal", [False, True])
@params("case", list(ZERO_SIZES))
def test_zero_size_cpu(case, causal, backend):
    q, k, v, probes = _inputs(ZERO_SIZES[case], torch.float64, "cpu")
    check_every_order(q, k, v, probes, torch.float64, backend, causal)


@pytest.mark.gpu
@params("dtype", [torch.bfloat16, torch.float32], ids=str)
@params("backend", GPU_BACKENDS)
@params("causal", [False, True])
@params("case", list(ZERO_SIZES))
def test_zero_size_cuda(case, causal, backend, dtype):
    lead, L, S, E, Ev = ZERO_SIZES[case]
    E, Ev = (64 if E else 0), (64 if Ev else 0)  # also where the tensor-core kernels would run
    q, k, v, probes = _inputs((lead, L, S, E, Ev), dtype, "cuda")
    check_every_order(q, k, v, probes, dtype, backend, causal)
    torch.cuda.synchronize()


@params("backend", ["auto", "explicit"])
def test_empty_problem_is_reported_by_select_backend(backend):
    q = torch.zeros(2, 0, 4, dtype=torch.float64)
    kv = torch.zeros(2, 5, 4, dtype=torch.float64)
    name, reason = theria.select_backend(q, kv, kv, backend=backend)
    assert name == "reference" and "empty problem" in reason


def test_empty_problem_still_follows_the_device_rules():
    q = torch.zeros(2, 0, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="backend 'fused' runs on CUDA tensors only"):
        theria.sdpa(q, q, q, backend="fused")


def test_empty_tangents_and_partial_requires_grad():
    q, k, v, probes = _inputs(((2,), 0, 3, 4, 4), torch.float64, "cpu")
    for mask in [(True, False, False), (False, False, True), (False, True, True)]:
        check_every_order(q, k, v, probes, torch.float64, "explicit", True, requires_grad=mask)


# ------------------------------------------------------------------------------------------ tiny sizes

@params("backend", CPU_BACKENDS)
@params("causal", [False, True])
@params("case", list(SMALL))
def test_single_row_or_key_cpu(case, causal, backend):
    q, k, v, probes = _inputs(SMALL[case], torch.float64, "cpu", seed=3)
    check_every_order(q, k, v, probes, torch.float64, backend, causal)


@pytest.mark.gpu
@params("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@params("causal", [False, True])
@params("case", list(SMALL))
def test_single_row_or_key_cuda(case, causal, dtype):
    q, k, v, probes = _inputs(SMALL[case], dtype, "cuda", seed=3)
    check_every_order(q, k, v, probes, dtype, "fused", causal)


@params("mask", [(True, False, False), (False, True, False), (False, False, True), (True, False, True)])
@params("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_requires_grad_in_some_arguments(mask, device):
    dtype = torch.float64 if device == "cpu" else torch.bfloat16
    q, k, v, probes = _inputs(((2, 3), 17, 23, 64, 64), dtype, device, seed=4)
    check_every_order(q, k, v, probes, dtype, "auto", True, requires_grad=mask)


# ------------------------------------------------------------------------------------------ what no kernel serves

def test_head_dim_past_every_kernel_cpu():
    q, k, v, probes = _inputs(((1,), 5, 6, 300, 257), torch.float64, "cpu", seed=5)
    check_every_order(q, k, v, probes, torch.float64, "explicit", False)


def _fused_refuses_and_auto_takes_the_reference(q, k, v, refusal, reason_word):
    with pytest.raises(RuntimeError, match=refusal):
        theria.sdpa(q, k, v, backend="fused")
    name, reason = theria.select_backend(q, k, v)
    assert name == "reference" and reason_word in reason, (name, reason)


@pytest.mark.gpu
def test_head_dim_past_the_fused_kernels():
    q, k, v, probes = _inputs(((1,), 5, 6, 300, 257), torch.float32, "cuda", seed=5)
    _fused_refuses_and_auto_takes_the_reference(
        q, k, v, r"backend 'fused' cannot serve these inputs: .*head dims up to 256.*E=300", "head dims")
    check_every_order(q, k, v, probes, torch.float32, "auto", False)


@pytest.mark.gpu
def test_batch_past_the_kernel_grid():
    q, k, v, probes = _inputs(((70000,), 3, 5, 32, 32), torch.bfloat16, "cuda", seed=6)
    _fused_refuses_and_auto_takes_the_reference(
        q, k, v, r"at most 65535 batch x head positions per call, got 70000", "65535")
    out = theria.sdpa(q, k, v)
    ref = reference(q, k, v, probes, 0, jvp=False).parts["out"][0]
    assert (out.double().cpu() - ref).abs().max().item() < theria.tolerance(torch.bfloat16, 0) * 4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_two_cuda_devices():
    q = torch.randn(1, 4, 8, device="cuda:0")
    k = torch.randn(1, 4, 8, device="cuda:1")
    with pytest.raises(RuntimeError, match=r"query, key and value must be on one device, got query on cuda:0, "
                                           r"key on cuda:1"):
        theria.sdpa(q, k, q)


# ------------------------------------------------------------------------------------------ hostile layouts

def _layouts(device, dtype):
    """(name, maker): each maker turns contiguous values x (..., rows, cols) into the same logical tensor
    in a hostile memory layout."""
    def misaligned(x):
        flat = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
        flat[1:] = x.reshape(-1)
        return flat[1:].view(x.shape)

    def padded_rows(x):
        pad = torch.zeros(*x.shape[:-1], x.shape[-1] + 5, dtype=x.dtype, device=x.device)
        pad[..., : x.shape[-1]] = x
        return pad[..., : x.shape[-1]]

    return {"misaligned": misaligned, "padded_rows": padded_rows,
            "heads_expanded": lambda x: x[:, :1].expand(x.shape),
            "rows_expanded": lambda x: x[..., :1, :].expand(x.shape),
            "blhd": lambda x: x.transpose(1, 2).contiguous().transpose(1, 2)}


@params("layout", ["misaligned", "padded_rows", "heads_expanded", "rows_expanded", "blhd"])
@params("device,dtype,backend", [("cpu", torch.float64, "explicit"),
                                 pytest.param("cuda", torch.bfloat16, "fused", marks=pytest.mark.gpu),
                                 pytest.param("cuda", torch.float32, "fused", marks=pytest.mark.gpu)])
def test_hostile_layouts(layout, device, dtype, backend):
    make = _layouts(device, dtype)[layout]
    q, k, v, probes = _inputs(((2, 3), 37, 45, 64, 64), dtype, device, seed=7)
    q, k, v = make(q), make(k), make(v)
    probes.dout = make(probes.dout)
    check_every_order(q, k, v, probes, dtype, backend, True)


def test_overlapping_rows_cpu():
    base = torch.randn(200, dtype=torch.float64)
    q = base.as_strided((2, 9, 8), (30, 2, 1))  # rows overlap: row stride 2 < E = 8
    k = base.as_strided((2, 11, 8), (40, 3, 1))
    v = base.as_strided((2, 11, 6), (50, 1, 1))
    _, _, _, probes = _inputs(((2,), 9, 11, 8, 6), torch.float64, "cpu", seed=8)
    for backend in CPU_BACKENDS:
        check_every_order(q, k, v, probes, torch.float64, backend, False)


@pytest.mark.gpu
def test_batch_stride_past_int32():
    """A batch stride of more than 2^31 elements (4 GiB of bf16): offsets must be computed in 64 bits."""
    stride = 2**31 + 64
    storage = torch.empty(stride + 64 * 64, dtype=torch.bfloat16, device="cuda")
    q = storage.as_strided((2, 1, 64, 64), (stride, 64 * 64, 64, 1))
    q.copy_(torch.randn(2, 1, 64, 64, device="cuda", dtype=torch.bfloat16))
    k, v = torch.randn(2, 2, 1, 64, 64, device="cuda", dtype=torch.bfloat16).unbind(0)
    dout = torch.randn(2, 1, 64, 64, device="cuda", dtype=torch.bfloat16)
    for causal in (False, True):
        qa, qc = q.detach().requires_grad_(), q.detach().contiguous().requires_grad_()
        out_a = theria.sdpa(qa, k, v, is_causal=causal, backend="fused")
        out_c = theria.sdpa(qc, k, v, is_causal=causal, backend="fused")
        assert torch.equal(out_a, out_c)
        (ga,) = torch.autograd.grad(out_a, qa, dout)
        (gc,) = torch.autograd.grad(out_c, qc, dout)
        assert torch.equal(ga, gc) or (ga.float() - gc.float()).abs().max() < 1e-2
    del storage
    torch.cuda.empty_cache()
