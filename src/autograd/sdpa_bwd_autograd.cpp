// Autograd kernel of theria::sdpa_bwd, g(q, k, v, dout[, b]) = (dq, dk, dv[, db]) = J_f(q, k, v[, b])^T dout, where b
// is a float attn_mask that requires grad (db its gradient, returned with mask_grad).
//
// Reverse mode (double backward): for cotangents u = (u_q, u_k, u_v[, u_b]) of (dq, dk, dv[, db]),
//   d<u, g>/d(q, k, v, b) = the tangent of g along (u, dout_dot = 0)     (the Hessian of <dout, f> is symmetric)
//   d<u, g>/d dout        = J_f u, the output tangent of the forward along u,
// so one explicit sdpa_bwd_jvp call gives all the gradients (docs/derivatives.md, sections DB and M).
// Forward mode (forward-over-reverse): the tangent of g is sdpa_bwd_jvp along (q_dot, k_dot, v_dot, dout_dot, b_dot).
#include "autograd/autograd_util.h"
#include "autograd/kernels.h"
#include "core/backend.h"
#include "core/contract.h"
#include "reference/reference.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <algorithm>

namespace theria::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

struct SdpaBwdBackward final : torch::autograd::Node {
  std::string name() const override { return "theria::SdpaBwdBackward"; }

  // grads: the cotangents of (dq, dk, dv[, dmask]); the result: the gradients of (q, k, v, dout[, mask]).
  variable_list apply(variable_list&& grads) override {
    const bool any = std::any_of(grads.begin(), grads.end(), [](const Tensor& g) { return g.defined(); });
    if (!any) return variable_list(num_outputs());
    const OptTensor mask_dot = dmask_is_output_ ? defined_or_none(grads[3]) : std::nullopt;
    const bool mask_grad = mask_.is_input && should_compute_output(4);
    auto [gq, gk, gv, gdout, gmask] = ops::sdpa_bwd_jvp(
        q_.unpack(), k_.unpack(), v_.unpack(), out_.unpack(), lse_.unpack(), dout_.unpack(),
        defined_or_none(grads[0]), defined_or_none(grads[1]), defined_or_none(grads[2]), std::nullopt, causal_,
        scale_, backend_, mask_.unpack(), mask_dot, mask_grad);
    if (!mask_.is_input) return {gq, gk, gv, gdout};
    return {gq, gk, gv, gdout, mask_grad ? gmask : Tensor()};
  }

  void release_variables() override {
    for (auto* saved : {&q_, &k_, &v_, &out_, &lse_, &dout_, &mask_.saved}) saved->reset_data();
  }

  SavedVariable q_, k_, v_, out_, lse_, dout_;
  SavedMask mask_;  // a float mask that requires grad is the node's fifth input
  bool dmask_is_output_ = false;  // sdpa_bwd returned the mask's gradient (mask_grad), the node's fourth output
  bool causal_ = false;
  double scale_ = 1.0;
  std::string backend_;
};

}  // namespace

ops::Tensor4 sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                      const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                      const OptTensor& mask, bool mask_grad) {
  constexpr const char* op = "theria.sdpa_bwd";
  core::check_bwd_args(q, k, v, out, lse, dout, scale, mask, op);
  core::check_mask_derivatives(mask, std::nullopt, mask_grad, op);
  const auto resolved =
      core::resolve_backend(std::string_view(backend.data(), backend.size()), q, v, op, core::mask_of(mask));
  if (resolved.backend == Backend::Reference) {
    return reference::sdpa_bwd(q, k, v, dout, is_causal, scale, mask, mask_grad);
  }
  const std::string name = backend_name(resolved.backend);
  const OptTensor diff_mask = differentiable_mask(mask);
  const bool grad = needs_grad({q, k, v, dout, diff_mask});
  const bool forward_ad = has_tangent({q, k, v, dout, diff_mask});

  Tensor dq, dk, dv, dmask;
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    std::tie(dq, dk, dv, dmask) = ops::sdpa_bwd(q, k, v, out, lse, dout, is_causal, scale, name, mask, mask_grad);
  }

  if (grad) {
    auto node = std::shared_ptr<SdpaBwdBackward>(new SdpaBwdBackward(), torch::autograd::deleteNode);
    node->mask_.save(mask);
    node->dmask_is_output_ = mask_grad;
    node->set_next_edges(node->mask_.is_input ? torch::autograd::collect_next_edges(q, k, v, dout, *mask)
                                              : torch::autograd::collect_next_edges(q, k, v, dout));
    node->q_ = SavedVariable(q, false);
    node->k_ = SavedVariable(k, false);
    node->v_ = SavedVariable(v, false);
    node->out_ = SavedVariable(out.detach(), false);
    node->lse_ = SavedVariable(lse.detach(), false);
    node->dout_ = SavedVariable(dout, false);
    node->causal_ = is_causal;
    node->scale_ = scale;
    node->backend_ = name;
    if (mask_grad) {
      torch::autograd::set_history({dq, dk, dv, dmask}, node);
    } else {
      torch::autograd::set_history({dq, dk, dv}, node);
    }
  }

  if (forward_ad) {
    auto [dq_dot, dk_dot, dv_dot, out_dot, dmask_dot] = ops::sdpa_bwd_jvp(
        primal_of(q), primal_of(k), primal_of(v), primal_of(out).detach(), lse.detach(), primal_of(dout),
        tangent_of(q), tangent_of(k), tangent_of(v), tangent_of(dout), is_causal, scale, name, primal_of(mask),
        tangent_of(diff_mask), mask_grad);
    dq._set_fw_grad(dq_dot, 0, false);
    dk._set_fw_grad(dk_dot, 0, false);
    dv._set_fw_grad(dv_dot, 0, false);
    if (mask_grad) dmask._set_fw_grad(dmask_dot, 0, false);
  }
  return {dq, dk, dv, dmask};
}

}  // namespace theria::autograd
