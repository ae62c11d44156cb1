#include "explicit/mask_operand.h"

#include "explicit/binding_layout.h"

#include <ATen/ATen.h>

namespace theria::row_kernels {
namespace {

using kernels::MaskKind;

// (outer, heads) strides of the leading dims of an expanded mask, as MatrixView's; false when they do not
// collapse (then the caller lays the mask out contiguously).
bool describe(const at::Tensor& e, kernels::MaskView& v) {
  const int64_t lead = e.dim() - 2;
  v.row_stride = e.stride(-2);
  v.col_stride = e.stride(-1);
  v.heads = 1;
  v.head_stride = v.batch_stride = 0;
  if (lead >= 1) {
    v.heads = e.size(lead - 1);
    v.head_stride = e.stride(lead - 1);
  }
  return outer_stride(e, lead - 1, v.batch_stride);
}

MaskKind kind_of(const at::Tensor& m) {
  if (m.scalar_type() == at::kBool) return MaskKind::kBool;
  switch (m.element_size()) {
    case 2: return MaskKind::kBias16;
    case 4: return MaskKind::kBias32;
    default: return MaskKind::kBias64;
  }
}

}  // namespace

MaskOperand mask_operand(const std::optional<at::Tensor>& mask, const at::Tensor& q, int64_t len_kv,
                         std::optional<at::ScalarType> bias_dtype) {
  MaskOperand o;
  if (!mask.has_value() || !mask->defined()) return o;
  at::Tensor m = *mask;
  if (m.scalar_type() != at::kBool && bias_dtype.has_value() && m.scalar_type() != *bias_dtype) m = m.to(*bias_dtype);
  auto target = q.sizes().vec();
  target.back() = len_kv;
  o.t = m.expand(target);
  if (!describe(o.t, o.view)) {
    o.t = o.t.contiguous();
    describe(o.t, o.view);
  }
  o.view.ptr = o.t.data_ptr();
  o.view.kind = kind_of(o.t);
  return o;
}

}  // namespace theria::row_kernels
