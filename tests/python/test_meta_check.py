"""theria.inspect_graph and theria.check_meta_gradient on a tiny MAML in float64 (docs/meta_check.md).

The exact FULL meta-gradient through theria is found second order and equal to the derivative of the meta-loss;
each way of silently losing the second-order terms is flagged by the graph walk, fails the directional-derivative
check, or both. The problem is the one of tests/cpp/test_meta_check.cpp, drawn from the same seeds.
"""
import math

import pytest
import torch
from torch.autograd.function import once_differentiable

import theria
from test_maml_example import TinyAttentionClassifier, make_task, meta_loss as module_meta_loss

LEN, IN, HEAD, OUT = 8, 6, 4, 3
SCALE = 1.0 / math.sqrt(HEAD)


def randn(shape, seed, dtype=torch.float64):
    """As tests/cpp/test_util.h: float64 values from a private generator, then rounded to dtype."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def init_weights(dtype=torch.float64):
    shapes = [(IN, HEAD), (IN, HEAD), (IN, HEAD), (HEAD, OUT)]
    return [(randn(s, 21 + i, dtype) / math.sqrt(s[0])).requires_grad_(True) for i, s in enumerate(shapes)]


def task_loss(attention, w, x, y):
    out = attention(x @ w[0], x @ w[1], x @ w[2])
    return ((out @ w[3] - y) ** 2).mean()


def tiny_maml(attention, create_graph=True, inner_steps=2, inner_lr=0.5, dtype=torch.float64):
    """The meta-loss of one fixed task as a function of the weights: SGD steps on the support loss, query loss."""
    xs, ys = randn((LEN, IN), 11, dtype), randn((LEN, OUT), 12, dtype)
    xq, yq = randn((LEN, IN), 13, dtype), randn((LEN, OUT), 14, dtype)

    def meta_loss(w):
        fast = list(w)
        for _ in range(inner_steps):
            # allow_unused: a detached attention leaves the projections out of the support loss's graph.
            g = torch.autograd.grad(task_loss(attention, fast, xs, ys), fast, create_graph=create_graph,
                                    allow_unused=True)
            fast = [p if gi is None else p - inner_lr * gi for p, gi in zip(fast, g)]
        return task_loss(attention, fast, xq, yq)

    return meta_loss


def theria_attention(backend):
    return lambda q, k, v: theria.sdpa(q, k, v, backend=backend)


def detached_attention(q, k, v):
    return theria.sdpa(q, k, v).detach()


def no_grad_attention(q, k, v):
    with torch.no_grad():
        return theria.sdpa(q, k, v)


class NoGradBackwardAttention(torch.autograd.Function):
    """A custom function around theria whose backward runs under no_grad: the first derivative is right, the
    gradients it returns have no history, so the double backward is silently zero (once_differentiable, silent)."""

    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save_for_backward(q, k, v)
        return theria.sdpa(q, k, v)

    @staticmethod
    def backward(ctx, dout):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
            out = theria.sdpa(*leaves)
        with torch.no_grad():
            return torch.autograd.grad(out, leaves, dout.detach())


class OnceDifferentiableAttention(torch.autograd.Function):
    """The same backward under PyTorch's own @once_differentiable."""

    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save_for_backward(q, k, v)
        return theria.sdpa(q, k, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
            return torch.autograd.grad(theria.sdpa(*leaves), leaves, dout)


def hand_written_attention(detach_lse):
    """P = exp(S - lse(S)); with detach_lse the row statistic is a constant to autograd (forward unchanged)."""
    def attention(q, k, v):
        s = q @ k.mT * SCALE
        lse = torch.logsumexp(s, -1, keepdim=True)
        return torch.exp(s - (lse.detach() if detach_lse else lse)) @ v
    return attention


def any_warning(report, words):
    return any(words in w for w in report.warnings)


def test_exact_full_through_explicit_is_second_order_through_theria_and_passes():
    f, w = tiny_maml(theria_attention("explicit")), init_weights()
    graph = theria.inspect_graph(f(w))
    # One attention call per support loss (2 inner steps) and one in the query loss; each support call's backward
    # is differentiated once.
    assert (graph.sdpa_nodes, graph.sdpa_double_backward_nodes, graph.softmax_nodes) == (3, 2, 0)
    assert graph.second_order_through_attention() and graph.ok(), graph.describe()
    assert graph.second_order_node_names == ["theria::SdpaBwdBackward"]

    check = theria.check_meta_gradient(f, w)
    assert check.passed and check.relative_error < 1e-7, check.describe()
    assert len(check.directions) == 4 and check.dtype == torch.float64
    # The C++ test of the same problem prints the same numbers: the seeded directions are shared by both languages.
    assert check.loss == pytest.approx(1.087402831, abs=1e-9)
    assert check.directions[0].autograd == pytest.approx(-6.8605412215e-02, abs=1e-12)


def test_exact_full_through_reference_shows_pytorchs_double_backward_and_passes():
    f, w = tiny_maml(theria_attention("reference")), init_weights()
    graph = theria.inspect_graph(f(w))
    assert (graph.sdpa_nodes, graph.softmax_nodes, graph.softmax_double_backward_nodes) == (0, 3, 2)
    assert graph.aten_double_backward_nodes == 2
    assert graph.second_order_node_names == ["SoftmaxBackwardDataBackward0"]
    assert graph.ok(), graph.describe()
    assert theria.check_meta_gradient(f, w).passed


def test_twenty_inner_steps_are_walked_node_by_node():
    f = tiny_maml(theria_attention("explicit"), inner_steps=20, inner_lr=0.05)
    graph = theria.inspect_graph(f(init_weights()))
    assert (graph.sdpa_nodes, graph.sdpa_double_backward_nodes) == (21, 20)
    assert graph.ok(), graph.describe()


def test_inner_gradients_without_create_graph_are_flagged_and_fail():
    f, w = tiny_maml(theria_attention("explicit"), create_graph=False), init_weights()
    graph = theria.inspect_graph(f(w))
    assert (graph.sdpa_nodes, graph.sdpa_double_backward_nodes) == (1, 0)  # the query loss's attention only
    assert any_warning(graph, "no differentiated attention backward"), graph.describe()
    assert not theria.check_meta_gradient(f, w).passed


@pytest.mark.parametrize("attention", [detached_attention, no_grad_attention], ids=["detach", "no_grad"])
def test_attention_outside_the_graph_is_flagged_and_fails(attention):
    f, w = tiny_maml(attention), init_weights()
    graph = theria.inspect_graph(f(w))
    assert not graph.attention_in_graph()
    assert any_warning(graph, "no attention node reaches the loss"), graph.describe()
    check = theria.check_meta_gradient(f, w)
    assert not check.passed, check.describe()


def test_custom_function_with_a_no_grad_backward_is_flagged_and_fails():
    f, w = tiny_maml(NoGradBackwardAttention.apply), init_weights()
    # First order is right: the support-loss gradient equals theria's own.
    x, y = randn((LEN, IN), 11), randn((LEN, OUT), 12)
    g = torch.autograd.grad(task_loss(NoGradBackwardAttention.apply, w, x, y), w)
    g_exact = torch.autograd.grad(task_loss(theria_attention("explicit"), w, x, y), w)
    for a, b in zip(g, g_exact):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)

    graph = theria.inspect_graph(f(w))
    assert graph.custom_function_names == ["NoGradBackwardAttentionBackward"]
    assert any_warning(graph, "custom autograd functions reach the loss"), graph.describe()
    assert not theria.check_meta_gradient(f, w).passed


