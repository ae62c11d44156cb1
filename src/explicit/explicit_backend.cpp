#include "explicit/explicit_backend.h"

#include "explicit/cpu_kernels.h"

namespace theria::explicit_backend {

const row_kernels::RowKernels& cpu_kernels() {
  static const row_kernels::RowKernels kernels{
      [](const kernels::SdpaFwdParams& p, at::ScalarType dtype) {
        dtype == at::kDouble ? kernels::cpu::sdpa_fwd<double>(p) : kernels::cpu::sdpa_fwd<float>(p);
      },
      [](const kernels::SdpaBwdParams& p, at::ScalarType dtype) {
        dtype == at::kDouble ? kernels::cpu::sdpa_bwd<double>(p) : kernels::cpu::sdpa_bwd<float>(p);
      },
  };
  return kernels;
}

}  // namespace theria::explicit_backend
