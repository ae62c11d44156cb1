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
    """Drop-in for torch.nn.functional.scaled_dot_product_attention (everything but dropout).

    query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev), leading sizes broadcast as PyTorch
    broadcasts them; Hkv < Hq (a divisor) with enable_gqa=True. attn_mask: bool (True = take part) or float
    (added to the logits), broadcastable to (..., L, S); not with is_causal=True. Returns (..., Hq, L, Ev).
    A row that every key is masked from gives zeros (as PyTorch's math backend).
    """
    if dropout_p != 0.0:
        raise ValueError(f"theria.sdpa: dropout_p must be 0.0 (no dropout), got {dropout_p}")
    return torch.ops.theria.sdpa(query, key, value, is_causal, scale, backend, attn_mask, enable_gqa)


def select_backend(query, key, value, is_causal=False, backend="auto", attn_mask=None, enable_gqa=False):
    """The concrete backend that `backend` resolves to for these inputs, and why: (name, reason)."""
    name, reason = torch.ops.theria.select_backend(query, key, value, is_causal, backend, attn_mask, enable_gqa)
    return name, reason


def tolerance(dtype, order=0, float32_precision=None):
    """Max relative error allowed against the float64 reference (order 0: forward, 1-3: derivatives).

    For float32, `float32_precision` names the torch.set_float32_matmul_precision setting the results were
    computed under: "medium" gives the bfloat16 row, "high" TF32's row (float16's: PyTorch allows TF32 products
    there, and the fused kernels run scaled float16 copies or bfloat16-split operands), "highest" (or None) the
    float32 row."""
    if float32_precision is not None and dtype == torch.float32:
        return torch.ops.theria.float32_tolerance(float32_precision, order)
    return torch.ops.theria.tolerance(dtype, order)
