"""Is my MAML really second order? Two checks of a meta-loss (docs/meta_check.md).

    report = theria.inspect_graph(meta_loss)                 # what reaches the loss: structure
    print(report)
    check = theria.check_meta_gradient(meta_loss_of, params)  # is the meta-gradient its derivative: numbers
    print(check)

`inspect_graph` walks the autograd graph of the meta-loss and counts the nodes that carry attention's first
derivative and those that differentiate attention's backward (the second-order terms of MAML), and says in words
what is missing. It sees structure only: a detached softmax statistic inside a hand-written attention leaves a
graph of the right shape. `check_meta_gradient` compares the autograd meta-gradient with central differences of
the meta-loss along random directions: it catches every way of dropping a term, and is the verdict.

The C++ API has the same two functions and result types (include/theria/meta_check.h); src/check/meta_check.cpp
holds the same node rules, warnings and words, which must stay equal to these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch

__all__ = ["GraphReport", "inspect_graph", "DirectionalDerivative", "MetaGradientCheck", "check_meta_gradient"]

# ---- Node names (the same rules in meta_check.cpp) ----

_SDPA_NODE = "theria::SdpaBackward"
_SDPA_DOUBLE_BACKWARD_NODE = "theria::SdpaBwdBackward"
_SOFTMAX_NODES = ("SoftmaxBackward0", "SafeSoftmaxBackward0", "MaskedSoftmaxBackward0")


def _is_aten_double_backward(name: str) -> bool:
    """A PyTorch node of a differentiated backward op: MseLossBackwardBackward0, SoftmaxBackwardDataBackward0."""
    if name.startswith(("theria::", "torch::autograd::")):
        return False
    return name.count("Backward") >= 2


def _is_softmax_double_backward(name: str) -> bool:
    return _is_aten_double_backward(name) and "SoftmaxBackward" in name and "LogSoftmax" not in name


def _is_torch_sdpa(name: str) -> bool:
    """PyTorch's fused SDPA kernels (flash, efficient, cuDNN, flash for CPU): no derivative of their backward."""
    return "ScaledDotProduct" in name and not _is_aten_double_backward(name)


def _is_delayed_error(name: str) -> bool:
    """What @once_differentiable leaves under create_graph (DelayedError outputs have an Error node)."""
    return name in ("torch::autograd::Error", "torch::autograd::DelayedError")


def _join(names: Sequence[str]) -> str:
    return ", ".join(names)


