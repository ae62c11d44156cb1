// The explicit CPU backend: the row-kernel binding over the CPU kernels (cpu_kernels.h).
#pragma once

#include "explicit/row_kernel_binding.h"

namespace theria::explicit_backend {

const row_kernels::RowKernels& cpu_kernels();

}  // namespace theria::explicit_backend
