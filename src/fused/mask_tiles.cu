// The tile map of an attn_mask that varies by query (MaskView::tiles): one CTA per kMaskTile x kMaskTile tile of
// one (outer, head) position of the mask, which reads the tile's terms once (through the mask's strides, as the
// attention kernels do) and writes its class. The attention kernels then classify a block from a few bytes.
#include "fused/attn_mask.cuh"
#include "fused/launch.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace theria::kernels::cuda {
namespace {

constexpr int kThreads = 256;  // 8 threads a row of the tile, 4 keys each
static_assert(kThreads * 4 == kMaskTile * kMaskTile, "one term per thread and key of 4");

template <typename T>
__global__ void __launch_bounds__(kThreads) mask_tiles_kernel(const MaskView m, unsigned char* tiles, int len_q,
                                                              int len_kv) {
  const int tile_row = blockIdx.x / m.tile_cols, tile_col = blockIdx.x - tile_row * m.tile_cols;
  const unsigned char* base = static_cast<const unsigned char*>(m.ptr) +
                              (blockIdx.z * m.batch_stride + blockIdx.y * m.head_stride) * mask_element_bytes(m);
  const int row = tile_row * kMaskTile + threadIdx.x / 8, col0 = tile_col * kMaskTile + threadIdx.x % 8 * 4;
  bool visible = false, plain = true;
  if (row < len_q) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      if (col0 + c < len_kv) {
        const float term = mask_term<T>(m, base, 1.f, row, col0 + c);
        visible |= term != -INFINITY;
        plain &= term == 0.f;
      }
    }
  }
  visible = __syncthreads_or(visible);
  plain = __syncthreads_and(plain);
  if (threadIdx.x == 0) {
    tiles[blockIdx.z * m.tiles_batch_stride + blockIdx.y * m.tiles_head_stride + blockIdx.x] =
        !visible ? kTileHidden : plain ? kTilePlain : kTileTerms;
  }
}

}  // namespace

void sdpa_mask_tiles(Dtype dtype, const MaskView& mask, unsigned char* tiles, int64_t outer, int64_t heads,
                     int64_t len_q, int64_t len_kv, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(mask.tile_rows * mask.tile_cols), static_cast<unsigned>(heads),
                  static_cast<unsigned>(outer));
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  const int q = static_cast<int>(len_q), kv = static_cast<int>(len_kv);
  // The kernel's 16-bit type matters only for a 16-bit bias (stored in the problem's dtype).
  switch (dtype) {
    case Dtype::kFloat16: mask_tiles_kernel<__half><<<grid, kThreads, 0, stream>>>(mask, tiles, q, kv); break;
    case Dtype::kBFloat16: mask_tiles_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(mask, tiles, q, kv); break;
    default: mask_tiles_kernel<float><<<grid, kThreads, 0, stream>>>(mask, tiles, q, kv); break;
  }
}

}  // namespace theria::kernels::cuda
