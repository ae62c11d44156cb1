// Autograd kernels of torch.ops.theria.* (registered in register_autograd.cpp).
//
//   sdpa      reverse: SdpaBackward -> sdpa_bwd (explicit);   forward AD: sdpa_jvp (explicit)
//   sdpa_bwd  reverse: SdpaBwdBackward -> sdpa_bwd_jvp (explicit, by the symmetry of second
//             derivatives);                                  forward AD: sdpa_bwd_jvp (explicit)
//   sdpa_fwd, sdpa_jvp, sdpa_bwd_jvp: when a derivative of them is asked for (third order and
//             beyond), they run as the reference composition, which PyTorch differentiates exactly.
#pragma once

#include "ops/ops.h"

namespace theria::autograd {

using ops::OptTensor;
using ops::Tensor;

Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, std::optional<double> scale,
            c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa);

ops::Tensor3 sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                      const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                      const OptTensor& attn_mask);

ops::Tensor2 sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, double scale,
                      c10::string_view backend, const OptTensor& attn_mask);

ops::Tensor3 sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& q_dot,
                      const OptTensor& k_dot, const OptTensor& v_dot, bool is_causal, double scale,
                      c10::string_view backend, const OptTensor& attn_mask);

ops::Tensor4 sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot,
                          const OptTensor& v_dot, const OptTensor& dout_dot, bool is_causal, double scale,
                          c10::string_view backend, const OptTensor& attn_mask);

}  // namespace theria::autograd
