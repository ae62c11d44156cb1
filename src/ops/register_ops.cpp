// Schemas of torch.ops.theria.* and their device kernels (below autograd): check the contract,
// resolve the backend, run it. Autograd kernels: src/autograd/; fake kernels and vmap rules:
// python/theria/_meta.py.
#include "core/backend.h"
#include "core/broadcast.h"
#include "core/contract.h"
#include "explicit/explicit_backend.h"
#include "fused/fused_backend.h"
#include "ops/ops.h"
#include "reference/reference.h"

#include <theria/tolerances.h>

#include <torch/library.h>

namespace theria::ops {
namespace {

// The one switch from a resolved backend to its implementation.
template <typename ReferenceFn, typename ExplicitFn, typename FusedFn>
auto run_backend(const char* op, c10::string_view backend, const Tensor& q, const Tensor& v, const OptTensor& mask,
                 ReferenceFn&& reference_fn, ExplicitFn&& explicit_fn, FusedFn&& fused_fn) {
  switch (core::resolve_backend(std::string_view(backend.data(), backend.size()), q, v, op, core::mask_of(mask))
              .backend) {
    case Backend::Explicit:
      return explicit_fn();
    case Backend::Reference:
      return reference_fn();
    case Backend::Fused:
      return fused_fn();
    default:
      TORCH_CHECK(false, op, ": unresolved backend");
  }
}

Tensor sdpa_kernel(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, std::optional<double> scale,
                   c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa) {
  const auto call = core::broadcast_call(q, k, v, attn_mask, is_causal, scale, enable_gqa, "theria.sdpa");
  return std::get<0>(sdpa_fwd(call.q, call.k, call.v, is_causal, call.scale, backend, call.mask));
}

Tensor2 sdpa_fwd_kernel(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, double scale,
                        c10::string_view backend, const OptTensor& m) {
  constexpr const char* op = "theria.sdpa_fwd";
  core::check_fwd_args(q, k, v, scale, m, op);
  return run_backend(
      op, backend, q, v, m, [&] { return reference::sdpa_fwd(q, k, v, is_causal, scale, m); },
      [&] { return row_kernels::sdpa_fwd(explicit_backend::cpu_kernels(), q, k, v, is_causal, scale, m); },
      [&] { return fused::sdpa_fwd(q, k, v, is_causal, scale, m); });
}

Tensor3 sdpa_jvp_kernel(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& q_dot,
                        const OptTensor& k_dot, const OptTensor& v_dot, bool is_causal, double scale,
                        c10::string_view backend, const OptTensor& m, const OptTensor& m_dot) {
  constexpr const char* op = "theria.sdpa_jvp";
  core::check_jvp_args(q, k, v, q_dot, k_dot, v_dot, scale, m, op);
  core::check_mask_derivatives(m, m_dot, /*mask_grad=*/false, op);
  return run_backend(
      op, backend, q, v, m,
      [&] { return reference::sdpa_jvp(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, m, m_dot); },
      [&] {
        return row_kernels::sdpa_jvp(explicit_backend::cpu_kernels(), q, k, v, q_dot, k_dot, v_dot, is_causal, scale,
                                     m, m_dot);
      },
      [&] { return fused::sdpa_jvp(q, k, v, q_dot, k_dot, v_dot, is_causal, scale, m, m_dot); });
}

Tensor4 sdpa_bwd_kernel(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, bool is_causal, double scale, c10::string_view backend,
                        const OptTensor& m, bool mask_grad) {
  constexpr const char* op = "theria.sdpa_bwd";
  core::check_bwd_args(q, k, v, out, lse, dout, scale, m, op);
  core::check_mask_derivatives(m, std::nullopt, mask_grad, op);
  return run_backend(
      op, backend, q, v, m, [&] { return reference::sdpa_bwd(q, k, v, dout, is_causal, scale, m, mask_grad); },
      [&] {
        return row_kernels::sdpa_bwd(explicit_backend::cpu_kernels(), q, k, v, out, lse, dout, is_causal, scale, m,
                                     mask_grad);
      },
      [&] { return fused::sdpa_bwd(q, k, v, out, lse, dout, is_causal, scale, m, mask_grad); });
}

Tensor5 sdpa_bwd_jvp_kernel(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                            const Tensor& lse, const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot,
                            const OptTensor& v_dot, const OptTensor& dout_dot, bool is_causal, double scale,
                            c10::string_view backend, const OptTensor& m, const OptTensor& m_dot, bool mask_grad) {
  constexpr const char* op = "theria.sdpa_bwd_jvp";
  core::check_bwd_jvp_args(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, scale, m, op);
  core::check_mask_derivatives(m, m_dot, mask_grad, op);
  return run_backend(
      op, backend, q, v, m,
      [&] {
        return reference::sdpa_bwd_jvp(q, k, v, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, m, m_dot,
                                       mask_grad);
      },
      [&] {
        return row_kernels::sdpa_bwd_jvp(explicit_backend::cpu_kernels(), q, k, v, out, lse, dout, q_dot, k_dot,
                                         v_dot, dout_dot, is_causal, scale, m, m_dot, mask_grad);
      },
      [&] {
        return fused::sdpa_bwd_jvp(q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, is_causal, scale, m,
                                   m_dot, mask_grad);
      });
}

std::vector<std::string> select_backend_op(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal,
                                           c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa) {
  SdpaOptions options;
  options.causal(is_causal).backend(parse_backend(std::string_view(backend.data(), backend.size())));
  options.enable_gqa(enable_gqa);
  if (attn_mask.has_value() && attn_mask->defined()) options.attn_mask(*attn_mask);
  const auto choice = select_backend(q, k, v, options);
  return {backend_name(choice.backend), choice.reason};
}

double tolerance_op(c10::ScalarType dtype, int64_t order) {
  TORCH_CHECK(order >= 0 && order <= 3, "theria.tolerance: order must be 0 (forward) to 3, got ", order);
  return tolerance(dtype, static_cast<Derivative>(order)).max_rel_error;
}

// The row of float32 results at a torch.set_float32_matmul_precision setting ("highest", "high", "medium").
double float32_tolerance_op(c10::string_view matmul_precision, int64_t order) {
  TORCH_CHECK(order >= 0 && order <= 3, "theria.tolerance: order must be 0 (forward) to 3, got ", order);
  const auto products = float32_products_named(std::string_view(matmul_precision.data(), matmul_precision.size()));
  return float32_tolerance(products, static_cast<Derivative>(order)).max_rel_error;
}

}  // namespace
}  // namespace theria::ops

