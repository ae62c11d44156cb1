// The public C++ API (include/theria/sdpa.h) over the registered ops.
#include <theria/sdpa.h>

#include "core/backend.h"
#include "core/broadcast.h"
#include "core/contract.h"
#include "ops/ops.h"

namespace theria {

at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& options) {
  return ops::sdpa(q, k, v, options.causal_, options.scale_, backend_name(options.backend_), options.attn_mask_,
                   options.enable_gqa_);
}

BackendChoice select_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const SdpaOptions& options) {
  constexpr const char* op = "theria.select_backend";
  const auto call = core::broadcast_call(q, k, v, options.attn_mask_, options.causal_, options.scale_,
                                         options.enable_gqa_, op);
  auto resolved = core::resolve_backend(options.backend_, call.q, call.v, op, core::mask_of(call.mask));
  return {resolved.backend, std::move(resolved.reason)};
}

}  // namespace theria
