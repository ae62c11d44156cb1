// Small helpers shared by theria's autograd kernels.
#pragma once

#include "core/contract.h"

#include <ATen/LegacyBatchedTensorImpl.h>
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <initializer_list>
#include <optional>

namespace theria::autograd {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// True when reverse mode must record a node: grad mode on and some input requires grad.
inline bool needs_grad(std::initializer_list<OptTensor> inputs) {
  if (!torch::autograd::GradMode::is_enabled()) return false;
  for (const auto& t : inputs) {
    if (t.has_value() && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

// The level-0 forward-mode tangent of t, or nullopt when it has none (a ZeroTensor counts as none).
inline OptTensor tangent_of(const OptTensor& t) {
  if (!t.has_value() || !t->defined()) return std::nullopt;
  const Tensor& fw = t->_fw_grad(/*level=*/0);
  if (!fw.defined() || fw._is_zerotensor()) return std::nullopt;
  return fw;
}

// True when a tangent is batched by PyTorch's legacy vmap (torch.autograd.functional.jacobian with
// vectorize=True, gradcheck's batched forward grad). It batches tangents only, so the primal must
// not come out of the same op call as the tangent (that call would batch it too).
inline bool legacy_batched_tangent(std::initializer_list<OptTensor> inputs) {
  for (const auto& t : inputs) {
    const auto fw = tangent_of(t);
    if (fw.has_value() && at::isBatchedTensor(*fw)) return true;
  }
  return false;
}

inline bool has_tangent(std::initializer_list<OptTensor> inputs) {
  for (const auto& t : inputs) {
    if (tangent_of(t).has_value()) return true;
  }
  return false;
}

// The primal of a dual tensor, without its level-0 tangent: tangent formulas take primals, so
// that they record reverse-mode history only (as PyTorch's generated forward-AD code does).
inline Tensor primal_of(const Tensor& t) {
  return t.defined() && t._fw_grad(0).defined() ? t._fw_primal(0) : t;
}
inline OptTensor primal_of(const OptTensor& t) {
  return t.has_value() ? OptTensor(primal_of(*t)) : std::nullopt;
}

inline OptTensor defined_or_none(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

// attn_mask where it is differentiated like the operands (a float mask with grad or a tangent), else nullopt.
inline OptTensor differentiable_mask(const OptTensor& mask) {
  return core::mask_is_differentiable(mask) ? mask : std::nullopt;
}

// attn_mask as a node keeps it: a constant, or, where it requires grad, a saved input of the node (its last edge).
struct SavedMask {
  OptTensor constant;
  torch::autograd::SavedVariable saved;
  bool is_input = false;

  // Call before the node's edges are set: is_input says whether the mask is one of them.
  void save(const OptTensor& mask) {
    is_input = needs_grad({differentiable_mask(mask)});
    if (is_input) {
      saved = torch::autograd::SavedVariable(*mask, false);
    } else {
      constant = mask;
    }
  }
  OptTensor unpack() { return is_input ? OptTensor(saved.unpack()) : constant; }
};

}  // namespace theria::autograd