def test_pytorchs_once_differentiable_is_silent_under_autograd_grad_and_raises_under_backward():
    """What @once_differentiable does under create_graph, as measured (torch 2.11): the inner gradients come out
    of a DelayedError node whose inputs are detached copies, not the parameters. torch.autograd.grad(meta_loss,
    params) never runs that node (it leads to no parameter) and returns a meta-gradient without the second-order
    terms through attention, silently; meta_loss.backward() runs every node and raises."""
    f, w = tiny_maml(OnceDifferentiableAttention.apply), init_weights()
    loss = f(w)
    graph = theria.inspect_graph(loss)
    assert "torch::autograd::Error" in dict(graph.node_names)
    assert any_warning(graph, "torch::autograd::Error reaches the loss"), graph.describe()
    assert graph.custom_function_names == ["OnceDifferentiableAttentionBackward"]

    meta_grad = torch.autograd.grad(loss, w, retain_graph=True)  # no error
    assert all(torch.isfinite(g).all() for g in meta_grad)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        loss.backward()
    check = theria.check_meta_gradient(f, w)
    assert not check.passed, check.describe()


def test_detached_softmax_statistics_fail_the_numerical_check():
    w = init_weights()
    # The same hand-written attention without the detach is exact: the check passes, so the failure below is the
    # detached statistic's.
    assert theria.check_meta_gradient(tiny_maml(hand_written_attention(False)), w).passed
    f = tiny_maml(hand_written_attention(True))
    check = theria.check_meta_gradient(f, w)
    assert not check.passed, check.describe()
    # The walk cannot tell the two apart: it knows no node of a hand-written attention, and says so for both.
    graph = theria.inspect_graph(f(w))
    graph_exact = theria.inspect_graph(tiny_maml(hand_written_attention(False))(w))
    assert not graph.attention_in_graph()
    assert graph.warnings == graph_exact.warnings


def test_pytorchs_fused_sdpa_is_flagged_and_its_meta_gradient_raises():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(q[None, None], k[None, None], v[None, None])[0, 0]

    f, w = tiny_maml(flash, dtype=torch.float32), init_weights(torch.float32)
    loss = f(w)  # the inner loop's create_graph goes through: the missing derivative is a NotImplemented node
    graph = theria.inspect_graph(loss)
    assert graph.torch_sdpa_nodes == 3
    assert any_warning(graph, "PyTorch's fused SDPA reaches the loss"), graph.describe()
    assert any_warning(graph, "torch::autograd::NotImplemented reaches the loss"), graph.describe()
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.autograd.grad(loss, w)


