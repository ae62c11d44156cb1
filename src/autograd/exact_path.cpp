// Autograd kernels of the primitives sdpa_fwd, sdpa_jvp and sdpa_bwd_jvp. Without a derivative
// request they run the chosen backend below autograd. When one is requested (a third-order
// derivative, or a tangent of a tangent, of the operands or of a float mask) they run as the reference
// composition instead, which
// PyTorch differentiates exactly at any order: the slower exact path, never a wrong number.
#include "autograd/autograd_util.h"
#include "autograd/kernels.h"
#include "core/backend.h"
#include "core/contract.h"
#include "reference/reference.h"

#include <ATen/core/LegacyTypeDispatch.h>

namespace theria::autograd {
namespace {

// Says which path runs; the caller has checked the arguments, so both paths refuse the same inputs.
bool use_exact_path(const Tensor& q, const Tensor& v, const OptTensor& mask, c10::string_view backend, const char* op,
                    std::initializer_list<OptTensor> differentiable) {
  const auto resolved =
      core::resolve_backend(std::string_view(backend.data(), backend.size()), q, v, op, core::mask_of(mask));
  return resolved.backend == Backend::Reference || needs_grad(differentiable) || has_tangent(differentiable);
}

}  // namespace

ops::Tensor2 sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, double scale,
                      c10::string_view backend, const OptTensor& mask) {
  constexpr const char* op = "theria.sdpa_fwd";
  core::check_fwd_args(q, k, v, scale, mask, op);
  if (use_exact_path(q, v, mask, backend, op, {q, k, v, differentiable_mask(mask)})) {
    return reference::sdpa_fwd(q, k, v, is_causal, scale, mask);
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return ops::sdpa_fwd(q, k, v, is_causal, scale, backend, mask);
}

ops::Tensor3 sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& q_dot,
                      const OptTensor& k_dot, const OptTensor& v_dot, bool is_causal, double scale,
                      c10::string_view backend, const OptTensor& mask, const OptTensor& mask_dot) {
  constexpr const char* op = "theria.sdpa_jvp";
  core::check_jvp_args(q, k, v, q_dot, k_dot, v_dot, scale, mask, op);
  core::check_mask_derivatives(mask, mask_dot, /*mask_grad=*/false, op);
  if (use_exact_path(q, v, mask, backend, op, {q, k, v, q_dot, k_dot, v_dot, differentiable_mask(mask), mask_dot})) {
    return reference::sdpa_jvp(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, mask, mask_dot);
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return ops::sdpa_jvp(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, backend, mask, mask_dot);
}

ops::Tensor5 sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot,
                          const OptTensor& v_dot, const OptTensor& dout_dot, bool is_causal, double scale,
                          c10::string_view backend, const OptTensor& mask, const OptTensor& mask_dot,
                          bool mask_grad) {
  constexpr const char* op = "theria.sdpa_bwd_jvp";
  core::check_bwd_jvp_args(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, scale, mask, op);
  core::check_mask_derivatives(mask, mask_dot, mask_grad, op);
  if (use_exact_path(q, v, mask, backend, op,
                     {q, k, v, dout, q_dot, k_dot, v_dot, dout_dot, differentiable_mask(mask), mask_dot})) {
    return reference::sdpa_bwd_jvp(q, k, v, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, mask, mask_dot,
                                   mask_grad);
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return ops::sdpa_bwd_jvp(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, backend, mask,
                           mask_dot, mask_grad);
}

}  // namespace theria::autograd
