// Tensor-core forward, head dim 96: fp16 and bf16, causal and not.
#include "fused/sdpa_fwd_tc.cuh"

namespace theria::kernels::cuda {
template void launch_sdpa_fwd_tc<__half, 96, false, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__half, 96, true, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__nv_bfloat16, 96, false, false>(const SdpaFwdParams&, cudaStream_t);
template void launch_sdpa_fwd_tc<__nv_bfloat16, 96, true, false>(const SdpaFwdParams&, cudaStream_t);
}  // namespace theria::kernels::cuda
