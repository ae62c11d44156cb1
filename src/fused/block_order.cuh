// The order in which a query-major grid's CTAs take their query blocks.
#pragma once

#include <cuda_runtime.h>

namespace theria::kernels::cuda {

// The first query row of this CTA (blockIdx.x counts query blocks). Causal, block i sees i + 1 key blocks, and the
// hardware issues CTAs in blockIdx order: ascending blocks would leave the longest CTAs for the last wave, where
// SMs idle while they finish. So causal grids take their blocks longest first (FlashAttention's order too).
template <bool kCausal, int kBlockM>
__device__ __forceinline__ int query_block_start() {
  const int block = kCausal ? static_cast<int>(gridDim.x - 1 - blockIdx.x) : static_cast<int>(blockIdx.x);
  return block * kBlockM;
}

}  // namespace theria::kernels::cuda
