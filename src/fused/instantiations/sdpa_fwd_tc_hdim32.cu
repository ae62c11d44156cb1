// Tensor-core forward, head dim 32: fp16 and bf16, causal and not.
#include "fused/sdpa_fwd_tc.cuh"

namespace theria::kernels::cuda {
template void launch_sdpa_fwd_tc<__half, 32, false, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__half, 32, true, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__nv_bfloat16, 32, false, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__nv_bfloat16, 32, true, false>(const SdpaFwdParams&, cudaStream_t);
}  // namespace theria::kernels::cuda
