#include "core/contract.h"

#include <ATen/ExpandUtils.h>
#include <c10/util/Exception.h>
#include <c10/util/irange.h>

#include <cmath>
#include <sstream>

namespace theria::core {
namespace {

void check_floating(const at::Tensor& t, const char* name, const char* op) {
  const auto dt = t.scalar_type();
  TORCH_CHECK(dt == at::kHalf || dt == at::kBFloat16 || dt == at::kFloat || dt == at::kDouble,
              op, ": ", name, " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ",
              dt);
}

}  // namespace

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

std::vector<int64_t> SdpaShape::with_tail(int64_t rows, int64_t cols) const {
  std::vector<int64_t> s = leading;
  s.push_back(rows);
  s.push_back(cols);
  return s;
}

std::vector<int64_t> SdpaShape::lse_shape() const {
  std::vector<int64_t> s = leading;
  s.push_back(len_q);
  return s;
}

SdpaShape check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* op) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined(), op, ": query, key and value must be defined tensors");
  TORCH_CHECK(q.dim() >= 2, op, ": query must have shape (..., L, E) with at least 2 dimensions, got a ",
              q.dim(), "-D tensor of shape ", shape_str(q.sizes()));
  TORCH_CHECK(k.dim() == q.dim(), op, ": key must have shape (..., S, E) with the same number of dimensions as query (",
              q.dim(), "), got a ", k.dim(), "-D tensor of shape ", shape_str(k.sizes()));
  TORCH_CHECK(v.dim() == q.dim(), op, ": value must have shape (..., S, Ev) with the same number of dimensions as query (",
              q.dim(), "), got a ", v.dim(), "-D tensor of shape ", shape_str(v.sizes()));
  check_floating(q, "query", op);
  check_floating(k, "key", op);
  check_floating(v, "value", op);
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op,
              ": query, key and value must have one dtype, got query ", q.scalar_type(), ", key ", k.scalar_type(),
              ", value ", v.scalar_type());
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), op,
              ": query, key and value must be on one device, got query on ", q.device(), ", key on ", k.device(),
              ", value on ", v.device());

  SdpaShape shape;
  const int64_t lead = q.dim() - 2;
  for (const auto d : c10::irange(lead)) {
    const bool heads = d == lead - 1;
    if (heads && k.size(d) == v.size(d) && k.size(d) > 0 && k.size(d) != q.size(d) && q.size(d) % k.size(d) == 0) {
      shape.group = q.size(d) / k.size(d);  // grouped-query attention
    } else {
      TORCH_CHECK(k.size(d) == q.size(d) && v.size(d) == q.size(d), op,
                  ": the leading (batch/head) sizes of query, key and value must be equal, except that key and "
                  "value may have a number of heads (dim -3) that divides query's (grouped-query attention); got "
                  "query ", shape_str(q.sizes()), ", key ", shape_str(k.sizes()), ", value ", shape_str(v.sizes()),
                  " (differ at dim ", d, ")");
    }
    shape.leading.push_back(q.size(d));
    shape.batch *= q.size(d);
  }
  if (lead >= 1) shape.heads_q = q.size(-3);
  shape.len_q = q.size(-2);
  shape.len_kv = k.size(-2);
  shape.dim_qk = q.size(-1);
  shape.dim_v = v.size(-1);
  TORCH_CHECK(k.size(-1) == shape.dim_qk, op, ": key must have the feature size E of query (", shape.dim_qk,
              ") in its last dim, got key of shape ", shape_str(k.sizes()));
  TORCH_CHECK(v.size(-2) == shape.len_kv, op, ": value must have the length S of key (", shape.len_kv,
              ") in dim -2, got value of shape ", shape_str(v.sizes()));
  return shape;
}

void check_same_as(const at::Tensor& t, const char* name, const std::vector<int64_t>& shape,
                   const at::Tensor& like, const char* like_name, const char* op) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a defined tensor");
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), op, ": ", name, " must have shape ", shape_str(shape),
              ", got ", shape_str(t.sizes()));
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": ", name, " must have the dtype of ", like_name, " (",
              like.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " must be on the device of ", like_name, " (",
              like.device(), "), got ", t.device());
}

void check_tangent(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& primal,
                   const char* primal_name, const char* op) {
  if (t.has_value() && t->defined()) {
    check_same_as(*t, name, primal.sizes().vec(), primal, primal_name, op);
  }
}

