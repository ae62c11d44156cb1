// Autograd kernels of torch.ops.theria.* (registered in register_autograd.cpp).
//
//   sdpa      reverse: SdpaBackward -> sdpa_bwd (explicit);   forward AD: sdpa_jvp (explicit)
//   sdpa_bwd  reverse: SdpaBwdBackward -> sdpa_bwd_jvp (explicit, by the symmetry of second
//             derivatives);                                  forward AD: sdpa_bwd_jvp (explicit)
//   (a float attn_mask that requires grad is one more input of both nodes: its gradient and tangent come out of
//   the same kernels, mask_grad and mask_dot)
//   sdpa_fwd, sdpa_jvp, sdpa_bwd_jvp: when a derivative of them is asked for (third order and
//             beyond), they run as the reference composition, which PyTorch differentiates exactly.
#pragma once

#include "ops/ops.h"

namespace theria::autograd {

using ops::OptTensor;
using ops::Tensor;

Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, std::optional<double> scale,
            c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa);

ops::Tensor4 sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                      const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                      const OptTensor& attn_mask, bool mask_grad);

ops::Tensor2 sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, double scale,
                      c10::string_view backend, const OptTensor& attn_mask);

ops::Tensor3 sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& q_dot,
                      const OptTensor& k_dot, const OptTensor& v_dot, bool is_causal, double scale,
                      c10::string_view backend, const OptTensor& attn_mask, const OptTensor& mask_dot);

ops::Tensor5 sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot,
                          const OptTensor& v_dot, const OptTensor& dout_dot, bool is_causal, double scale,
                          c10::string_view backend, const OptTensor& attn_mask, const OptTensor& mask_dot,
                          bool mask_grad);

}  // namespace theria::autograd
