// The fused backend in a build without CUDA: nothing fits, and core/backend.cpp refuses 'fused'
// before any of these could be called.
#include "fused/fused_backend.h"

#include <c10/util/Exception.h>

namespace theria::fused {
namespace {
[[noreturn]] void unavailable() { TORCH_CHECK(false, "theria: this build has no fused CUDA kernels"); }
}  // namespace

bool supports(int64_t, int64_t, int64_t, std::string* why_not) {
  if (why_not != nullptr) *why_not = "this build has no fused CUDA kernels";
  return false;
}
bool uses_tensor_cores(at::ScalarType, int64_t, int64_t, bool) { return false; }
int64_t device_memory_bytes(c10::DeviceIndex) { return 0; }
std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor&, const Tensor&, const Tensor&, bool, double, const OptTensor&) {
  unavailable();
}
std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                            const OptTensor&, const OptTensor&, bool, double, const OptTensor&,
                                            const OptTensor&) {
  unavailable();
}
std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                    const Tensor&, const Tensor&, bool, double, const OptTensor&,
                                                    bool) {
  unavailable();
}
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(const Tensor&, const Tensor&, const Tensor&,
                                                                const Tensor&, const Tensor&, const Tensor&,
                                                                const OptTensor&, const OptTensor&, const OptTensor&,
                                                                const OptTensor&, bool, double, const OptTensor&,
                                                                const OptTensor&, bool) {
  unavailable();
}

}  // namespace theria::fused