@dataclass
class GraphReport:
    """What the graph of a loss holds, each node counted once (a node reached along several paths is one node)."""

    has_graph: bool = False  # the loss has a grad_fn at all
    nodes: int = 0  # distinct nodes reachable from the loss's grad_fn
    sdpa_nodes: int = 0  # theria::SdpaBackward: a theria attention call (explicit, fused) in the graph
    sdpa_double_backward_nodes: int = 0  # theria::SdpaBwdBackward: a differentiated theria attention backward
    softmax_nodes: int = 0  # SoftmaxBackward0, SafeSoftmaxBackward0: attention composed of ATen ops
    softmax_double_backward_nodes: int = 0  # SoftmaxBackwardDataBackward0: a differentiated softmax backward
    torch_sdpa_nodes: int = 0  # PyTorch's fused SDPA nodes (ScaledDotProduct...Backward0): no double backward
    aten_double_backward_nodes: int = 0  # PyTorch nodes of differentiated backward ops (...Backward...Backward0)
    node_names: List[Tuple[str, int]] = field(default_factory=list)  # every distinct name and its count
    second_order_node_names: List[str] = field(default_factory=list)  # nodes that differentiate a backward
    custom_function_names: List[str] = field(default_factory=list)  # custom autograd functions (Python, C++)
    warnings: List[str] = field(default_factory=list)  # plain words, one a problem; empty when nothing is amiss

    def attention_in_graph(self) -> bool:
        """A node that carries attention's first derivative (theria, ATen softmax, PyTorch's SDPA) is in the graph."""
        return self.sdpa_nodes + self.softmax_nodes + self.torch_sdpa_nodes > 0

    def second_order_through_attention(self) -> bool:
        """A node that differentiates an attention backward (SdpaBwdBackward, SoftmaxBackwardDataBackward0)."""
        return self.sdpa_double_backward_nodes + self.softmax_double_backward_nodes > 0

    def ok(self) -> bool:
        return not self.warnings

    def describe(self) -> str:
        """A readable report, several lines, to print or paste."""
        lines = [
            f"inspect_graph: {self.nodes} autograd nodes reach the loss",
            f"  attention, first derivative: {self.sdpa_nodes} theria::SdpaBackward, {self.softmax_nodes} ATen "
            f"softmax, {self.torch_sdpa_nodes} PyTorch fused SDPA",
            f"  attention, differentiated backward (second order): {self.sdpa_double_backward_nodes} "
            f"theria::SdpaBwdBackward, {self.softmax_double_backward_nodes} ATen softmax double backward",
            f"  PyTorch double-backward nodes (...Backward...Backward0): {self.aten_double_backward_nodes}",
            f"  second-order node names: {_join(self.second_order_node_names) or 'none'}",
            f"  custom autograd functions: {_join(self.custom_function_names) or 'none'}",
        ]
        if not self.warnings:
            lines.append("  verdict: second-order terms reach the loss through attention")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    __str__ = describe


def _graph_warnings(r: GraphReport, delayed_errors, not_implemented, torch_sdpa) -> List[str]:
    """The warnings, in the order a reader should act on them (the same words in meta_check.cpp)."""
    if not r.has_graph:
        return ["the loss has no grad_fn: nothing that requires grad reaches it (computed under no_grad, or "
                "detached)"]
    w = []
    if delayed_errors:
        w.append(f"{_join(delayed_errors)} reaches the loss: a backward marked @once_differentiable ran under "
                 "create_graph, so its derivative is not in the graph; autograd.grad(loss, params) skips it "
                 "silently (it leads to no parameter), loss.backward() raises")
    if not_implemented:
        w.append(f"{_join(not_implemented)} reaches the loss: a backward that PyTorch cannot differentiate ran "
                 "under create_graph; computing the meta-gradient raises")
    if torch_sdpa:
        w.append(f"PyTorch's fused SDPA reaches the loss ({_join(torch_sdpa)}): it has no double backward, "
                 "so second-order terms cannot pass through it (theria.sdpa has one)")
    second_order = r.second_order_through_attention()
    if not r.attention_in_graph():
        w.append("no attention node reaches the loss: attention outputs were detached or computed under no_grad, "
                 "or attention runs inside a custom autograd function or through ops this walk does not know "
                 "(check_meta_gradient tells)")
    elif not second_order:
        w.append("attention's first derivative is in the graph but no differentiated attention backward: inner "
                 "gradients were taken without create_graph, or a custom backward is not differentiable (a "
                 "first-order MAML reads this way)")
    if not second_order and r.custom_function_names:
        w.append(f"custom autograd functions reach the loss ({_join(r.custom_function_names)}): whether their "
                 "backward is itself differentiable cannot be seen in the graph; one that computes attention with "
                 "a backward run under no_grad drops the second-order terms silently (check_meta_gradient tells)")
    if not second_order and r.second_order_node_names:
        w.append(f"second-order nodes found only outside attention ({_join(r.second_order_node_names)}): the "
                 "inner loop was differentiated, but not through attention")
    return w


