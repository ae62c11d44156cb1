// C++ entry points to the registered ops torch.ops.theria.* (schemas in register_ops.cpp).
// Each call goes through the dispatcher, so autograd, autocast, vmap and fake tensors apply. attn_mask (and
// enable_gqa) come last, as the schemas' optional arguments.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace theria::ops {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using Tensor2 = std::tuple<Tensor, Tensor>;
using Tensor3 = std::tuple<Tensor, Tensor, Tensor>;
using Tensor4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using Tensor5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, std::optional<double> scale,
            c10::string_view backend, const OptTensor& attn_mask = std::nullopt, bool enable_gqa = false);

Tensor2 sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, double scale,
                 c10::string_view backend, const OptTensor& attn_mask = std::nullopt);

// mask_dot: a float attn_mask's tangent. mask_grad: sdpa_bwd also returns the float mask's gradient (dmask, the
// mask's shape) and sdpa_bwd_jvp its tangent; without it that result is an empty tensor.
Tensor3 sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& q_dot, const OptTensor& k_dot,
                 const OptTensor& v_dot, bool is_causal, double scale, c10::string_view backend,
                 const OptTensor& attn_mask = std::nullopt, const OptTensor& mask_dot = std::nullopt);

Tensor4 sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                 const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                 const OptTensor& attn_mask = std::nullopt, bool mask_grad = false);

Tensor5 sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot, const OptTensor& v_dot,
                     const OptTensor& dout_dot, bool is_causal, double scale, c10::string_view backend,
                     const OptTensor& attn_mask = std::nullopt, const OptTensor& mask_dot = std::nullopt,
                     bool mask_grad = false);

}  // namespace theria::ops
