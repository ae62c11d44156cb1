// The reference backend: plain ATen compositions that materialise the L x S matrices.
// Every function here is differentiable at any order by PyTorch itself, so it serves as the
// oracle in tests and as the exact path for derivatives above second order.
// Formulas and symbols: docs/derivatives.md. Absent tangents are zeros. `mask` is attn_mask (bool: true = take
// part; float: added to the logits), broadcast as PyTorch does; grouped-query key/value heads are repeated as
// PyTorch's math SDPA repeats them (repeat_interleave), and their gradients summed back over each group.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace theria::reference {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// scale * q k^T plus the mask's term, with keys hidden by the causal or boolean mask set to -inf (k with q's heads).
Tensor logits(const Tensor& q, const Tensor& k, bool causal, double scale, const OptTensor& mask = std::nullopt);

// The oracle: safe_softmax(logits) @ v, exactly what F.scaled_dot_product_attention's math backend does (a row
// with every logit -inf gives zeros). Differentiable by PyTorch in every argument, the mask included.
Tensor sdpa_math(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                 const OptTensor& mask = std::nullopt);

// (out, lse)
std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    const OptTensor& mask = std::nullopt);

// (out, lse, out_dot); mask_dot: a float mask's tangent (absent: zero).
std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale,
                                            const OptTensor& mask = std::nullopt,
                                            const OptTensor& mask_dot = std::nullopt);

// (dq, dk, dv, dmask) for the cotangent dout; dmask, a float mask's gradient (dS summed to the mask's shape), only
// with mask_grad (else an empty tensor). P is recomputed from q and k, so the result stays a differentiable function
// of (q, k, v, dout, mask).
std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v,
                                                    const Tensor& dout, bool causal, double scale,
                                                    const OptTensor& mask = std::nullopt, bool mask_grad = false);

// (dq_dot, dk_dot, dv_dot, out_dot, dmask_dot): tangents of the backward along (q_dot, k_dot, v_dot, dout_dot,
// mask_dot); dmask_dot only with mask_grad (else an empty tensor).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout, const OptTensor& q_dot,
    const OptTensor& k_dot, const OptTensor& v_dot, const OptTensor& dout_dot, bool causal, double scale,
    const OptTensor& mask = std::nullopt, const OptTensor& mask_dot = std::nullopt, bool mask_grad = false);

}  // namespace theria::reference
