"""Route torch.nn.functional.scaled_dot_product_attention to theria inside existing models (docs/drop_in.md).

    with theria.sdpa_override() as routed:       # every F.scaled_dot_product_attention call in the scope
        loss = maml_meta_loss(model, ...)         # nn.MultiheadAttention, nn.TransformerEncoderLayer, ...
    print(routed.served, routed.fallbacks)        # calls theria served; calls PyTorch's math backend took, by reason

How: PyTorch's operator registration API (torch.library) gives aten::scaled_dot_product_attention another
CompositeImplicitAutograd kernel for the scope, the key its own kernel lives at. So every caller is reached (the
functional, and the calls inside nn.MultiheadAttention's Python code, which a TorchFunctionMode cannot see: a mode is
switched off while it handles the enclosing call), autograd records theria's own nodes (every derivative order,
forward AD), and leaving the scope unregisters the kernel, which restores PyTorch's. The registration is
process-wide, as every dispatcher registration is: threads running at the same time see it too.

A call theria cannot serve yet (a mask, dropout, GQA with fewer key/value heads, batch sizes that broadcast) goes to
PyTorch's math backend (aten._scaled_dot_product_attention_math), the one PyTorch backend with every derivative, so
double backward and forward AD stay right either way; each distinct reason warns once per scope. strict=True
raises instead.
"""
import collections
import contextlib
import warnings

import torch

__all__ = ["sdpa_override", "SdpaOverride", "enable_sdpa_override", "disable_sdpa_override"]


def unserved_reason(query, key, value, attn_mask, dropout_p, enable_gqa):
    """Why theria cannot serve this call yet, or None when it can (masks, grouped-query attention and
    broadcast leading sizes are served; dropout is not)."""
    if dropout_p != 0.0:
        return "dropout_p > 0"
    return None


class SdpaOverride:
    """One scope of the override: its settings and what it routed (served: calls theria ran; fallbacks: reason ->
    calls that went to PyTorch's math backend)."""

    def __init__(self, strict=False, backend="auto"):
        self.strict, self.backend = strict, backend
        self.served = 0
        self.fallbacks = collections.Counter()

    def fraction_served(self):
        total = self.served + sum(self.fallbacks.values())
        return self.served / total if total else float("nan")

    def __call__(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                 enable_gqa=False):
        reason = unserved_reason(query, key, value, attn_mask, dropout_p, enable_gqa)
        if reason is None:
            self.served += 1
            return torch.ops.theria.sdpa(query, key, value, is_causal, scale, self.backend, attn_mask, enable_gqa)
        if self.strict:
            raise NotImplementedError(f"theria.sdpa_override(strict=True): theria cannot serve this call yet: {reason}")
        if reason not in self.fallbacks:
            warnings.warn(f"theria.sdpa_override: {reason}: this call (and any like it in this scope) runs PyTorch's "
                          "math backend, which has every derivative", stacklevel=2)
        self.fallbacks[reason] += 1
        return torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa)[0]


_active = []  # the scopes entered, innermost last: the kernel routes through the innermost one
_library = None


def _kernel(*args, **kwargs):
    return _active[-1](*args, **kwargs)


def _push(scope):
    global _library
    if _library is None:
        with warnings.catch_warnings():
            # The dispatcher says once that a kernel is overridden: that is what this scope is for.
            warnings.filterwarnings("ignore", message=".*[Oo]verrid.*")
            _library = torch.library.Library("aten", "IMPL")
            _library.impl("scaled_dot_product_attention", _kernel, "CompositeImplicitAutograd")
    _active.append(scope)


def _pop(scope):
    global _library
    _active.remove(scope)
    if not _active and _library is not None:
        _library._destroy()  # unregisters the kernel: PyTorch's own is the one again
        _library = None


@contextlib.contextmanager
def sdpa_override(strict=False, backend="auto"):
    """Inside the scope every aten::scaled_dot_product_attention call goes to theria (or, where theria cannot serve
    it yet, to PyTorch's math backend with a warning per reason; strict=True raises). Yields the SdpaOverride,
    whose served / fallbacks count the calls."""
    scope = SdpaOverride(strict, backend)
    _push(scope)
    try:
        yield scope
    finally:
        _pop(scope)


_global = None


def enable_sdpa_override(strict=False, backend="auto"):
    """The override for the rest of the process (until disable_sdpa_override); returns its SdpaOverride."""
    global _global
    disable_sdpa_override()
    _global = SdpaOverride(strict, backend)
    _push(_global)
    return _global


def disable_sdpa_override():
    global _global
    if _global is not None:
        _pop(_global)
        _global = None
