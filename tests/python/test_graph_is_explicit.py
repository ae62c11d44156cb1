"""The explicit backend's first and second derivatives run through theria's own nodes (sdpa_bwd,
sdpa_bwd_jvp), never through an autograd graph of L x S attention matrices: the graph after
grad(create_graph=True) holds only theria nodes and leaves, and no saved tensor is L x S.
The reference backend is the contrast that shows the checks can fail."""
import pytest
import torch

import theria
from sdpa_testing import Shape, make_qkv, randn

L, S = 37, 53
SHAPE = Shape((2, 3), L, S, 8, 5)
causal = pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])


def _graph_nodes(roots):
    seen, stack, names = set(), [r for r in roots if r is not None], []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        names.append(node.name())
        stack.extend(fn for fn, _ in node.next_functions if fn is not None)
    return names


def _first_backward(backend, is_causal):
    q, k, v = make_qkv(SHAPE, seed=5, requires_grad=True)
    dout = randn(SHAPE.out, seed=6)
    out = theria.sdpa(q, k, v, is_causal=is_causal, backend=backend)
    grads = torch.autograd.grad(out, (q, k, v), dout, create_graph=True)
    return (q, k, v), grads


@causal
def test_double_backward_graph_has_only_theria_nodes(is_causal):
    _, grads = _first_backward("explicit", is_causal)
    names = _graph_nodes([g.grad_fn for g in grads])
    assert "theria::SdpaBwdBackward" in names
    foreign = [n for n in names if not (n.startswith("theria::") or n.endswith("AccumulateGrad"))]
    assert not foreign, f"non-theria autograd nodes behind the explicit first derivative: {sorted(set(foreign))}"


@causal
def test_double_backward_graph_reference_contrast(is_causal):
    _, grads = _first_backward("reference", is_causal)
    names = _graph_nodes([g.grad_fn for g in grads])
    assert any(not (n.startswith("theria::") or n.endswith("AccumulateGrad")) for n in names)


def _saved_shapes(backend, is_causal, second_order):
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x, grads = _first_backward(backend, is_causal)
        if second_order:
            u = [torch.ones_like(g) for g in grads]
            # the HVP itself (no create_graph: from third order on theria runs the reference
            # composition by design, which does save L x S tensors)
            torch.autograd.grad(sum((g * ui).sum() for g, ui in zip(grads, u)), x)
    return shapes


def _has_attention_matrix(shapes):
    return [s for s in shapes if len(s) >= 2 and s[-2:] in ((L, S), (S, L))]


@causal
@pytest.mark.parametrize("second_order", [False, True], ids=["fwd+bwd", "fwd+bwd+hvp"])
def test_explicit_saves_no_attention_matrix(is_causal, second_order):
    shapes = _saved_shapes("explicit", is_causal, second_order)
    assert shapes, "the saved-tensor hooks saw nothing: the check would be vacuous"
    assert not _has_attention_matrix(shapes), f"L x S tensors saved: {_has_attention_matrix(shapes)}"


@causal
def test_reference_saves_attention_matrix(is_causal):
    assert _has_attention_matrix(_saved_shapes("reference", is_causal, False))
