// The forward's view of a dense 16-bit bias staged in shared memory (StagedBias).
#pragma once

#include "fused/attn_mask.cuh"
#include "fused/mma.cuh"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cstdint>

namespace theria::kernels::cuda {

// A dense 16-bit bias in the forward: copied a block at a time into shared memory beside the key/value tiles (the same
// cp.async groups, double-buffered as they are), and folded from there. Read from global memory pair by pair where
// the fold needs it, a dense (1, H, L, S) bias cost the forward 5x its unmasked time, its loads' latency exposed
// (docs/performance.md). Taken for a bias whose rows are contiguous and 16-byte aligned (the launch then adds the
// buffers to the shared memory) and for whole key blocks (n0 + kBlockN <= S); other blocks fold from global memory.
// The launch stages only where the two buffers leave room for two CTAs per SM (kStagedBiasMaxSmem): at D = 128 they
// left one, and a bias with nothing to fold then took 1.8x its forward time (docs/performance.md).
constexpr size_t kStagedBiasMaxSmem = 113 * 1024;
__host__ __device__ inline bool bias_rows_copyable(const MaskView& m) {
  return m.kind == MaskKind::kBias16 && m.col_stride == 1 && m.row_stride != 0 && m.row_stride % 8 == 0 &&
         m.head_stride % 8 == 0 && m.batch_stride % 8 == 0 && reinterpret_cast<uintptr_t>(m.ptr) % 16 == 0;
}

template <typename T, int kBlockM, int kBlockN, int kThreads>
struct StagedBias {
  using Rows = PaddedRows<kBlockN>;
  static constexpr int kTileElems = kBlockM * Rows::kStride;
  static constexpr size_t kSmemBytes = 2 * kTileElems * sizeof(T);  // two buffers

  // Only a flag lives across the walk (the masked forward sits at its register limit); the buffers' address, a
  // constant offset into the kernel's shared memory, comes with each call (`tiles`).
  bool staged;

  // base: the mask of the CTA's batch position (mask_base), or nullptr.
  __device__ __forceinline__ StagedBias(const SdpaFwdParams& p, const unsigned char* base)
      : staged(base != nullptr && bias_rows_copyable(p.mask)) {}
  // Whether key block nb (of len_kv keys) is staged.
  __device__ __forceinline__ bool covers(int nb, int len_kv) const { return staged && (nb + 1) * kBlockN <= len_kv; }
  // Starts copying the bias (at base) of rows [m0, m0 + kBlockM) and key block nb into buffer buf of `tiles`
  // (kSmemBytes of shared memory), in the caller's cp.async group.
  __device__ __forceinline__ void load(T* tiles, const SdpaFwdParams& p, const unsigned char* base, int buf, int nb,
                                       int m0, int len_q, int len_kv, int tid) const {
    if (!covers(nb, len_kv)) return;
    load_rows_async<T, kBlockM, kBlockN, kThreads>(tiles + buf * kTileElems,
                                                   reinterpret_cast<const T*>(base) + nb * kBlockN, p.mask.row_stride,
                                                   m0, len_q, tid);
  }
  // Folds buffer buf into a warp's 16 x 8 kNt tile of raw logits S whose rows start at row0 of the block (every key
  // of a staged block is below S; rows at or past rows_left are left alone).
  template <int kNt, class Hidden>
  __device__ __forceinline__ void fold(const T* tiles, int buf, float inv_scale, float (&acc)[kNt][4], int row0,
                                       int rows_left, int lane, Hidden hidden) const {
    const T* tile = tiles + buf * kTileElems;
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + g + 8 * r;
      if (row >= rows_left) continue;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        float lo, hi;
        unpack2<T>(*reinterpret_cast<const uint32_t*>(tile + Rows::offset(row, nt * 8 + 2 * t)), lo, hi);
        if (fold_term(acc[nt][2 * r], lo * inv_scale)) hidden(nt, 2 * r);
        if (fold_term(acc[nt][2 * r + 1], hi * inv_scale)) hidden(nt, 2 * r + 1);
      }
    }
  }
};

}  // namespace theria::kernels::cuda