def test_a_users_module_maml_passes_and_its_first_order_version_is_flagged():
    """The nn.Module + functional_call MAML of test_maml_example.py, with cross-entropy losses."""
    torch.manual_seed(0)
    model = TinyAttentionClassifier(backend="explicit").double()
    names = [n for n, _ in model.named_parameters()]
    support, query = make_task(1)

    def meta_loss(create_graph):
        return lambda p: module_meta_loss(model, dict(zip(names, p)), support, query, create_graph=create_graph)

    params = list(model.parameters())
    full = theria.inspect_graph(meta_loss(True)(params))
    assert full.ok() and full.sdpa_double_backward_nodes == 2, full.describe()
    assert theria.check_meta_gradient(meta_loss(True), params).passed
    fo = theria.inspect_graph(meta_loss(False)(params))
    assert any_warning(fo, "no differentiated attention backward"), fo.describe()
    assert not theria.check_meta_gradient(meta_loss(False), params).passed


def test_float32_uses_its_coarser_defaults():
    w = init_weights(torch.float32)
    check = theria.check_meta_gradient(tiny_maml(theria_attention("explicit"), dtype=torch.float32), w)
    assert (check.dtype, check.eps, check.tolerance) == (torch.float32, 1e-3, 5e-2)
    assert check.passed, check.describe()
    assert "float64 is the trustworthy setting" in check.describe()
    first_order = tiny_maml(theria_attention("explicit"), create_graph=False, dtype=torch.float32)
    assert not theria.check_meta_gradient(first_order, w).passed


def test_each_node_is_visited_once_and_the_walk_is_iterative():
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    y = p * 2.0
    diamond = theria.inspect_graph((y + y).sum())  # Sum <- Add <- Mul (reached twice) <- AccumulateGrad
    assert diamond.nodes == 4 and sum(count for _, count in diamond.node_names) == 4
    depth = 200_000  # far past Python's recursion limit
    x = p
    for _ in range(depth):
        x = x * 1.0
    assert theria.inspect_graph(x.sum()).nodes == depth + 2


def test_a_loss_without_graph_is_flagged():
    graph = theria.inspect_graph(torch.ones((), dtype=torch.float64))
    assert not graph.has_graph
    assert any_warning(graph, "the loss has no grad_fn"), graph.describe()


def test_descriptions_name_the_counts_and_the_verdict():
    w = init_weights()
    full = str(theria.inspect_graph(tiny_maml(theria_attention("explicit"))(w)))
    assert "3 theria::SdpaBackward" in full and "2 theria::SdpaBwdBackward" in full
    assert "verdict: second-order terms reach the loss through attention" in full
    fo = tiny_maml(theria_attention("explicit"), create_graph=False)
    assert "warning: attention's first derivative is in the graph" in str(theria.inspect_graph(fo(w)))
    text = str(theria.check_meta_gradient(fo, w, directions=2))
    assert "check_meta_gradient: FAILED (float64)" in text and "a term is dropped" in text


def test_bad_inputs_are_errors_naming_the_problem():
    w = init_weights()
    with pytest.raises(ValueError, match="must be a scalar"):
        theria.check_meta_gradient(lambda p: p[0] * 2.0, w)
    with pytest.raises(ValueError, match="no parameters"):
        theria.check_meta_gradient(lambda p: p[0].sum(), [])
    half = [w[0].detach().half()]
    summed = lambda p: p[0].double().sum()  # noqa: E731  (summed in float64: the check's dtype is still float16)
    with pytest.raises(ValueError, match="float16 is too coarse"):
        theria.check_meta_gradient(summed, half)
    check = theria.check_meta_gradient(summed, half, eps=1e-2, tolerance=1e-6)
    assert check.passed and check.dtype == torch.float16, check.describe()


def test_parameters_are_left_untouched():
    f, w = tiny_maml(theria_attention("explicit")), init_weights()
    before = [p.detach().clone() for p in w]
    with torch.no_grad():  # the check turns grad mode on for the meta-loss itself
        assert theria.check_meta_gradient(f, w, directions=1).passed
    for p, b in zip(w, before):
        assert torch.equal(p, b) and p.grad is None


def test_a_jump_near_theta_shrinks_the_step_instead_of_failing():
    # As MetaCheck.AJumpNearThetaShrinksTheStepInsteadOfFailing: a MAML meta-loss through ReLU jumps where a ReLU
    # switches inside the inner loop; a jump inside the first step but outside a smaller one is not an error.
    w = torch.linspace(-1.0, 1.0, 10, dtype=torch.float64)

    def near(p):
        return (p[0] * w).sum() + 0.5 * p[0].pow(2).sum() + (p[0][0] > 1.0 + 2e-7).double() * 10.0

    check = theria.check_meta_gradient(near, [torch.ones(10, dtype=torch.float64)])
    assert check.passed, str(check)
    assert any(d.step < check.step / 2 for d in check.directions), str(check)

    def at_theta(p):
        return (p[0] * w).sum() + (p[0][0] > 1.0).double() * 10.0

    fails = theria.check_meta_gradient(at_theta, [torch.ones(10, dtype=torch.float64)])
    assert not fails.passed and fails.nonsmooth_directions == 12
    assert "not smooth" in str(fails)
