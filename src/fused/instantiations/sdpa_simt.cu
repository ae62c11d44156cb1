// SIMT kernels: float and double, with and without tangents, 1/2/4/8 columns per lane.
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

}  // namespace theria::kernels::cuda