def inspect_graph(loss: torch.Tensor) -> GraphReport:
    """Walks loss.grad_fn over next_functions, each node once, and reports what reaches the loss.

    Iterative (the graph of a 20-step inner loop is deep); runs no backward and frees nothing.
    """
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"inspect_graph: the loss must be a tensor, got {type(loss).__name__}")
    r = GraphReport(has_graph=loss.grad_fn is not None)
    counts = {}
    custom = set()
    seen = set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        name = node.name()
        counts[name] = counts.get(name, 0) + 1
        if isinstance(node, torch.autograd.function.BackwardCFunction) or name.startswith("torch::autograd::CppNode<"):
            custom.add(name)
        stack.extend(fn for fn, _ in node.next_functions if fn is not None and fn not in seen)
    r.nodes = len(seen)

    delayed_errors, not_implemented, torch_sdpa = [], [], []
    for name in sorted(counts):
        count = counts[name]
        r.node_names.append((name, count))
        if name == _SDPA_NODE:
            r.sdpa_nodes += count
        if name == _SDPA_DOUBLE_BACKWARD_NODE:
            r.sdpa_double_backward_nodes += count
        if name in _SOFTMAX_NODES:
            r.softmax_nodes += count
        if _is_softmax_double_backward(name):
            r.softmax_double_backward_nodes += count
        if _is_aten_double_backward(name):
            r.aten_double_backward_nodes += count
        if name == _SDPA_DOUBLE_BACKWARD_NODE or _is_aten_double_backward(name):
            r.second_order_node_names.append(name)
        if _is_torch_sdpa(name):
            r.torch_sdpa_nodes += count
            torch_sdpa.append(name)
        if name in custom:
            r.custom_function_names.append(name)
        if _is_delayed_error(name):
            delayed_errors.append(name)
        if name == "torch::autograd::NotImplemented":
            not_implemented.append(name)
    r.warnings = _graph_warnings(r, delayed_errors, not_implemented, torch_sdpa)
    return r


# ---- Numerical check ----

# The central difference (f(θ + h u) - f(θ - h u)) / 2h errs by truncation, h² |f'''| / 6, and by rounding, about
# ε_mach |f| / h. With h = eps · ||θ||, relative to the derivative these are ~eps² and ~ε_mach / eps, times a
# conditioning factor |f| / (||θ|| |<g, u>|) that a random direction makes large and a loss computed through many
# rounded ops makes larger still.
#   float64 (ε_mach 1.1e-16): eps 1e-6 gives ~1e-12 truncation and ~1e-10 rounding; the tolerance 1e-5 leaves five
#     orders of magnitude for conditioning and still sees a dropped term worth 1e-5 of the derivative.
#   float32 (ε_mach 6e-8): the optimum eps is near ε_mach^(1/3) ≈ 4e-3; at 1e-3 truncation is ~1e-6 but rounding
#     ~6e-5 grows with conditioning to 1e-3..1e-2 on a small MAML: the tolerance 5e-2 only catches a dropped term
#     worth a few per cent. float64 is the trustworthy setting.
#   float16, bfloat16: rounding of the loss alone exceeds any useful tolerance; no defaults.
_STEP_DEFAULTS = {torch.float64: (1e-6, 1e-5), torch.float32: (1e-3, 5e-2)}
_MANTISSA_DIGITS = {torch.float64: 53, torch.float32: 24, torch.float16: 11}


