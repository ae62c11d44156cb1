// theria public C++ API: scaled-dot-product attention whose derivatives of every order are explicit.
//
//   #include <theria/sdpa.h>
//   at::Tensor out = theria::sdpa(q, k, v, theria::SdpaOptions().causal(true));
//
// q: (..., L, E), k: (..., S, E), v: (..., S, Ev) with leading (batch, head) sizes that broadcast; with
// enable_gqa, key and value may have fewer heads (dim -3) than query, a divisor of its number. attn_mask: a
// bool (true = take part) or float (added to the logits, query's dtype) tensor broadcastable to (..., L, S).
// The result (..., L, Ev) equals F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=..., scale=...,
// enable_gqa=...) and is differentiable at any order (reverse and forward mode) through theria's autograd
// layer, a float mask that requires grad included (the kernels write its gradient and take its tangent).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <string_view>

namespace theria {

enum class Backend {
  Auto,       // the fastest backend that can serve the request (see select_backend)
  Reference,  // plain ATen composition, differentiated by PyTorch itself: the oracle
  Explicit,   // hand-derived CPU kernels (tiled online softmax), CPU tensors only
  Fused,      // fused CUDA kernels, CUDA tensors only
};

// Parses "auto", "reference", "explicit" or "fused"; anything else is an error naming the choices.
Backend parse_backend(std::string_view name);
const char* backend_name(Backend backend);

struct SdpaOptions {
  std::optional<double> scale_;  // default 1/sqrt(E)
  bool causal_ = false;          // top-left aligned, as F.scaled_dot_product_attention(is_causal=True)
  Backend backend_ = Backend::Auto;
  std::optional<at::Tensor> attn_mask_;  // not with causal_ (PyTorch raises too)
  bool enable_gqa_ = false;

  SdpaOptions& scale(double value) { scale_ = value; return *this; }
  SdpaOptions& causal(bool value) { causal_ = value; return *this; }
  SdpaOptions& backend(Backend value) { backend_ = value; return *this; }
  SdpaOptions& attn_mask(at::Tensor value) { attn_mask_ = std::move(value); return *this; }
  SdpaOptions& enable_gqa(bool value) { enable_gqa_ = value; return *this; }
};

at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                const SdpaOptions& options = {});

// Which concrete backend `options.backend_` resolves to for these inputs, and why.
// Throws, like sdpa itself, when the requested backend cannot serve the inputs.
struct BackendChoice {
  Backend backend;
  std::string reason;
};
BackendChoice select_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const SdpaOptions& options = {});

// True when this build carries fused CUDA kernels.
bool fused_kernels_built();

}  // namespace theria
