// Autograd kernel of theria::sdpa. Reverse mode records one SdpaBackward node whose backward is
// the explicit sdpa_bwd op (itself differentiable, see sdpa_bwd_autograd.cpp); forward mode computes
// the output tangent with the explicit sdpa_jvp op. The reference backend is left to PyTorch. A float attn_mask
// that requires grad is one more input of the node: sdpa_bwd writes its gradient (mask_grad), and a mask's tangent
// goes to sdpa_jvp (mask_dot). A boolean mask, or a float one without grad or tangent, rides along as a constant.
#include "autograd/autograd_util.h"
#include "autograd/kernels.h"
#include "core/backend.h"
#include "core/broadcast.h"
#include "core/contract.h"
#include "reference/reference.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>

namespace theria::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

struct SdpaBackward final : torch::autograd::Node {
  std::string name() const override { return "theria::SdpaBackward"; }

  variable_list apply(variable_list&& grads) override {
    const Tensor& dout = grads[0];
    if (!dout.defined()) return variable_list(num_outputs());
    const bool mask_grad = mask_.is_input && should_compute_output(3);
    auto [dq, dk, dv, dmask] = ops::sdpa_bwd(q_.unpack(), k_.unpack(), v_.unpack(), out_.unpack(), lse_.unpack(),
                                             dout, causal_, scale_, backend_, mask_.unpack(), mask_grad);
    if (!mask_.is_input) return {dq, dk, dv};
    return {dq, dk, dv, mask_grad ? dmask : Tensor()};
  }

  void release_variables() override {
    for (auto* saved : {&q_, &k_, &v_, &out_, &lse_, &mask_.saved}) saved->reset_data();
  }

  SavedVariable q_, k_, v_, out_, lse_;
  SavedMask mask_;  // a float mask that requires grad is the node's fourth input
  bool causal_ = false;
  double scale_ = 1.0;
  std::string backend_;
};

}  // namespace

Tensor sdpa(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, bool is_causal, std::optional<double> scale,
            c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa) {
  constexpr const char* op = "theria.sdpa";
  const auto call = core::broadcast_call(q_in, k_in, v_in, attn_mask, is_causal, scale, enable_gqa, op);
  const Tensor &q = call.q, &k = call.k, &v = call.v;
  const OptTensor& mask = call.mask;
  const double s = call.scale;
  const auto resolved =
      core::resolve_backend(std::string_view(backend.data(), backend.size()), q, v, op, core::mask_of(mask));
  if (resolved.backend == Backend::Reference) {
    return reference::sdpa_math(q, k, v, is_causal, s, mask);
  }
  const std::string name = backend_name(resolved.backend);
  // A float mask with grad or a tangent is differentiated like q, k, v.
  const OptTensor diff_mask = differentiable_mask(mask);
  const bool grad = needs_grad({q, k, v, diff_mask});
  const bool forward_ad = has_tangent({q, k, v, diff_mask});
  const OptTensor mask_dot = tangent_of(diff_mask);

  // One forward pass in every mode. Reverse mode alone: sdpa_fwd. Forward mode alone: sdpa_jvp below
  // autograd gives out and its tangent together. Both: sdpa_jvp above autograd, so that out_dot records
  // its own reverse-mode history (a loss of the JVP is differentiable); out takes that call's values,
  // detached, and gets the explicit SdpaBackward node below.
  Tensor out, lse, out_dot;
  const bool legacy_batched = forward_ad && legacy_batched_tangent({q, k, v, diff_mask});
  if (forward_ad && grad && !legacy_batched) {
    std::tie(out, lse, out_dot) = ops::sdpa_jvp(primal_of(q), primal_of(k), primal_of(v), tangent_of(q), tangent_of(k),
                                                tangent_of(v), is_causal, s, name, primal_of(mask), mask_dot);
    out = out.detach();
    lse = lse.detach();
  } else {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    if (forward_ad && !legacy_batched) {
      std::tie(out, lse, out_dot) =
          ops::sdpa_jvp(q, k, v, tangent_of(q), tangent_of(k), tangent_of(v), is_causal, s, name, mask, mask_dot);
    } else {
      std::tie(out, lse) = ops::sdpa_fwd(q, k, v, is_causal, s, name, mask);
    }
  }

  if (grad) {
    auto node = std::shared_ptr<SdpaBackward>(new SdpaBackward(), torch::autograd::deleteNode);
    node->mask_.save(mask);
    node->set_next_edges(node->mask_.is_input ? torch::autograd::collect_next_edges(q, k, v, *mask)
                                              : torch::autograd::collect_next_edges(q, k, v));
    node->q_ = SavedVariable(q, false);
    node->k_ = SavedVariable(k, false);
    node->v_ = SavedVariable(v, false);
    // out and lse are saved as plain statistics: sdpa_bwd's derivative accounts for their
    // dependence on (q, k, v) analytically, so they must not carry history of their own.
    node->out_ = SavedVariable(out.detach(), false);
    node->lse_ = SavedVariable(lse, false);
    node->causal_ = is_causal;
    node->scale_ = s;
    node->backend_ = name;
    torch::autograd::set_history(out, node);
  }

  if (forward_ad) {
    if (!out_dot.defined()) {
      out_dot = std::get<2>(ops::sdpa_jvp(primal_of(q), primal_of(k), primal_of(v), tangent_of(q), tangent_of(k),
                                          tangent_of(v), is_causal, s, name, primal_of(mask), mask_dot));
    }
    out._set_fw_grad(out_dot, /*level=*/0, /*is_inplace_op=*/false);
  }
  return out;
}

}  // namespace theria::autograd
