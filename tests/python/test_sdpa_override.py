"""theria.sdpa_override (docs/drop_in.md) on CPU, float64: every F.scaled_dot_product_attention call in the scope,
inside nn.MultiheadAttention and nn.TransformerEncoderLayer too, runs theria; a MAML meta-gradient (double backward)
and a forward-mode JVP through those models equal PyTorch's math backend; calls theria cannot serve yet go to the
math backend with one warning per reason (strict=True raises); leaving the scope restores PyTorch's kernel."""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

import theria

DTYPE = torch.float64


class SelfAttention(nn.Module):
    """nn.MultiheadAttention as models call it for self-attention (need_weights=False: the SDPA path)."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True, dtype=DTYPE)

    def forward(self, x, key_padding_mask=None):
        return self.mha(x, x, x, need_weights=False, key_padding_mask=key_padding_mask)[0]


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer, batch-first, with or without a causal mask."""

    def __init__(self, causal, dim=16, heads=2):
        super().__init__()
        self.causal = causal
        self.layer = nn.TransformerEncoderLayer(dim, heads, 32, dropout=0.0, batch_first=True, dtype=DTYPE)

    def forward(self, x):
        if not self.causal:
            return self.layer(x)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=DTYPE)
        return self.layer(x, src_mask=mask, is_causal=True)


MODELS = {"multihead_attention": lambda: SelfAttention(), "encoder_layer": lambda: EncoderLayer(False),
          "encoder_layer_causal": lambda: EncoderLayer(True)}


def data(seed=0, batch=3, tokens=7, dim=16):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, tokens, dim, generator=g, dtype=DTYPE) for _ in range(4)]


def meta_gradient(model, steps=2, lr=0.1):
    """A MAML meta-gradient: inner steps on a support set with create_graph, the query loss differentiated to the
    initial weights (a double backward through attention)."""
    xs, ys, xq, yq = data()
    params = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}
    fast = dict(params)
    for _ in range(steps):
        loss = (functional_call(model, fast, (xs,)) - ys).pow(2).mean()
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
    meta_loss = (functional_call(model, fast, (xq,)) - yq).pow(2).mean()
    return torch.autograd.grad(meta_loss, list(params.values())), meta_loss


def jvp(model):
    x, tangent, _, _ = data(1)
    params = {k: v.detach() for k, v in model.named_parameters()}
    return torch.func.jvp(lambda x: functional_call(model, params, (x,)), (x,), (tangent,))


def close(a, b, tol=1e-10):
    return all(torch.allclose(u, v, rtol=tol, atol=tol) for u, v in zip(a, b))