c10::ScalarType stats_dtype(c10::ScalarType input_dtype) {
  return input_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

void check_stats(const at::Tensor& lse, const char* name, const SdpaShape& shape, const at::Tensor& q,
                 const char* op) {
  TORCH_CHECK(lse.defined(), op, ": ", name, " must be a defined tensor");
  TORCH_CHECK(lse.sizes() == at::IntArrayRef(shape.lse_shape()), op, ": ", name, " must have shape (..., L) = ",
              shape_str(shape.lse_shape()), ", got ", shape_str(lse.sizes()));
  TORCH_CHECK(lse.scalar_type() == stats_dtype(q.scalar_type()), op, ": ", name, " must be ",
              stats_dtype(q.scalar_type()), " for ", q.scalar_type(), " inputs, got ", lse.scalar_type());
  TORCH_CHECK(lse.device() == q.device(), op, ": ", name, " must be on the device of query (", q.device(),
              "), got ", lse.device());
}

bool mask_is_differentiable(const std::optional<at::Tensor>& mask) {
  if (!mask.has_value() || !mask->defined() || mask->scalar_type() == at::kBool) return false;
  return mask->requires_grad() || mask->_fw_grad(/*level=*/0).defined();
}

void check_mask(const std::optional<at::Tensor>& mask, const SdpaShape& shape, const at::Tensor& q, bool is_causal,
                const char* op) {
  if (!mask.has_value() || !mask->defined()) return;
  const at::Tensor& m = *mask;
  TORCH_CHECK(!is_causal, op, ": attn_mask must not be set when is_causal=True (PyTorch raises the same); fold the "
              "causal mask into attn_mask instead");
  TORCH_CHECK(m.scalar_type() == at::kBool || m.scalar_type() == q.scalar_type(), op,
              ": attn_mask must be a bool tensor (true = take part) or a float tensor of query's dtype (",
              q.scalar_type(), ", added to the logits), got ", m.scalar_type());
  TORCH_CHECK(m.device() == q.device(), op, ": attn_mask must be on the device of query (", q.device(), "), got ",
              m.device());
  std::vector<int64_t> target = shape.leading;
  target.push_back(shape.len_q);
  target.push_back(shape.len_kv);
  TORCH_CHECK(at::is_expandable_to(m.sizes(), target), op, ": attn_mask must be broadcastable to (..., L, S) = ", shape_str(target),
              ", got shape ", shape_str(m.sizes()));
}

void check_mask_derivatives(const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& mask_dot,
                            bool mask_grad, const char* op) {
  const bool has_dot = mask_dot.has_value() && mask_dot->defined();
  if (!has_dot && !mask_grad) return;
  const bool float_mask = mask.has_value() && mask->defined() && mask->scalar_type() != at::kBool;
  TORCH_CHECK(float_mask, op, ": ", has_dot ? "mask_dot (a mask's tangent)" : "mask_grad (a mask's gradient)",
              " needs a float attn_mask, got ",
              mask.has_value() && mask->defined() ? "a boolean mask (it has no derivative)" : "none");
  if (has_dot) check_same_as(*mask_dot, "mask_dot", mask->sizes().vec(), *mask, "attn_mask", op);
}

double resolve_scale(std::optional<double> scale, int64_t dim_qk, const char* op) {
  if (!scale.has_value()) {
    return dim_qk == 0 ? 1.0 : 1.0 / std::sqrt(static_cast<double>(dim_qk));
  }
  TORCH_CHECK(std::isfinite(*scale), op, ": scale must be a finite number, got ", *scale);
  return *scale;
}

SdpaShape check_fwd_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                         const OptTensor& mask, const char* op) {
  const auto shape = check_qkv(q, k, v, op);
  resolve_scale(scale, shape.dim_qk, op);
  check_mask(mask, shape, q, /*is_causal=*/false, op);
  return shape;
}

SdpaShape check_jvp_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& q_dot,
                         const OptTensor& k_dot, const OptTensor& v_dot, double scale, const OptTensor& mask,
                         const char* op) {
  const auto shape = check_fwd_args(q, k, v, scale, mask, op);
  check_tangent(q_dot, "q_dot", q, "query", op);
  check_tangent(k_dot, "k_dot", k, "key", op);
  check_tangent(v_dot, "v_dot", v, "value", op);
  return shape;
}

SdpaShape check_bwd_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                         const at::Tensor& lse, const at::Tensor& dout, double scale, const OptTensor& mask,
                         const char* op) {
  const auto shape = check_fwd_args(q, k, v, scale, mask, op);
  check_same_as(out, "out", shape.out_shape(), q, "query", op);
  check_same_as(dout, "dout", shape.out_shape(), q, "query", op);
  check_stats(lse, "lse", shape, q, op);
  return shape;
}

SdpaShape check_bwd_jvp_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                             const at::Tensor& lse, const at::Tensor& dout, const OptTensor& q_dot,
                             const OptTensor& k_dot, const OptTensor& v_dot, const OptTensor& dout_dot,
                             double scale, const OptTensor& mask, const char* op) {
  const auto shape = check_bwd_args(q, k, v, out, lse, dout, scale, mask, op);
  check_tangent(q_dot, "q_dot", q, "query", op);
  check_tangent(k_dot, "k_dot", k, "key", op);
  check_tangent(v_dot, "v_dot", v, "value", op);
  check_tangent(dout_dot, "dout_dot", dout, "dout", op);
  return shape;
}

}  // namespace theria::core
