// Autograd kernel of theria::sdpa_bwd, g(q, k, v, dout) = (dq, dk, dv) = J_f(q, k, v)^T dout.
//
// Reverse mode (double backward): for cotangents u = (u_q, u_k, u_v) of (dq, dk, dv),
//   d<u, g>/d(q, k, v) = the tangent of g along (u, dout_dot = 0)     (the Hessian of <dout, f> is symmetric)
//   d<u, g>/d dout     = J_f u, the output tangent of the forward along u,
// so one explicit sdpa_bwd_jvp call gives all four gradients (docs/derivatives.md, section DB).
// Forward mode (forward-over-reverse): the tangent of g is sdpa_bwd_jvp along (q_dot, k_dot, v_dot, dout_dot).
#include "autograd/autograd_util.h"
#include "autograd/kernels.h"
#include "core/backend.h"
#include "core/contract.h"
#include "reference/reference.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>

namespace theria::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

struct SdpaBwdBackward final : torch::autograd::Node {
  std::string name() const override { return "theria::SdpaBwdBackward"; }

  variable_list apply(variable_list&& grads) override {
    if (!grads[0].defined() && !grads[1].defined() && !grads[2].defined()) {
      return {Tensor(), Tensor(), Tensor(), Tensor()};
    }
    auto [gq, gk, gv, gdout] = ops::sdpa_bwd_jvp(
        q_.unpack(), k_.unpack(), v_.unpack(), out_.unpack(), lse_.unpack(), dout_.unpack(),
        defined_or_none(grads[0]), defined_or_none(grads[1]), defined_or_none(grads[2]), std::nullopt, causal_,
        scale_, backend_, mask_);
    return {gq, gk, gv, gdout};
  }

  void release_variables() override {
    for (auto* saved : {&q_, &k_, &v_, &out_, &lse_, &dout_}) saved->reset_data();
  }

  SavedVariable q_, k_, v_, out_, lse_, dout_;
  OptTensor mask_;  // a constant (no grad)
  bool causal_ = false;
  double scale_ = 1.0;
  std::string backend_;
};

}  // namespace

ops::Tensor3 sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                      const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                      const OptTensor& mask) {
  constexpr const char* op = "theria.sdpa_bwd";
  core::check_bwd_args(q, k, v, out, lse, dout, scale, mask, op);
  const auto resolved =
      core::resolve_backend(std::string_view(backend.data(), backend.size()), q, v, op, core::mask_of(mask));
  if (resolved.backend == Backend::Reference) {
    return reference::sdpa_bwd(q, k, v, dout, is_causal, scale, mask);
  }
  const std::string name = backend_name(resolved.backend);
  const bool grad = needs_grad({q, k, v, dout});
  const bool forward_ad = has_tangent({q, k, v, dout});

  Tensor dq, dk, dv;
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    std::tie(dq, dk, dv) = ops::sdpa_bwd(q, k, v, out, lse, dout, is_causal, scale, name, mask);
  }

  if (grad) {
    auto node = std::shared_ptr<SdpaBwdBackward>(new SdpaBwdBackward(), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(q, k, v, dout));
    node->q_ = SavedVariable(q, false);
    node->k_ = SavedVariable(k, false);
    node->v_ = SavedVariable(v, false);
    node->out_ = SavedVariable(out.detach(), false);
    node->lse_ = SavedVariable(lse.detach(), false);
    node->dout_ = SavedVariable(dout, false);
    node->mask_ = mask;
    node->causal_ = is_causal;
    node->scale_ = scale;
    node->backend_ = name;
    torch::autograd::set_history({dq, dk, dv}, node);
  }

  if (forward_ad) {
    auto [dq_dot, dk_dot, dv_dot, out_dot] = ops::sdpa_bwd_jvp(
        primal_of(q), primal_of(k), primal_of(v), primal_of(out).detach(), lse.detach(), primal_of(dout),
        tangent_of(q), tangent_of(k), tangent_of(v), tangent_of(dout), is_causal, scale, name, mask);
    dq._set_fw_grad(dq_dot, 0, false);
    dk._set_fw_grad(dk_dot, 0, false);
    dv._set_fw_grad(dv_dot, 0, false);
  }
  return {dq, dk, dv};
}

}  // namespace theria::autograd
