// The last step of the tensor-core backward and backward-JVP: their dQ (or dQ tangent) was summed
// in an fp32 buffer by atomics; write scale * buffer in the output dtype and layout.
#pragma once

#include "fused/kernel_templates.h"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace theria::kernels::cuda {

template <typename T>
__global__ void sdpa_dq_finish_kernel(const SdpaBwdParams p, const MatrixView dst, const BwdWorkspace ws) {
  const int64_t E = p.dim_qk, n = p.batch * p.len_q * E;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = idx / (p.len_q * E), i = (idx / E) % p.len_q, e = idx % E;
    batch_base<T>(dst, b)[i * dst.row_stride + e] = static_cast<T>(ws.dq_accum[idx] * float(p.scale));
  }
}

template <typename T>
void launch_dq_finish(const SdpaBwdParams& p, const MatrixView& dst, const BwdWorkspace& ws, cudaStream_t stream) {
  const int64_t n = p.batch * p.len_q * p.dim_qk;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65536));
  sdpa_dq_finish_kernel<T><<<blocks, 256, 0, stream>>>(p, dst, ws);
}

}  // namespace theria::kernels::cuda
