// Tensor-core backward-JVP (and through it the double backward), head dim 32: fp16 and bf16, causal and
// not, with and without a dout tangent.
#include "fused/sdpa_bwd_jvp_tc.cuh"

namespace theria::kernels::cuda {
#define THERIA_INSTANTIATE(T, CAUSAL, DOUT_DOT) \
  template void launch_sdpa_bwd_jvp_tc<T, 32, CAUSAL, DOUT_DOT>(const SdpaBwdParams&, const BwdWorkspace&, cudaStream_t);
THERIA_INSTANTIATE(__half, false, false)
THERIA_INSTANTIATE(__half, false, true)
THERIA_INSTANTIATE(__half, true, false)
THERIA_INSTANTIATE(__half, true, true)
THERIA_INSTANTIATE(__nv_bfloat16, false, false)
THERIA_INSTANTIATE(__nv_bfloat16, false, true)
THERIA_INSTANTIATE(__nv_bfloat16, true, false)
THERIA_INSTANTIATE(__nv_bfloat16, true, true)
#undef THERIA_INSTANTIATE
}  // namespace theria::kernels::cuda
