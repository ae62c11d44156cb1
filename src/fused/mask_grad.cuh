// A float mask's own derivatives in the tensor-core kernels (the masked build; docs/derivatives.md, M): its tangent
// b_dot, added to the logits' tangent where the kernels form it, as attn_mask.cuh adds the mask to the logits (raw
// logit units: b_dot / scale); and its gradient, dS in the backward and dS's tangent in the backward-JVP, written from
// the accumulator tile where it is formed. Both act only where asked (ptr set). A block the tile map skips writes
// nothing: every P there is 0, so is dS, and the gradient buffer starts zeroed.
#pragma once

#include "fused/attn_mask.cuh"
#include "kernels/sdpa_params.h"

namespace theria::kernels::cuda {

// Adds the mask's tangent to a warp's 16 x 8 kNt accumulator tile of raw logit tangents (S_dot, or S_dot^T with
// kKeysAsRows; fragment layout as fold_mask's) of batch position b; pairs outside [0, n_q) x [0, n_k) are left alone.
template <typename T, bool kKeysAsRows, int kNt>
__device__ __forceinline__ void add_mask_tangent(const SdpaFwdParams& p, int64_t b, float (&acc)[kNt][4], int row0,
                                                 int col0, int n_q, int n_k, int lane) {
  const MaskView& m = p.mask_dot;
  if (m.ptr == nullptr) return;
  const unsigned char* base = mask_base(m, b);
  const float inv_scale = 1.f / static_cast<float>(p.scale);
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const FragmentPair at = fragment_pair<kKeysAsRows>(row0, col0, nt, e, lane);
      if (at.qi < n_q && at.kj < n_k) acc[nt][e] += mask_term<T>(m, base, inv_scale, at.qi, at.kj);
    }
  }
}

// Writes a warp's 16 x 8 kNt tile of dS (or dS_dot; S^T's layout with kKeysAsRows) of batch position b to the mask's
// gradient: added with atomics where the mask is broadcast (MaskGradView::accumulate), else stored, as T where
// MaskGradView::narrow says so (half the bytes, and no conversion pass after).
template <typename T, bool kKeysAsRows, int kNt>
__device__ __forceinline__ void write_mask_grad(const SdpaBwdParams& p, int64_t b, const float (&acc)[kNt][4],
                                                int row0, int col0, int n_q, int n_k, int lane) {
  const MaskGradView& d = p.dmask;
  if (d.ptr == nullptr) return;
  const BatchSplit s = split_batch(b, d.heads);
  const int64_t first = s.outer * d.batch_stride + s.head * d.head_stride;
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const FragmentPair at = fragment_pair<kKeysAsRows>(row0, col0, nt, e, lane);
      if (at.qi >= n_q || at.kj >= n_k) continue;
      const int64_t x = first + at.qi * d.row_stride + at.kj * d.col_stride;
      if (d.accumulate) {
        atomicAdd(static_cast<float*>(d.ptr) + x, acc[nt][e]);
      } else if (d.narrow) {
        static_cast<T*>(d.ptr)[x] = static_cast<T>(acc[nt][e]);
      } else {
        static_cast<float*>(d.ptr)[x] = acc[nt][e];
      }
    }
  }
}

}  // namespace theria::kernels::cuda
