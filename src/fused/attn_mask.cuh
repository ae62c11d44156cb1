// attn_mask in the tensor-core kernels. The mask is read where it lies (kernels::MaskView: zero strides along
// broadcast dims, so a key-padding mask (B, 1, 1, S) costs one byte per key and row of a tile, from L1), and
// folded into the raw logits before the softmax: a hidden pair becomes -inf (its tangent 0), as the causal mask
// makes it; a bias beta becomes beta / scale, which the kernels' exp2(s * scale * log2(e) - max) turns into
// + beta (scale > 0 on the tensor-core path: fused_backend.cpp). Kernels call it only when the mask is set,
// compiled into the general kernels only (kGeneral, kernel_templates.h).
#pragma once

#include "kernels/sdpa_params.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace theria::kernels::cuda {

// The mask of one batch position (query-side index b).
struct MaskTile {
  const unsigned char* base = nullptr;  // nullptr: no mask
  MaskKind kind = MaskKind::kNone;
  int64_t row_stride = 0, col_stride = 0;  // elements
  float inv_scale = 1.f;

  MaskTile() = default;  // no mask (the plain kernels)
  __device__ __forceinline__ MaskTile(const SdpaFwdParams& p, int64_t b) {
    const MaskView& m = p.mask;
    if (m.ptr == nullptr) return;
    kind = m.kind;
    const int size = kind == MaskKind::kBool ? 1 : kind == MaskKind::kBias16 ? 2 : kind == MaskKind::kBias32 ? 4 : 8;
    base = static_cast<const unsigned char*>(m.ptr) + ((b / m.heads) * m.batch_stride + (b % m.heads) * m.head_stride) * size;
    row_stride = m.row_stride;
    col_stride = m.col_stride;
    inv_scale = static_cast<float>(1.0 / p.scale);
  }
  __device__ __forceinline__ bool active() const { return base != nullptr; }

  // The term of query qi, key kj in raw logit units: -inf where a boolean mask hides the pair, 0 where it
  // keeps it, bias / scale for a float mask.
  template <typename T>
  __device__ __forceinline__ float term(int qi, int kj) const {
    const int64_t at = qi * row_stride + kj * col_stride;
    switch (kind) {
      case MaskKind::kBool: return base[at] != 0 ? 0.f : -INFINITY;
      case MaskKind::kBias16: return static_cast<float>(reinterpret_cast<const T*>(base)[at]) * inv_scale;
      case MaskKind::kBias32: return reinterpret_cast<const float*>(base)[at] * inv_scale;
      default: return static_cast<float>(reinterpret_cast<const double*>(base)[at]) * inv_scale;
    }
  }
};

// Folds a term into raw logit s (a hidden pair becomes -inf whatever s was, as masked_fill makes it); true
// when the pair is hidden.
__device__ __forceinline__ bool fold_term(float& s, float term) {
  if (term == -INFINITY) {
    s = -INFINITY;
    return true;
  }
  s += term;
  return false;
}

// Folds the mask into a warp's 16 x 8 kNt accumulator tile of raw logits (mma C fragments: this thread's
// fragment rows row0 + g and row0 + g + 8, columns col0 + 8 nt + 2t (+1)). kKeysAsRows: the tile is S^T (rows
// are keys, as in the backward kernels), else S. Pairs outside [0, n_q) x [0, n_k) are left alone (the
// kernels mask those already); hidden(nt, e) is called for each pair the mask hides. A mask that is the same
// for every query (row stride 0: a key-padding mask) is read once per key of the thread, not once per pair.
template <typename T, bool kKeysAsRows, int kNt, class Hidden>
__device__ __forceinline__ void fold_mask(const MaskTile& m, float (&acc)[kNt][4], int row0, int col0, int n_q, int n_k,
                                          int lane, Hidden hidden) {
  const int g = lane / 4, t = lane % 4;
  if (m.row_stride == 0) {
    if constexpr (kKeysAsRows) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int kj = row0 + g + 8 * r;
        if (kj >= n_k) continue;
        const float term = m.template term<T>(0, kj);
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            if (col0 + nt * 8 + 2 * t + c < n_q && fold_term(acc[nt][2 * r + c], term)) hidden(nt, 2 * r + c);
          }
        }
      }
    } else {
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int kj = col0 + nt * 8 + 2 * t + c;
          if (kj >= n_k) continue;
          const float term = m.template term<T>(0, kj);
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            if (row0 + g + 8 * r < n_q && fold_term(acc[nt][2 * r + c], term)) hidden(nt, 2 * r + c);
          }
        }
      }
    }
    return;
  }
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int fr = row0 + g + (e >> 1) * 8, fc = col0 + nt * 8 + 2 * t + (e & 1);
      const int qi = kKeysAsRows ? fc : fr, kj = kKeysAsRows ? fr : fc;
      if (qi < n_q && kj < n_k && fold_term(acc[nt][e], m.template term<T>(qi, kj))) hidden(nt, e);
    }
  }
}

}  // namespace theria::kernels::cuda