TORCH_LIBRARY(theria, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  // attn_mask (and enable_gqa) come last, with defaults, so that positional calls of the first forms still hold.
  m.def("sdpa(Tensor query, Tensor key, Tensor value, bool is_causal=False, float? scale=None, "
        "str backend='auto', Tensor? attn_mask=None, bool enable_gqa=False) -> Tensor",
        tags);
  m.def("sdpa_fwd(Tensor q, Tensor k, Tensor v, bool is_causal, float scale, str backend, Tensor? attn_mask=None) "
        "-> (Tensor out, Tensor lse)",
        tags);
  // A float attn_mask's derivatives: mask_dot is its tangent; with mask_grad, sdpa_bwd returns its gradient dmask
  // (the mask's shape) and sdpa_bwd_jvp that gradient's tangent; without, an empty tensor stands there.
  m.def("sdpa_jvp(Tensor q, Tensor k, Tensor v, Tensor? q_dot, Tensor? k_dot, Tensor? v_dot, bool is_causal, "
        "float scale, str backend, Tensor? attn_mask=None, Tensor? mask_dot=None) "
        "-> (Tensor out, Tensor lse, Tensor out_dot)",
        tags);
  m.def("sdpa_bwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor dout, bool is_causal, "
        "float scale, str backend, Tensor? attn_mask=None, bool mask_grad=False) "
        "-> (Tensor dq, Tensor dk, Tensor dv, Tensor dmask)",
        tags);
  m.def("sdpa_bwd_jvp(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor dout, Tensor? q_dot, "
        "Tensor? k_dot, Tensor? v_dot, Tensor? dout_dot, bool is_causal, float scale, str backend, "
        "Tensor? attn_mask=None, Tensor? mask_dot=None, bool mask_grad=False) "
        "-> (Tensor dq_dot, Tensor dk_dot, Tensor dv_dot, Tensor out_dot, Tensor dmask_dot)",
        tags);
  m.def("select_backend(Tensor query, Tensor key, Tensor value, bool is_causal=False, str backend='auto', "
        "Tensor? attn_mask=None, bool enable_gqa=False) -> str[]",
        &theria::ops::select_backend_op);
  m.def("tolerance(ScalarType dtype, int order) -> float", &theria::ops::tolerance_op);
  m.def("float32_tolerance(str matmul_precision, int order) -> float", &theria::ops::float32_tolerance_op);
}

#define THERIA_REGISTER_DEVICE_KERNELS(m)                      \
  m.impl("sdpa", &theria::ops::sdpa_kernel);                   \
  m.impl("sdpa_fwd", &theria::ops::sdpa_fwd_kernel);           \
  m.impl("sdpa_jvp", &theria::ops::sdpa_jvp_kernel);           \
  m.impl("sdpa_bwd", &theria::ops::sdpa_bwd_kernel);           \
  m.impl("sdpa_bwd_jvp", &theria::ops::sdpa_bwd_jvp_kernel)

TORCH_LIBRARY_IMPL(theria, CPU, m) { THERIA_REGISTER_DEVICE_KERNELS(m); }
TORCH_LIBRARY_IMPL(theria, CUDA, m) { THERIA_REGISTER_DEVICE_KERNELS(m); }
