// SIMT kernels: float and double, with and without tangents, 1/2/4/8 columns per lane; and the
// row-term kernel of the tensor-core backward (16-bit inputs, fp32 sums).
#include "fused/sdpa_simt.cuh"

namespace theria::kernels::cuda {

#define THERIA_INSTANTIATE_SIMT(T, TANGENT, COLS)                                          \
  template void launch_sdpa_fwd_simt<T, TANGENT, COLS>(const SdpaFwdParams&, cudaStream_t); \
  template void launch_sdpa_bwd_simt<T, TANGENT, COLS>(const SdpaBwdParams&, cudaStream_t);
#define THERIA_INSTANTIATE_SIMT_COLS(T, TANGENT) \
  THERIA_INSTANTIATE_SIMT(T, TANGENT, 1)         \
  THERIA_INSTANTIATE_SIMT(T, TANGENT, 2)         \
  THERIA_INSTANTIATE_SIMT(T, TANGENT, 4)         \
  THERIA_INSTANTIATE_SIMT(T, TANGENT, 8)

THERIA_INSTANTIATE_SIMT_COLS(float, false)
THERIA_INSTANTIATE_SIMT_COLS(float, true)
THERIA_INSTANTIATE_SIMT_COLS(double, false)
THERIA_INSTANTIATE_SIMT_COLS(double, true)

template void launch_sdpa_row_terms<__half, float, false>(const SdpaBwdParams&, cudaStream_t);
template void launch_sdpa_row_terms<__nv_bfloat16, float, false>(const SdpaBwdParams&, cudaStream_t);
template void launch_sdpa_row_terms<__half, float, true>(const SdpaBwdParams&, cudaStream_t);
template void launch_sdpa_row_terms<__nv_bfloat16, float, true>(const SdpaBwdParams&, cudaStream_t);

}  // namespace theria::kernels::cuda
