#include "ops/ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace theria::ops {
namespace {

template <typename Signature>
c10::TypedOperatorHandle<Signature> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, std::optional<double> scale,
            c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa) {
  static const auto op = handle<decltype(sdpa)>("theria::sdpa");
  return op.call(q, k, v, is_causal, scale, backend, attn_mask, enable_gqa);
}

Tensor2 sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, double scale,
                 c10::string_view backend, const OptTensor& attn_mask) {
  static const auto op = handle<decltype(sdpa_fwd)>("theria::sdpa_fwd");
  return op.call(q, k, v, is_causal, scale, backend, attn_mask);
}

Tensor3 sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& q_dot, const OptTensor& k_dot,
                 const OptTensor& v_dot, bool is_causal, double scale, c10::string_view backend,
                 const OptTensor& attn_mask, const OptTensor& mask_dot) {
  static const auto op = handle<decltype(sdpa_jvp)>("theria::sdpa_jvp");
  return op.call(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, backend, attn_mask, mask_dot);
}

Tensor4 sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                 const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                 const OptTensor& attn_mask, bool mask_grad) {
  static const auto op = handle<decltype(sdpa_bwd)>("theria::sdpa_bwd");
  return op.call(q, k, v, out, lse, dout, is_causal, scale, backend, attn_mask, mask_grad);
}

Tensor5 sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot, const OptTensor& v_dot,
                     const OptTensor& dout_dot, bool is_causal, double scale, c10::string_view backend,
                     const OptTensor& attn_mask, const OptTensor& mask_dot, bool mask_grad) {
  static const auto op = handle<decltype(sdpa_bwd_jvp)>("theria::sdpa_bwd_jvp");
  return op.call(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, backend, attn_mask,
                 mask_dot, mask_grad);
}

}  // namespace theria::ops
