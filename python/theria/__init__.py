"""theria: scaled-dot-product attention with explicit derivatives at every order.

    import theria
    out = theria.sdpa(q, k, v, is_causal=True)        # like F.scaled_dot_product_attention

Backends: "auto" (default), "reference" (plain ATen, the oracle), "explicit" (CPU kernels),
"fused" (CUDA kernels). Reverse mode at any order (create_graph), forward-mode AD, torch.func
(grad, jvp, vmap, hessian) and torch.compile work through the ops torch.ops.theria.*.

sdpa_override() routes torch.nn.functional.scaled_dot_product_attention inside existing models (nn.MultiheadAttention,
nn.TransformerEncoderLayer, model libraries) to theria (docs/drop_in.md).

inspect_graph(meta_loss) and check_meta_gradient(fn, params) tell whether a meta-gradient really carries the
second-order terms through attention (docs/meta_check.md).
"""
import torch

from . import _library
from ._version import __version__  # noqa: F401  (the one version: CMake's project reads it too)

_library_path = _library.load()

from . import _meta  # noqa: E402,F401  (fake kernels and vmap rules)
from .meta_check import (  # noqa: E402  (is my MAML really second order? docs/meta_check.md)
    DirectionalDerivative, GraphReport, MetaGradientCheck, check_meta_gradient, inspect_graph)
from .override import (  # noqa: E402  (the drop-in for existing models: docs/drop_in.md)
    SdpaOverride, disable_sdpa_override, enable_sdpa_override, sdpa_override)

__all__ = ["__version__", "sdpa", "select_backend", "tolerance", "BACKENDS", "inspect_graph", "GraphReport", "check_meta_gradient",
           "MetaGradientCheck", "DirectionalDerivative", "sdpa_override", "SdpaOverride", "enable_sdpa_override",
           "disable_sdpa_override"]

BACKENDS = ("auto", "reference", "explicit", "fused")


def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, *,
         backend="auto"):
    """Drop-in for torch.nn.functional.scaled_dot_product_attention (no mask, no dropout, no GQA).

    query (..., L, E), key (..., S, E), value (..., S, Ev) with equal leading sizes; returns (..., L, Ev).
    """
    if attn_mask is not None:
        raise ValueError("theria.sdpa: attn_mask is not supported; use is_causal=True for a causal mask")
    if dropout_p != 0.0:
        raise ValueError(f"theria.sdpa: dropout_p must be 0.0 (no dropout), got {dropout_p}")
    if enable_gqa:
        raise ValueError("theria.sdpa: enable_gqa is not supported; query, key and value need equal head counts")
    return torch.ops.theria.sdpa(query, key, value, is_causal, scale, backend)


def select_backend(query, key, value, is_causal=False, backend="auto"):
    """The concrete backend that `backend` resolves to for these inputs, and why: (name, reason)."""
    name, reason = torch.ops.theria.select_backend(query, key, value, is_causal, backend)
    return name, reason


def tolerance(dtype, order=0):
    """Max relative error allowed against the float64 reference (order 0: forward, 1-3: derivatives)."""
    return torch.ops.theria.tolerance(dtype, order)
