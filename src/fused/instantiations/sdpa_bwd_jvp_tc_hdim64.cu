// Tensor-core backward-JVP (and through it the double backward), head dim 64: fp16 and bf16.
#include "fused/sdpa_bwd_jvp_tc.cuh"

namespace theria::kernels::cuda {
template void launch_sdpa_bwd_jvp_tc<__half, 64, false>(const SdpaBwdParams&, const BwdWorkspace&, cudaStream_t);
template void launch_sdpa_bwd_jvp_tc<__half, 64, true>(const SdpaBwdParams&, const BwdWorkspace&, cudaStream_t);
template void launch_sdpa_bwd_jvp_tc<__nv_bfloat16, 64, false>(const SdpaBwdParams&, const BwdWorkspace&, cudaStream_t);
template void launch_sdpa_bwd_jvp_tc<__nv_bfloat16, 64, true>(const SdpaBwdParams&, const BwdWorkspace&, cudaStream_t);
}  // namespace theria::kernels::cuda
