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


def _broadcast_out(query, key, value, enable_gqa):
    """theria.sdpa's output shape: the broadcast leading sizes (heads kept apart under enable_gqa), L, Ev."""
    if enable_gqa:
        outer = torch.broadcast_shapes(query.shape[:-3], key.shape[:-3], value.shape[:-3])
        lead = (*outer, query.shape[-3])
    else:
        lead = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    return query.new_empty((*lead, query.shape[-2], value.shape[-1]))


@torch.library.register_fake("theria::sdpa")
def _sdpa_fake(query, key, value, is_causal=False, scale=None, backend="auto", attn_mask=None, enable_gqa=False):
    return _broadcast_out(query, key, value, enable_gqa)


@torch.library.register_fake("theria::sdpa_fwd")
def _sdpa_fwd_fake(q, k, v, is_causal, scale, backend, attn_mask=None):
    return _out_like(q, v), q.new_empty(q.shape[:-1], dtype=_stats_dtype(q))


@torch.library.register_fake("theria::sdpa_jvp")
def _sdpa_jvp_fake(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, backend, attn_mask=None, mask_dot=None):
    return _out_like(q, v), q.new_empty(q.shape[:-1], dtype=_stats_dtype(q)), _out_like(q, v)


def _mask_grad_like(q, attn_mask, mask_grad):
    """A float mask's gradient (or its tangent): the mask's shape with mask_grad, else an empty tensor."""
    return _like(attn_mask) if mask_grad else q.new_empty((0,))


@torch.library.register_fake("theria::sdpa_bwd")
def _sdpa_bwd_fake(q, k, v, out, lse, dout, is_causal, scale, backend, attn_mask=None, mask_grad=False):
    return _like(q), _like(k), _like(v), _mask_grad_like(q, attn_mask, mask_grad)


@torch.library.register_fake("theria::sdpa_bwd_jvp")
def _sdpa_bwd_jvp_fake(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, backend,
                       attn_mask=None, mask_dot=None, mask_grad=False):
    return _like(q), _like(k), _like(v), _out_like(q, v), _mask_grad_like(q, attn_mask, mask_grad)


def _front(x, bdim, batch_size):
    """x with its vmapped dimension first (expanded when x is not batched)."""
    if x is None:
        return None
    if bdim is None:
        return x.expand(batch_size, *x.shape)
    return x.movedim(bdim, 0)


def _register_vmap(name, n_tensors, n_outputs, mask_at, dot_at=None, grad_at=None):
    """args[:n_tensors] are the op's leading tensors; args[mask_at] is its attn_mask (None or a tensor) and
    args[dot_at], for the ops that take one, the mask's tangent mask_dot; a vmapped mask (or tangent) also
    batches: moved to the front, or left to broadcast when it is not batched (a mask without the vmapped dim
    broadcasts over it, as over any leading dim). args[grad_at] is mask_grad: then the last output is the mask's
    gradient, one per sample, so the mask is batched (expanded) first; without it that output is an empty tensor,
    not batched."""
    op = getattr(torch.ops.theria, name).default
    masks = [mask_at] + ([dot_at] if dot_at is not None else [])

    def rule(info, in_dims, *args):
        tensors = [_front(t, d, info.batch_size) for t, d in zip(args[:n_tensors], in_dims[:n_tensors])]
        rest = list(args[n_tensors:])
        rank = tensors[0].dim()
        mask_grad = grad_at is not None and grad_at < len(args) and bool(args[grad_at])
        for at in masks:
            if at >= len(args) or args[at] is None:
                continue
            dim = in_dims[at] if len(in_dims) > at else None
            if dim is None and not (mask_grad and at == mask_at):
                continue
            mask = _front(args[at], dim, info.batch_size)
            # Line the vmapped dim up with the operands' first dim: (batch, 1, ..., 1, rest of the mask).
            rest[at - n_tensors] = mask.reshape(mask.shape[0], *([1] * (rank - mask.dim())), *mask.shape[1:])
        out = op(*tensors, *rest)
        if n_outputs == 1:
            return out, 0
        dims = [0] * n_outputs
        if grad_at is not None and not mask_grad:
            dims[-1] = None
        elif mask_grad:  # the gradient of each sample's mask, of its shape
            mask_dim = in_dims[mask_at] if len(in_dims) > mask_at else None
            shape = list(args[mask_at].shape)
            if mask_dim is not None:
                del shape[mask_dim]
            out = (*out[:-1], out[-1].reshape(info.batch_size, *shape))
        return out, tuple(dims)

    torch.library.register_vmap(f"theria::{name}", rule)


_register_vmap("sdpa", 3, 1, 6)
_register_vmap("sdpa_fwd", 3, 2, 6)
_register_vmap("sdpa_jvp", 6, 3, 9, dot_at=10)
_register_vmap("sdpa_bwd", 6, 4, 9, grad_at=10)
_register_vmap("sdpa_bwd_jvp", 10, 5, 13, dot_at=14, grad_at=15)
