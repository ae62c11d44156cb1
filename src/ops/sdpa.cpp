// The public C++ API (include/theria/sdpa.h) over the registered ops.
#include <theria/sdpa.h>

#include "core/backend.h"
#include "core/contract.h"
#include "ops/ops.h"

namespace theria {

at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& options) {
  return ops::sdpa(q, k, v, options.causal_, options.scale_, backend_name(options.backend_));
}

BackendChoice select_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const SdpaOptions& options) {
  core::check_qkv(q, k, v, "theria.select_backend");
  auto resolved = core::resolve_backend(options.backend_, q, v, "theria.select_backend");
  return {resolved.backend, std::move(resolved.reason)};
}

}  // namespace theria
