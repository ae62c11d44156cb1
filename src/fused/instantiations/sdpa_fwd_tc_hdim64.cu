// Tensor-core forward, head dim 64: fp16 and bf16, causal and not.
#include "fused/sdpa_fwd_tc.cuh"

namespace theria::kernels::cuda {
template void launch_sdpa_fwd_tc<__half, 64, false, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__half, 64, true, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__nv_bfloat16, 64, false, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__nv_bfloat16, 64, true, false>(const SdpaFwdParams&, cudaStream_t);
}  // namespace theria::kernels::cuda