@pytest.mark.parametrize("name", list(MODELS))
def test_maml_meta_gradient_and_jvp_through_real_modules_equal_the_math_backend(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    with sdpa_kernel(SDPBackend.MATH):
        want_grads, want_loss = meta_gradient(model)
        want_jvp = jvp(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here falls back
        with theria.sdpa_override() as routed:
            got_grads, got_loss = meta_gradient(model)
            got_jvp = jvp(model)
    assert routed.served >= 3 and not routed.fallbacks and routed.fraction_served() == 1.0
    # theria's own nodes carry the meta-loss: its double backward did the work.
    report = theria.inspect_graph(got_loss)
    assert report.sdpa_double_backward_nodes >= 1, report.describe()
    assert close(got_grads, want_grads) and close(got_jvp, want_jvp)


def test_leaving_the_scope_restores_pytorchs_kernel_and_scopes_nest():
    q, k, v, _ = data()
    with theria.sdpa_override() as outer:
        F.scaled_dot_product_attention(q, k, v)
        with theria.sdpa_override(backend="reference") as inner:
            F.scaled_dot_product_attention(q, k, v)
        F.scaled_dot_product_attention(q, k, v)
    assert (outer.served, inner.served) == (2, 1)
    x = q.clone().requires_grad_()
    out = F.scaled_dot_product_attention(x, k, v)
    assert theria.inspect_graph(out.sum()).sdpa_nodes == 0  # PyTorch's own kernel again
    routed = theria.enable_sdpa_override()
    assert theria.inspect_graph(F.scaled_dot_product_attention(x, k, v).sum()).sdpa_nodes == 1
    theria.disable_sdpa_override()
    assert routed.served == 1
    assert theria.inspect_graph(F.scaled_dot_product_attention(x, k, v).sum()).sdpa_nodes == 0


def test_masks_and_grouped_heads_are_served_and_dropout_falls_back_with_one_warning_or_raises_when_strict():
    torch.manual_seed(0)
    model = SelfAttention()
    x = data()[0]
    padding = torch.zeros(x.shape[:2], dtype=torch.bool)
    padding[:, -2:] = True  # the last two tokens of every sequence are padding: MHA passes an attn_mask
    with sdpa_kernel(SDPBackend.MATH):
        want = model(x, padding)
    with theria.sdpa_override() as routed:
        got = [model(x, padding) for _ in range(3)]
    assert routed.served == 3 and not routed.fallbacks and routed.fraction_served() == 1.0
    assert all(torch.allclose(g, want, rtol=1e-12, atol=1e-14) for g in got)
    q, k, v, _ = data()
    gqa_k, gqa_v = k.view(3, 7, 2, 8).transpose(1, 2)[:, :1], v.view(3, 7, 2, 8).transpose(1, 2)[:, :1]
    gqa_q = q.view(3, 7, 2, 8).transpose(1, 2)
    with theria.sdpa_override(strict=True) as routed:
        got = F.scaled_dot_product_attention(gqa_q, gqa_k, gqa_v, enable_gqa=True)
        with pytest.raises(NotImplementedError, match="cannot serve this call yet: dropout_p > 0"):
            F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert routed.served == 1
    with sdpa_kernel(SDPBackend.MATH):
        assert torch.allclose(got, F.scaled_dot_product_attention(gqa_q, gqa_k, gqa_v, enable_gqa=True),
                              rtol=1e-12, atol=1e-14)
    with pytest.warns(UserWarning, match="dropout_p > 0") as record:
        with theria.sdpa_override() as routed:
            for _ in range(2):
                F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert len(record) == 1 and routed.fallbacks == {"dropout_p > 0": 2}


def test_a_learned_bias_is_served_with_its_gradient_and_double_backward():
    """A relative-position style bias that is a parameter (requires grad) reaches theria's kernels under the override:
    the gradients of (q, k, v, bias) and a double backward through them equal the math backend's."""
    q, k, v = (t.view(3, 7, 2, 8).transpose(1, 2) for t in data()[:3])  # (B, H, L, E)
    bias = torch.randn(1, 2, 7, 7, dtype=DTYPE, generator=torch.Generator().manual_seed(3))  # (1, H, L, S)

    def second_order(x):
        out = F.scaled_dot_product_attention(x[0], x[1], x[2], attn_mask=x[3])
        g = torch.autograd.grad(out.sin().sum(), x, create_graph=True)
        return [*g, *torch.autograd.grad(sum((t * t).sum() for t in g), x)]

    leaves = lambda: [t.detach().clone().requires_grad_() for t in (q, k, v, bias)]  # noqa: E731
    with theria.sdpa_override(strict=True, backend="explicit") as routed:
        got = second_order(leaves())
    assert routed.served == 1 and not routed.fallbacks
    with sdpa_kernel(SDPBackend.MATH):
        want = second_order(leaves())
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(got, want))


def test_torch_func_grad_and_compile_under_the_override():
    torch.manual_seed(0)
    model = EncoderLayer(causal=True)
    x, _, _, _ = data()
    params = {k: v.detach() for k, v in model.named_parameters()}
    loss = lambda p: functional_call(model, p, (x,)).pow(2).sum()  # noqa: E731
    with sdpa_kernel(SDPBackend.MATH):
        want = torch.func.grad(loss)(params)
        want_out = model(x)
    with theria.sdpa_override() as routed:
        got = torch.func.grad(loss)(params)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
        got_out = compiled(x)
    assert routed.served >= 2
    assert close(list(got.values()), list(want.values())) and torch.allclose(got_out, want_out, rtol=1e-10, atol=1e-10)


def test_a_model_librarys_decoder_meta_gradient_and_jvp_equal_the_math_backend():
    """A decoder-only transformer from a widely used library (Hugging Face transformers' Llama, built from a config
    with random weights, nothing downloaded), its attention through SDPA: served by theria with every head its own
    keys, with grouped-query heads and with a padded batch (a 4-D attention mask), equal to the math backend."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(num_key_value_heads=4, **config)).to(DTYPE)
    g = torch.Generator().manual_seed(1)
    support, query = (torch.randint(0, 50, (2, 9), generator=g) for _ in range(2))
    params = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}

    def loss(p, ids, **kw):
        return functional_call(model, p, (), dict(input_ids=ids, labels=ids, **kw)).loss

    def meta_gradient_and_jvp():
        grads = torch.autograd.grad(loss(params, support), list(params.values()), create_graph=True)
        fast = {k: v - 0.1 * gr for (k, v), gr in zip(params.items(), grads)}
        meta_loss = loss(fast, query)
        meta = torch.autograd.grad(meta_loss, list(params.values()))
        tangent = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
                   for k, v in params.items()}
        _, jvp_out = torch.func.jvp(lambda p: loss(p, query), (params,), (tangent,))
        return meta, jvp_out, meta_loss

    with sdpa_kernel(SDPBackend.MATH):
        want, want_jvp, _ = meta_gradient_and_jvp()
    with theria.sdpa_override() as routed:
        got, got_jvp, meta_loss = meta_gradient_and_jvp()
    assert routed.served >= 4 and not routed.fallbacks
    assert theria.inspect_graph(meta_loss).sdpa_double_backward_nodes >= 1
    assert close(got, want, 1e-9) and torch.allclose(got_jvp, want_jvp, rtol=1e-10, atol=1e-12)

    padded = torch.ones(2, 9, dtype=torch.long)
    padded[0, :3] = 0  # left padding, as for batched generation
    gqa = transformers.LlamaForCausalLM(transformers.LlamaConfig(num_key_value_heads=2, **config)).to(DTYPE)
    gqa_params = {k: v.detach().requires_grad_() for k, v in gqa.named_parameters()}

    def padded_gqa_meta_gradient():
        def gqa_loss(p, ids):
            return functional_call(gqa, p, (), dict(input_ids=ids, labels=ids, attention_mask=padded)).loss
        grads = torch.autograd.grad(gqa_loss(gqa_params, support), list(gqa_params.values()), create_graph=True)
        fast = {k: v - 0.1 * gr for (k, v), gr in zip(gqa_params.items(), grads)}
        return torch.autograd.grad(gqa_loss(fast, query), list(gqa_params.values()))

    with sdpa_kernel(SDPBackend.MATH):
        want = padded_gqa_meta_gradient()
    with theria.sdpa_override(strict=True) as routed:
        got = padded_gqa_meta_gradient()
    assert routed.served >= 4 and not routed.fallbacks
    assert close(got, want, 1e-9)


def test_the_package_and_cmake_read_one_version():
    import os
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[2]
    assert re.fullmatch(r"\d+\.\d+\.\d+", theria.__version__)
    cache = root / os.environ.get("THERIA_BUILD_DIR", "build") / "CMakeCache.txt"
    if cache.exists():  # the build configured from this tree says the same version
        assert f"CMAKE_PROJECT_VERSION:STATIC={theria.__version__}" in cache.read_text()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_on_cuda_the_override_serves_a_maml_meta_gradient_with_the_fused_backend(dtype):
    """nn.TransformerEncoderLayer on CUDA (head dim 32, causal) under sdpa_override(backend="fused"): every call runs
    the fused kernels, and the meta-gradient is as close to the float64 one (PyTorch's math backend on the CPU) as
    PyTorch's math backend gets in the same dtype on the GPU: the rest of the model rounds in that dtype too."""
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(64, 2, 128, dropout=0.0, batch_first=True, dtype=torch.float64)
    xs, ys, xq, yq = (torch.randn(4, 33, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
                      for i in range(4))
    mask = nn.Transformer.generate_square_subsequent_mask(33, dtype=torch.float64)

    def meta(model, cast, device):
        params = {k: v.detach().to(device, cast).requires_grad_() for k, v in model.named_parameters()}
        m = lambda p, x: functional_call(model, p, (x.to(device, cast),), dict(src_mask=mask.to(device, cast),  # noqa
                                                                                  is_causal=True))
        loss = (m(params, xs) - ys.to(device, cast)).pow(2).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        fast = {k: v - 0.1 * g for (k, v), g in zip(params.items(), grads)}
        meta_loss = (m(fast, xq) - yq.to(device, cast)).float().pow(2).mean()
        return torch.cat([g.double().cpu().reshape(-1) for g in torch.autograd.grad(meta_loss, list(params.values()))])

    with sdpa_kernel(SDPBackend.MATH):
        want = meta(model, torch.float64, "cpu")
    with theria.sdpa_override(strict=True, backend="fused") as routed:
        got = meta(model, dtype, "cuda")
    with sdpa_kernel(SDPBackend.MATH):
        math = meta(model, dtype, "cuda")
    assert routed.served == 2  # the support and the query forward (backward passes call no SDPA)
    error = lambda x: ((x - want).norm() / want.norm()).item()  # noqa: E731
    assert error(got) <= 2 * error(math) + theria.tolerance(dtype, 2), (error(got), error(math))
