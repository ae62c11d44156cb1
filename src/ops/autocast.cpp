// Autocast for theria::sdpa: like F.scaled_dot_product_attention it is on the lower-precision
// list, so under autocast query/key/value are cast to the autocast dtype of their device.
#include "ops/ops.h"

#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace theria::ops {
namespace {

template <c10::DeviceType kDevice, c10::DispatchKey kAutocastKey>
Tensor sdpa_autocast(const Tensor& q, const Tensor& k, const Tensor& v, bool is_causal, std::optional<double> scale,
                     c10::string_view backend, const OptTensor& attn_mask, bool enable_gqa) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(kAutocastKey);
  const auto dtype = at::autocast::get_autocast_dtype(kDevice);
  // A float mask follows the operands (F.scaled_dot_product_attention casts it the same way); a bool one stays.
  OptTensor mask = attn_mask;
  if (mask.has_value() && mask->defined() && mask->is_floating_point()) {
    mask = at::autocast::cached_cast(dtype, *mask, kDevice);
  }
  return sdpa(at::autocast::cached_cast(dtype, q, kDevice), at::autocast::cached_cast(dtype, k, kDevice),
              at::autocast::cached_cast(dtype, v, kDevice), is_causal, scale, backend, mask, enable_gqa);
}

}  // namespace
}  // namespace theria::ops

TORCH_LIBRARY_IMPL(theria, AutocastCUDA, m) {
  m.impl("sdpa", &theria::ops::sdpa_autocast<c10::DeviceType::CUDA, c10::DispatchKey::AutocastCUDA>);
}

TORCH_LIBRARY_IMPL(theria, AutocastCPU, m) {
  m.impl("sdpa", &theria::ops::sdpa_autocast<c10::DeviceType::CPU, c10::DispatchKey::AutocastCPU>);
}
