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

MaskGradOperand mask_grad_operand(const at::Tensor& mask, const at::Tensor& q, int64_t len_kv, at::ScalarType dtype,
                                  bool may_accumulate, bool may_narrow) {
  auto target = q.sizes().vec();
  target.back() = len_kv;
  const bool broadcast = mask.sizes() != at::IntArrayRef(target);
  MaskGradOperand o;
  kernels::MaskView layout;
  if (broadcast && may_accumulate) {
    o.t = at::zeros(mask.sizes(), q.options().dtype(dtype));
    o.view.accumulate = describe(o.t.expand(target), layout);
  }
  if (!o.view.accumulate) {
    o.view.narrow = may_narrow && !broadcast && mask.element_size() == 2;
    o.t = at::zeros(target, q.options().dtype(o.view.narrow ? mask.scalar_type() : dtype));
    describe(o.t, layout);  // contiguous: its leading dims collapse
  }
  o.view.ptr = o.t.data_ptr();
  o.view.batch_stride = layout.batch_stride;
  o.view.head_stride = layout.head_stride;
  o.view.heads = layout.heads;
  o.view.row_stride = layout.row_stride;
  o.view.col_stride = layout.col_stride;
  return o;
}

at::Tensor MaskGradOperand::result(const std::optional<at::Tensor>& mask, const at::Tensor& q) const {
  if (!t.defined()) return at::empty({0}, q.options());
  return (t.sizes() == mask->sizes() ? t : t.sum_to_size(mask->sizes())).to(mask->scalar_type());
}

}  // namespace theria::row_kernels
