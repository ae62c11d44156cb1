"""Fake (meta) kernels and vmap batching rules of torch.ops.theria.*.

Fake kernels give torch.compile, torch.library.opcheck and FakeTensor the output shapes, dtypes
and (contiguous) layouts of the real kernels. The batching rules move the vmapped dimension of
every input to the front, where it becomes one more leading (batch) dimension of the op, so vmap
runs one call of the kernel, never a per-sample loop.
"""
import torch


def _stats_dtype(q):
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _out_like(q, v):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def _like(t):
    return t.new_empty(t.shape)


@torch.library.register_fake("theria::sdpa")
def _sdpa_fake(query, key, value, is_causal=False, scale=None, backend="auto"):
    return _out_like(query, value)


@torch.library.register_fake("theria::sdpa_fwd")
def _sdpa_fwd_fake(q, k, v, is_causal, scale, backend):
    return _out_like(q, v), q.new_empty(q.shape[:-1], dtype=_stats_dtype(q))


@torch.library.register_fake("theria::sdpa_jvp")
def _sdpa_jvp_fake(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, backend):
    return _out_like(q, v), q.new_empty(q.shape[:-1], dtype=_stats_dtype(q)), _out_like(q, v)


@torch.library.register_fake("theria::sdpa_bwd")
def _sdpa_bwd_fake(q, k, v, out, lse, dout, is_causal, scale, backend):
    return _like(q), _like(k), _like(v)


@torch.library.register_fake("theria::sdpa_bwd_jvp")
def _sdpa_bwd_jvp_fake(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, backend):
    return _like(q), _like(k), _like(v), _out_like(q, v)


def _front(x, bdim, batch_size):
    """x with its vmapped dimension first (expanded when x is not batched)."""
    if x is None:
        return None
    if bdim is None:
        return x.expand(batch_size, *x.shape)
    return x.movedim(bdim, 0)


def _register_vmap(name, n_tensors, n_outputs):
    op = getattr(torch.ops.theria, name).default

    def rule(info, in_dims, *args):
        tensors = [_front(t, d, info.batch_size) for t, d in zip(args[:n_tensors], in_dims[:n_tensors])]
        out = op(*tensors, *args[n_tensors:])
        return out, (0 if n_outputs == 1 else (0,) * n_outputs)

    torch.library.register_vmap(f"theria::{name}", rule)


_register_vmap("sdpa", 3, 1)
_register_vmap("sdpa_fwd", 3, 2)
_register_vmap("sdpa_jvp", 6, 3)
_register_vmap("sdpa_bwd", 6, 3)
_register_vmap("sdpa_bwd_jvp", 10, 4)
