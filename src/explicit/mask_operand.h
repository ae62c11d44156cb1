// attn_mask as the kernels read it (kernels::MaskView), shared by the row-kernel binding (explicit CPU and
// fused SIMT kernels) and the fused tensor-core binding. The mask keeps its own (broadcast) shape: its view
// over [batch, len_q, len_kv] has zero strides along the broadcast dims, so a key-padding mask (B, 1, 1, S)
// is read where it lies. Only leading dims that cannot collapse into (outer, heads) strides are copied.
#pragma once

#include "kernels/sdpa_params.h"

#include <ATen/core/Tensor.h>

#include <optional>

namespace theria::row_kernels {

struct MaskOperand {
  at::Tensor t;  // what the view points into (the mask, a converted copy, or a laid-out copy)
  kernels::MaskView view;
};

// q: (..., L, E); len_kv: S. A float mask is first converted to `bias_dtype` when given (the scalar kernels
// read the bias in their compute type), at its own shape.
MaskOperand mask_operand(const std::optional<at::Tensor>& mask, const at::Tensor& q, int64_t len_kv,
                         std::optional<at::ScalarType> bias_dtype);

// The buffer the kernels write a float mask's gradient (or its tangent) into, zeroed, and their view of it. Where the
// mask has a pair of its own for every (..., L, S) position, the buffer is of that shape and the kernels store. Where
// the mask is broadcast (a bias shared by the batch, a (1, H, L, S) relative-position bias), several pairs add to one
// element: with `may_accumulate` the buffer takes the mask's own shape and the kernels add with atomics (the
// tensor-core kernels, outside deterministic mode); otherwise (the scalar kernels, deterministic mode, leading dims
// that do not collapse) it is of the full shape, one element per pair, and result() sums it back to the mask's. With
// `may_narrow`, the gradient of a full-size 16-bit mask is written in the mask's dtype (MaskGradView::narrow).
struct MaskGradOperand {
  at::Tensor t;  // undefined where the gradient was not asked for
  kernels::MaskGradView view;
  // The gradient of `mask`, of its shape and dtype; where none was asked for, an empty tensor on q's device (the ops'
  // result in its place).
  at::Tensor result(const std::optional<at::Tensor>& mask, const at::Tensor& q) const;
};
MaskGradOperand mask_grad_operand(const at::Tensor& mask, const at::Tensor& q, int64_t len_kv, at::ScalarType dtype,
                                  bool may_accumulate, bool may_narrow = false);

}  // namespace theria::row_kernels
