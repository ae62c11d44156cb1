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

}  // namespace theria::row_kernels
