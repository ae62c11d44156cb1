"""A randomized differential test that stays: random shapes (degenerate sizes included), layouts
(transposed, sliced, misaligned, expanded, overlapping), dtypes, causal, scales (of any sign, zero),
requires-grad masks, tangent masks and derivative orders up to 2, against PyTorch's math SDPA in
float64 (differential.py). Every case is fixed by its seed: a failure prints the seed, the case and
the command that reruns it alone.

    THERIA_FUZZ_CASES   cases per device (default 5000)
    THERIA_FUZZ_SEED    the first case's seed (default 0); case i has seed SEED + i
    THERIA_FUZZ_ONLY    run the one case with this seed
"""
import math
import os
import random
import time
from dataclasses import dataclass

import pytest
import torch

import theria
from differential import Probes, compare, derivatives, reference

DEVICES = {"cpu": dict(backends=("auto", "explicit", "reference"), dtypes=(torch.float64, torch.float32,
                                                                            torch.bfloat16),
                       max_len=40, head_dims=None, default_cases=5000),
           "cuda": dict(backends=("fused", "auto", "reference"),
                        dtypes=(torch.bfloat16, torch.float16, torch.float32, torch.float64),
                        max_len=150, head_dims=(32, 64, 96, 128), default_cases=5000)}
LAYOUTS = ("contiguous", "blhd", "sliced", "misaligned", "expanded", "overlapping")


@dataclass
class Case:
    seed: int
    device: str
    backend: str
    dtype: torch.dtype
    lead: tuple
    L: int
    S: int
    E: int
    Ev: int
    causal: bool
    scale: float
    order: int
    jvp: bool
    requires_grad: tuple
    tangent_mask: tuple
    layouts: tuple  # of q, k, v
    special: tuple  # (input index, value) of one NaN input element (in q), or ()

    def __str__(self):
        return (f"seed={self.seed} {self.device}/{self.backend} {str(self.dtype)[6:]} lead={self.lead} L={self.L} "
                f"S={self.S} E={self.E} Ev={self.Ev} causal={self.causal} scale={self.scale} order={self.order} "
                f"jvp={self.jvp} requires_grad={self.requires_grad} tangents={self.tangent_mask} "
                f"layouts={self.layouts} special={self.special}")


def draw_case(seed, device):
    """The case of one seed: all randomness comes from this generator."""
    rng = random.Random(seed)
    cfg = DEVICES[device]
    size = lambda hi: rng.choice((1, 1, 2, rng.randint(1, hi), rng.randint(1, hi)))  # noqa: E731
    lead = tuple(rng.randint(1, 3) for _ in range(rng.choice((0, 1, 2, 2, 3))))
    L, S = size(cfg["max_len"]), size(cfg["max_len"])
    if cfg["head_dims"] and rng.random() < 0.6:  # the tensor-core kernels' head dims, E == Ev
        E = Ev = rng.choice(cfg["head_dims"])
    else:
        E, Ev = rng.randint(1, 48), rng.choice((None, rng.randint(1, 48)))
        Ev = E if Ev is None else Ev
    dims = dict(lead=lead, L=L, S=S, E=E, Ev=Ev)
    if rng.random() < 0.12:  # a zero size somewhere: an empty problem
        which = rng.choice(("lead", "L", "S", "E", "Ev"))
        if which == "lead":
            lead = lead or (1,)
            i = rng.randrange(len(lead))
            dims["lead"] = lead[:i] + (0,) + lead[i + 1:]
        else:
            dims[which] = 0
    scale = rng.choice((None, None, None, 0.0, round(rng.uniform(-2.0, 2.0) / math.sqrt(max(dims["E"], 1)), 4)))
    requires_grad = tuple(rng.random() < 0.8 for _ in range(3))
    if not any(requires_grad):
        requires_grad = (True, False, False)
    tangent_mask = tuple(rng.random() < 0.7 for _ in range(3))
    layouts = tuple(rng.choice(LAYOUTS) if rng.random() < 0.5 else "contiguous" for _ in range(3))
    # A NaN in a query row makes that row of out NaN in every implementation. Elsewhere non-finite inputs
    # leave implementation-defined patterns (docs/contract.md): math adds the causal mask's -inf to a NaN
    # logit, and multiplies masked zeros into NaN, where the kernels never touch a masked pair.
    special = (0, math.nan) if rng.random() < 0.05 else ()
    return Case(seed, device, rng.choice(cfg["backends"]), rng.choice(cfg["dtypes"]), causal=rng.random() < 0.5,
                scale=scale, order=rng.choice((0, 1, 2, 2)), jvp=rng.random() < 0.5, requires_grad=requires_grad,
                tangent_mask=tangent_mask, layouts=layouts, special=special, **dims)


