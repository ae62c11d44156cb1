// The tile map of an attn_mask that varies by query (MaskView::tiles): one warp per kMaskTile x kMaskTile tile of
// one (outer, head) position of the mask, which reads the tile's terms once (through the mask's strides, as the
// attention kernels do) and writes its class. The attention kernels then classify a block from a few bytes.
#include "fused/attn_mask.cuh"
#include "fused/launch.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace theria::kernels::cuda {
namespace {

// One element of a mask of element type E as a raw-logit term (mask_term's values, as the map reads them).
template <typename E>
__device__ __forceinline__ float term_of(E x, float inv_scale) {
  if constexpr (std::is_same_v<E, bool>) {
    return x ? 0.f : -INFINITY;
  } else {
    return static_cast<float>(x) * inv_scale;
  }
}

// One warp per tile, eight tiles of a row of tiles per CTA: a lane reads 4 keys of a row, a warp 4 rows of the tile
// at a time, and the class is two warp votes. (One CTA of 256 threads per tile, voting through barriers, ran at an eighth
// of the memory's bandwidth: 0.23 ms for a (1, 16, 2048, 2048) bias, docs/performance.md.)
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

template <typename E>
__global__ void __launch_bounds__(kThreads) mask_tiles_kernel(const MaskView m, unsigned char* tiles, int len_q,
                                                              int len_kv) {
  const int tiles_across = (m.tile_cols + kWarps - 1) / kWarps;
  const int tile_row = blockIdx.x / tiles_across;
  const int tile_col = (blockIdx.x - tile_row * tiles_across) * kWarps + threadIdx.x / 32;
  if (tile_col >= m.tile_cols) return;
  const E* base = reinterpret_cast<const E*>(static_cast<const unsigned char*>(m.ptr) +
                                             (blockIdx.z * m.batch_stride + blockIdx.y * m.head_stride) *
                                                 mask_element_bytes(m));
  const int lane = threadIdx.x % 32;
  const int col0 = tile_col * kMaskTile + lane % 8 * 4;
  bool visible = false, plain = true;
#pragma unroll
  for (int i = 0; i < kMaskTile / 4; ++i) {
    const int row = tile_row * kMaskTile + 4 * i + lane / 8;
    if (row >= len_q) break;
    const E* x = base + static_cast<int64_t>(row) * m.row_stride;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      if (col0 + c < len_kv) {
        const float term = term_of(x[static_cast<int64_t>(col0 + c) * m.col_stride], 1.f);
        visible |= term != -INFINITY;
        plain &= term == 0.f;
      }
    }
  }
  visible = __any_sync(0xffffffff, visible);
  plain = __all_sync(0xffffffff, plain);
  if (lane == 0) {
    tiles[blockIdx.z * m.tiles_batch_stride + blockIdx.y * m.tiles_head_stride + tile_row * m.tile_cols + tile_col] =
        !visible ? kTileHidden : plain ? kTilePlain : kTileTerms;
  }
}

template <typename E>
void launch_mask_tiles(const MaskView& m, unsigned char* tiles, dim3 grid, int len_q, int len_kv, cudaStream_t stream) {
  mask_tiles_kernel<E><<<grid, kThreads, 0, stream>>>(m, tiles, len_q, len_kv);
}

}  // namespace

void sdpa_mask_tiles(Dtype dtype, const MaskView& mask, unsigned char* tiles, int64_t outer, int64_t heads,
                     int64_t len_q, int64_t len_kv, cudaStream_t stream) {
  const int tiles_across = (mask.tile_cols + kWarps - 1) / kWarps;
  const dim3 grid(static_cast<unsigned>(mask.tile_rows * tiles_across), static_cast<unsigned>(heads),
                  static_cast<unsigned>(outer));
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  const int q = static_cast<int>(len_q), kv = static_cast<int>(len_kv);
  // A 16-bit bias is stored in the problem's dtype.
  switch (mask.kind) {
    case MaskKind::kBool: return launch_mask_tiles<bool>(mask, tiles, grid, q, kv, stream);
    case MaskKind::kBias16:
      if (dtype == Dtype::kFloat16) return launch_mask_tiles<__half>(mask, tiles, grid, q, kv, stream);
      return launch_mask_tiles<__nv_bfloat16>(mask, tiles, grid, q, kv, stream);
    case MaskKind::kBias32: return launch_mask_tiles<float>(mask, tiles, grid, q, kv, stream);
    default: return launch_mask_tiles<double>(mask, tiles, grid, q, kv, stream);
  }
}

}  // namespace theria::kernels::cuda