def _less_precise(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    return a if _MANTISSA_DIGITS.get(a, 8) <= _MANTISSA_DIGITS.get(b, 8) else b


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass
class DirectionalDerivative:
    """One direction u: the autograd directional derivative <g, u> and the central difference."""

    autograd: float
    finite_difference: float
    step: float = 0.0  # the h this direction was compared at (see check_meta_gradient)


@dataclass
class MetaGradientCheck:
    directions: List[DirectionalDerivative]
    relative_error: float  # ||autograd - finite_difference|| / ||finite_difference|| over the K directions
    tolerance: float
    eps: float  # relative step
    step: float  # h = eps * max(||theta||, 1), the first step tried along each unit direction
    loss: float  # f(theta)
    gradient_norm: float  # ||g||
    dtype: torch.dtype  # the least precise of the parameters and the loss
    passed: bool  # relative_error <= tolerance (False when anything is non-finite)
    nonsmooth_directions: int = 0  # directions left out: the meta-loss is not smooth along them at any step tried

    def describe(self) -> str:
        """A readable report, several lines, to print or paste."""
        lines = [
            f"check_meta_gradient: {'passed' if self.passed else 'FAILED'} ({_dtype_name(self.dtype)}): relative "
            f"error {self.relative_error:.3e} {'<=' if self.passed else '>'} tolerance {self.tolerance:.1e} over "
            f"{len(self.directions)} directions",
            f"  f(theta) = {self.loss:.10g}, ||g|| = {self.gradient_norm:.6g}, eps {self.eps:.1e} "
            f"(step {self.step:.3e})",
            "  direction  autograd <g,u>       finite difference    step",
        ]
        lines += [f"  {k:<9}  {d.autograd:<19.10e}  {d.finite_difference:<19.10e}  {d.step:.3e}"
                  for k, d in enumerate(self.directions)]
        if self.nonsmooth_directions > 0:
            lines.append(f"  {self.nonsmooth_directions} direction(s) left out: the meta-loss is not smooth along them at "
                         "any step tried (a ReLU switching inside the inner loop makes it jump)")
        if not self.passed:
            lines.append("  the autograd meta-gradient is not the derivative of the meta-loss: a term is dropped "
                         "(attention output or softmax statistics detached, attention under no_grad, a backward "
                         "that is not differentiable, inner gradients without create_graph; inspect_graph names "
                         "the structural ones), or the meta-loss is not a pure function of the parameters")
        if self.dtype != torch.float64:
            lines.append(f"  note: a {_dtype_name(self.dtype)} check is coarse; float64 is the trustworthy setting")
        return "\n".join(lines) + "\n"

    __str__ = describe


def _fresh_leaves(values: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Leaves that require grad: the meta-loss may differentiate its inner loop with respect to them."""
    return [v.detach().clone().requires_grad_(True) for v in values]


def _scalar(loss, where: str) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"check_meta_gradient: the meta-loss must be a scalar tensor ({where})")
    return loss


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))


# How many times the step shrinks tenfold before a direction counts as not smooth (as in src/check/meta_check.cpp).
_SHRINKS = 3


def check_meta_gradient(meta_loss: Callable[[List[torch.Tensor]], torch.Tensor], params: Sequence[torch.Tensor], *,
                        directions: int = 4, seed: int = 0, eps: Optional[float] = None,
                        tolerance: Optional[float] = None) -> MetaGradientCheck:
    """Is the autograd meta-gradient the derivative of the meta-loss? Central differences along random directions.

    meta_loss(params_list) -> scalar tensor must be a pure function of the parameters: fixed tasks and batches, no
    dropout or other randomness, no state carried between calls (it is evaluated 2K + 1 times and the evaluations
    are compared). It receives a list of fresh leaf tensors that require grad (its inner loop may call
    torch.autograd.grad on them). The parameters are not modified and their .grad is not touched.

    Computes g = d meta_loss / d params by autograd (parameters the graph does not reach get zero), then for
    `directions` seeded random unit directions u of the concatenated parameters compares <g, u> with
    (f(θ + h u) - f(θ - h u)) / 2h, h = eps * max(||θ||, 1). A MAML meta-loss through ReLU is only piecewise smooth
    and not even continuous (the inner step jumps where a ReLU switches), so a direction is accepted only where the
    differences at h and h/2 agree to the tolerance; otherwise h shrinks tenfold (three times at most), and a
    direction smooth at no step is left out and replaced (nonsmooth_directions; at most 3K drawn). Defaults by dtype: float64 eps 1e-6, tolerance 1e-5
    (trustworthy); float32 eps 1e-3, tolerance 5e-2 (coarse: a dropped term below a few per cent goes unseen);
    float16 and bfloat16 need eps and tolerance given.
    """
    params = list(params)
    if not params:
        raise ValueError("check_meta_gradient: no parameters")
    if directions < 1:
        raise ValueError(f"check_meta_gradient: directions must be at least 1, got {directions}")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            raise ValueError(f"check_meta_gradient: parameter {i} must be a floating-point tensor")
    theta = [p.detach() for p in params]

    # The meta-loss differentiates its inner loop even when the caller runs under no_grad.
    with torch.enable_grad():
        leaves = _fresh_leaves(theta)
        loss = _scalar(meta_loss(leaves), "at theta")
        dtype = loss.dtype
        for p in params:
            dtype = _less_precise(dtype, p.dtype)
        grads = [None] * len(leaves)
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        g = [torch.zeros_like(t) if gi is None else gi for gi, t in zip(grads, theta)]
        loss_value = loss.detach().item()

        if dtype not in _STEP_DEFAULTS and (eps is None or tolerance is None):
            raise ValueError(f"check_meta_gradient: {_dtype_name(dtype)} is too coarse for finite differences with "
                             "default settings; check float64 copies of the parameters and inputs (or give eps and "
                             "tolerance)")
        default_eps, default_tolerance = _STEP_DEFAULTS.get(dtype, (None, None))
        eps = default_eps if eps is None else eps
        tolerance = default_tolerance if tolerance is None else tolerance
        step = eps * max(math.sqrt(_dot(theta, theta)), 1.0)

        def evaluate(values):
            return _scalar(meta_loss(_fresh_leaves(values)), "at a perturbed theta").detach().item()

        # Directions in float64 on the CPU from one seeded generator: the same numbers on any device and in C++.
        generator = torch.Generator().manual_seed(seed)
        def along(u, norm, h):
            shifts = [(ui * (h / norm)).to(device=t.device, dtype=t.dtype) for ui, t in zip(u, theta)]
            plus = [t + s for t, s in zip(theta, shifts)]
            minus = [t - s for t, s in zip(theta, shifts)]
            # <g, u> along the step actually taken, (θ+ − θ−) / 2h after rounding to the parameters' dtype, so that
            # rounding the perturbed parameters does not count as an error of the meta-gradient.
            moved = [a.double() - b.double() for a, b in zip(plus, minus)]
            return DirectionalDerivative(autograd=_dot(g, moved) / (2.0 * h),
                                         finite_difference=(evaluate(plus) - evaluate(minus)) / (2.0 * h), step=h)

        results = []
        nonsmooth = 0
        drawn = 0
        while len(results) < directions and drawn < 3 * directions:
            drawn += 1
            u = [torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in theta]
            norm = math.sqrt(_dot(u, u))
            smooth, h = None, step
            for _ in range(_SHRINKS + 1):
                half, full = along(u, norm, h / 2.0), along(u, norm, h)
                scale = max(abs(full.finite_difference), abs(half.finite_difference))
                if abs(full.finite_difference - half.finite_difference) <= tolerance * scale:
                    smooth = half
                    break
                h /= 10.0
            if smooth is None:
                nonsmooth += 1
            else:
                results.append(smooth)

    err2 = sum((d.autograd - d.finite_difference) ** 2 for d in results)
    fd2 = sum(d.finite_difference ** 2 for d in results)
    if not results:
        relative_error = math.inf
    else:
        relative_error = math.sqrt(err2 / fd2) if fd2 > 0 else (0.0 if err2 == 0 else math.inf)
    passed = math.isfinite(loss_value) and math.isfinite(relative_error) and relative_error <= tolerance
    return MetaGradientCheck(directions=results, relative_error=relative_error, tolerance=tolerance, eps=eps,
                             step=step, loss=loss_value, gradient_norm=math.sqrt(_dot(g, g)), dtype=dtype,
                             passed=passed, nonsmooth_directions=nonsmooth)