def laid_out(values, layout, gen):
    """`values` (float64, contiguous) in the given memory layout, same logical tensor."""
    shape = values.shape
    if layout == "blhd" and values.dim() >= 3:  # (..., H, L, D) viewed from (..., L, H, D) storage
        return values.transpose(-3, -2).contiguous().transpose(-3, -2)
    if layout == "sliced":  # rows padded by 3 elements: row stride != D, rows not 16-byte aligned
        pad = torch.empty((*shape[:-1], shape[-1] + 3), dtype=values.dtype, device=values.device)
        pad[..., : shape[-1]] = values
        return pad[..., : shape[-1]]
    if layout == "misaligned":  # storage offset of one element
        flat = torch.empty(values.numel() + 1, dtype=values.dtype, device=values.device)
        flat[1:] = values.reshape(-1)
        return flat[1:].view(shape)
    if layout == "expanded" and values.dim() >= 3 and shape[-3] > 0:  # stride 0 over the head dimension
        return values.select(-3, 0).unsqueeze(-3).expand(shape)
    if layout == "overlapping" and shape[-1] >= 2 and shape[-2] >= 2:  # rows overlap by all but one element
        n = shape[:-2].numel() * (shape[-2] + shape[-1]) + 1
        base = torch.randn(n, generator=gen, dtype=torch.float64).to(values.device, values.dtype)
        strides = [0] * len(shape)
        strides[-1], strides[-2] = 1, 1
        acc = shape[-2] + shape[-1]
        for d in range(len(shape) - 3, -1, -1):
            strides[d] = acc
            acc *= shape[d]
        return base.as_strided(shape, strides)
    return values


def make_inputs(case):
    gen = torch.Generator().manual_seed(case.seed)
    dev = case.device

    def tensor(shape, layout="contiguous"):
        values = torch.randn(shape, generator=gen, dtype=torch.float64).to(dev, case.dtype)
        return laid_out(values, layout, gen)

    lead = case.lead
    q = tensor((*lead, case.L, case.E), case.layouts[0])
    k = tensor((*lead, case.S, case.E), case.layouts[1])
    v = tensor((*lead, case.S, case.Ev), case.layouts[2])
    if case.special:  # one NaN element: the NaN pattern of out must be math's
        which, value = case.special
        x = (q, k, v)[which]
        if x.numel() and torch._debug_has_internal_overlap(x) == 0:
            flat = torch.randint(x.numel(), (1,), generator=gen).item()
            x[torch.unravel_index(torch.tensor(flat), x.shape)] = value
    probes = Probes(dout=tensor((*lead, case.L, case.Ev)),
                    tangents=tuple(tensor(x.shape) if m else None for x, m in zip((q, k, v), case.tangent_mask)),
                    hvp_dirs=tuple(tensor(x.shape) for x in (q, k, v)))
    return q, k, v, probes


def run_case(case):
    """None when theria matches the oracle; else a line saying what differs."""
    q, k, v, probes = make_inputs(case)
    attn = lambda a, b, c: theria.sdpa(a, b, c, is_causal=case.causal, scale=case.scale,  # noqa: E731
                                       backend=case.backend)
    want = reference(q, k, v, probes, case.order, case.requires_grad, case.jvp, case.causal, case.scale)
    try:
        got = derivatives(attn, q, k, v, probes, case.order, case.requires_grad, case.jvp)
    except Exception as e:  # noqa: BLE001  (any error on a valid input is a finding)
        return f"raised {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if case.special:  # with a NaN input only out's values and NaN pattern are compared
        got.parts, want.parts = {"out": got.parts["out"]}, {"out": want.parts["out"]}
    bad = [f"{name} err {err:.3e} > tol {tol:.1e}" for name, err, tol in compare(got, want, case.dtype) if err > tol]
    return "; ".join(bad) or None


def seeds(device):
    if os.environ.get("THERIA_FUZZ_ONLY"):
        return [int(os.environ["THERIA_FUZZ_ONLY"])]
    first = int(os.environ.get("THERIA_FUZZ_SEED", "0"))
    count = int(os.environ.get("THERIA_FUZZ_CASES", DEVICES[device]["default_cases"]))
    return range(first, first + count)


def fuzz(device):
    start, failures, kinds = time.time(), [], {}
    cases = list(seeds(device))
    for seed in cases:
        case = draw_case(seed, device)
        kind = "empty" if 0 in (*case.lead, case.L, case.S, case.E, case.Ev) else f"order{case.order}"
        kinds[kind] = kinds.get(kind, 0) + 1
        finding = run_case(case)
        if finding:
            failures.append(f"{case}\n    {finding}\n    rerun: THERIA_FUZZ_ONLY={seed} pytest tests/python/test_fuzz.py")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"\n[fuzz] {device}: {len(cases)} cases ({summary}) in {time.time() - start:.1f} s, "
          f"{len(failures)} failed")
    assert not failures, f"{len(failures)} of {len(cases)} fuzz cases failed:\n" + "\n".join(failures[:20])


def test_fuzz_cpu():
    fuzz("cpu")


@pytest.mark.gpu
def test_fuzz_cuda():
    fuzz("cuda")


def test_cases_are_reproducible():
    """The same seed draws the same case and the same inputs (a failure's seed reruns it exactly)."""
    a, b = draw_case(1234, "cpu"), draw_case(1234, "cpu")
    assert str(a) == str(b)
    for x, y in zip(make_inputs(a)[:3], make_inputs(b)[:3]):
        assert torch.equal(x, y)


def test_fuzzer_finds_a_wrong_answer(monkeypatch):
    """The harness can fail: a theria that is off by a tiny relative amount is caught."""
    real = theria.sdpa
    monkeypatch.setattr(theria, "sdpa", lambda *a, **kw: real(*a, **kw) * (1 + 1e-3))
    case = next(c for c in map(lambda s: draw_case(s, "cpu"), range(100))
                if c.dtype == torch.float64 and 0 not in (*c.lead, c.L, c.S, c.E, c.Ev))
    assert run_case(case) is not None
