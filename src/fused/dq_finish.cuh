// The dQ side of the tensor-core backward and backward-JVP: each key block adds its share of dQ (or
// of its tangent) into an fp32 buffer with atomics (add_dq_tile), and a last kernel writes
// scale * buffer in the output dtype and layout (launch_dq_finish).
#pragma once

#include "fused/kernel_templates.h"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace theria::kernels::cuda {

// Adds a warp's 16 x kCols accumulator tile (mma C fragments) to rows m0 .. m0 + 15 of the buffer,
// starting at column col0. Each lane's two neighbouring columns go as one 8-byte reduction
// (red.global.add.v2.f32 on sm_90): half the L2 atomic operations of two scalar adds.
template <int kCols, int kHeadDim>
__device__ __forceinline__ void add_dq_tile(float* dq_accum, const float (&acc)[kCols / 8][4], int m0, int col0,
                                            int len_q, int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int qi = m0 + g + 8 * r;
    if (qi >= len_q) continue;
    float* row = dq_accum + static_cast<int64_t>(qi) * kHeadDim + col0 + 2 * t;
#pragma unroll
    for (int dt = 0; dt < kCols / 8; ++dt) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      atomicAdd(reinterpret_cast<float2*>(row + dt * 8), make_float2(acc[dt][2 * r], acc[dt][2 * r + 1]));
#else
      atomicAdd(row + dt * 8, acc[dt][2 * r]);
      atomicAdd(row + dt * 8 + 1, acc[dt][2 * r + 1]);
#endif
    }
  }
}

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
