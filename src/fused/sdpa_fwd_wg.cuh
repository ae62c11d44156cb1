// The forward (FwdPass::kOut) and the tangent pass (FwdPass::kTangent: out_dot and lse_dot from the
// saved out and lse, the first step of the double backward) of sdpa_fwd_tc.cuh on Hopper warpgroup
// MMAs, head dim 128 (docs/derivatives.md, F and BJ).
//
// One CTA per (batch position, block of 128 queries): two warpgroups of 64 query rows each keep their
// accumulator (out, or out_dot; 64 x 128 fp32) in registers while key blocks stream through a
// double-buffered cp.async pipeline (K, V, and for the tangent pass K_dot, V_dot). Per block and
// warpgroup:
//   1. S = Q K^T [and S_dot = Q_dot K^T + Q K_dot^T], both operands K-major from shared memory;
//   2. kOut: online softmax in log2 units (running max, rescaled accumulator and row sum), P = exp(S - m);
//      kTangent: P = exp(S - lse) with the saved lse (no running max, no rescaling) and
//      W = P * scale * S_dot, whose row sums give lse_dot;
//   3. out += P V, or out_dot += W V + P V_dot: A from registers (P, W as mma fragments), B MN-major.
// At the end: out = acc / row sum and lse; or out_dot = acc - lse_dot * out with the saved out.
#pragma once

#include "fused/kernel_templates.h"
#include "fused/mma.cuh"
#include "fused/tile_io.cuh"
#include "fused/wgmma.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <cmath>

namespace theria::kernels::cuda {

template <int kHeadDim_, FwdPass kPass_>
struct FwdWgTraits {
  static_assert(kPass_ != FwdPass::kJvp, "the JVP stays on the mma.sync kernel");
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kTangent = kPass_ == FwdPass::kTangent;
  static constexpr int kWarpGroups = 2;
  static constexpr int kThreads = 128 * kWarpGroups;
  static constexpr int kBlockM = 64 * kWarpGroups;  // queries per CTA, 64 per warpgroup (the wgmma M)
  // Keys per step: the tangent pass holds two score accumulators, the forward one.
  static constexpr int kBlockN = kTangent ? 64 : 128;
  static constexpr int kKeyOperands = kTangent ? 4 : 2;  // K, V [, K_dot, V_dot]
  static constexpr int kRowOperands = kTangent ? 2 : 1;  // Q [, Q_dot]
  using Rows = CoreMatrixRows<kHeadDim>;
  static constexpr int kSmemElems = Rows::tile_elems(kRowOperands * kBlockM + 2 * kKeyOperands * kBlockN);
};

template <typename T, typename Tr, bool kCausal>
__global__ void __launch_bounds__(Tr::kThreads, 1) sdpa_fwd_wg_kernel(const SdpaFwdParams p) {
  constexpr int kHeadDim = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kThreads = Tr::kThreads;
  constexpr bool kTangent = Tr::kTangent;
  constexpr int kKeyOps = Tr::kKeyOperands;
  using Rows = typename Tr::Rows;
  constexpr int kQTile = Rows::tile_elems(kBlockM), kKeyTile = Rows::tile_elems(kBlockN);
  constexpr uint32_t kQBytes = kQTile * sizeof(T), kKeyBytes = kKeyTile * sizeof(T);
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_tile = reinterpret_cast<T*>(smem);                 // then Q_dot
  T* key_tiles = q_tile + Tr::kRowOperands * kQTile;     // [2 buffers][K, V [, K_dot, V_dot]]

  const int tid = threadIdx.x, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wg = __shfl_sync(0xffffffff, tid / 128, 0);  // seen as warp-uniform: descriptors stay uniform
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  const int m0 = blockIdx.x * kBlockM;
  const int64_t b = blockIdx.y;
  const int row_g = m0 + 64 * wg + 16 * warp + g;  // this thread's rows: row_g and row_g + 8

  const int kv_end = kCausal ? min(S, m0 + kBlockM) : S;
  const int n_blocks = (kv_end + kBlockN - 1) / kBlockN;
  // The key-side operands' bases, worked out once (each is a division of the batch index).
  const T* const k_g = batch_base<const T>(p.k, b);
  const T* const v_g = batch_base<const T>(p.v, b);
  const T* const kd_g = kTangent ? batch_base<const T>(p.k_dot, b) : nullptr;
  const T* const vd_g = kTangent ? batch_base<const T>(p.v_dot, b) : nullptr;
  auto load_keys = [&](int buf, int row0) {
#pragma unroll
    for (int i = 0; i < kKeyOps; ++i) {
      const MatrixView& src = i == 0 ? p.k : i == 1 ? p.v : i == 2 ? p.k_dot : p.v_dot;
      load_rows_async<T, kBlockN, kHeadDim, kThreads, Rows>(key_tiles + (buf * kKeyOps + i) * kKeyTile,
                                                            i == 0 ? k_g : i == 1 ? v_g : i == 2 ? kd_g : vd_g,
                                                            src.row_stride, row0, S, tid);
    }
  };
  load_rows_async<T, kBlockM, kHeadDim, kThreads, Rows>(q_tile, batch_base<const T>(p.q, b), p.q.row_stride, m0, L, tid);
  if constexpr (kTangent) {
    load_rows_async<T, kBlockM, kHeadDim, kThreads, Rows>(q_tile + kQTile, batch_base<const T>(p.q_dot, b),
                                                          p.q_dot.row_stride, m0, L, tid);
  }
  if (n_blocks > 0) load_keys(0, 0);
  cp_async_commit();

  // row_max: the running max, or the saved lse (both log2 units; a row with no visible key, lse -inf,
  // sees only masked logits, which give exact zeros); row_sum: this thread's part of the row sum of P
  // (kOut) or of W (kTangent: lse_dot), reduced over the quad at the end.
  float row_max[2], row_sum[2] = {0.f, 0.f};
  float* lse = static_cast<float*>(p.lse) + b * p.len_q;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_max[r] = -INFINITY;
    if constexpr (kTangent) {
      const int row = row_g + 8 * r;
      const float l = row < L ? lse[row] : 0.f;
      row_max[r] = l == -INFINITY ? 0.f : l * static_cast<float>(M_LOG2E);
    }
  }
  float acc[kHeadDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.f;
  const float scale_log2 = static_cast<float>(p.scale * M_LOG2E);
  const float scale = static_cast<float>(p.scale);
  cp_async_wait<0>();
  fence_proxy_async();
  __syncthreads();

  using KMajor = TileDesc<Rows, false>;
  using MnMajor = TileDesc<Rows, true>;
  for (int nb = 0; nb < n_blocks; ++nb) {
    const int buf = nb & 1, n0 = nb * kBlockN;
    if (nb + 1 < n_blocks) {
      load_keys(buf ^ 1, n0 + kBlockN);
      cp_async_commit();
    }
    const uint32_t q_s = smem_addr(q_tile) + 2 * Rows::offset(64 * wg, 0);
    const uint32_t key_s = smem_addr(key_tiles + buf * kKeyOps * kKeyTile);
    const KMajor q_d(q_s), k_d(key_s);

    // 1. S [and S_dot]; the first k-step overwrites the accumulators.
    float s[kBlockN / 8][4], sd[kTangent ? kBlockN / 8 : 1][4];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      const uint64_t qa = q_d.at(0, 16 * kk), kb = k_d.at(0, 16 * kk);
      wgmma_ss<T, 0, 0, kBlockN>(s, qa, kb, kk > 0);
      if constexpr (kTangent) {
        const KMajor qd_d(q_s + kQBytes), kd_d(key_s + 2 * kKeyBytes);
        wgmma_ss<T, 0, 0, kBlockN>(sd, qd_d.at(0, 16 * kk), kb, kk > 0);
        wgmma_ss<T, 0, 0, kBlockN>(sd, qa, kd_d.at(0, 16 * kk), 1);
      }
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(s);
    if constexpr (kTangent) fence_operands(sd);

    // 2. Keys past S, and under the causal mask keys past the row, are -inf.
    const bool needs_mask = n0 + kBlockN > S || (kCausal && n0 + kBlockN - 1 > m0 + 64 * wg);
    if (needs_mask) {
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n0 + nt * 8 + 2 * t + (e & 1), row = row_g + (e >> 1) * 8;
          if (col >= S || (kCausal && col > row)) {
            s[nt][e] = -INFINITY;
            if constexpr (kTangent) sd[nt][e] = 0.f;
          }
        }
      }
    }
    if constexpr (!kTangent) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = row_max[r];
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]) * scale_log2);
        mx = quad_max(mx);
        // A row that has seen only -inf keeps a zero state (exp2 of -inf - 0 is 0).
        const float m_use = mx == -INFINITY ? 0.f : mx;
        const float alpha = fast_exp2(row_max[r] - m_use);
        row_max[r] = mx;
        row_sum[r] *= alpha;
#pragma unroll
        for (int dt = 0; dt < kHeadDim / 8; ++dt) {
          acc[dt][2 * r] *= alpha;
          acc[dt][2 * r + 1] *= alpha;
        }
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            s[nt][2 * r + c] = fast_exp2(fmaf(s[nt][2 * r + c], scale_log2, -m_use));
            row_sum[r] += s[nt][2 * r + c];
          }
        }
      }
    } else {
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[nt][e] = fast_exp2(fmaf(s[nt][e], scale_log2, -row_max[e >> 1]));
          sd[nt][e] *= s[nt][e] * scale;  // W = P * scale * S_dot (a masked key gives P = 0, so W = 0)
          row_sum[e >> 1] += sd[nt][e];
        }
      }
    }
    uint32_t pa[kBlockN / 16][4], wa[kTangent ? kBlockN / 16 : 1][4];
#pragma unroll
    for (int kq = 0; kq < kBlockN / 16; ++kq) {
      c_to_a<T>(pa[kq], s[2 * kq], s[2 * kq + 1]);
      if constexpr (kTangent) c_to_a<T>(wa[kq], sd[2 * kq], sd[2 * kq + 1]);
    }

    // 3. out += P V, or out_dot += W V + P V_dot.
    const MnMajor v_n(key_s + kKeyBytes);
    wgmma_fence();
#pragma unroll
    for (int kq = 0; kq < kBlockN / 16; ++kq) {
      if constexpr (kTangent) {
        const MnMajor vd_n(key_s + 3 * kKeyBytes);
        wgmma_rs<T, 1, kHeadDim>(acc, wa[kq], v_n.at(16 * kq, 0), 1);
        wgmma_rs<T, 1, kHeadDim>(acc, pa[kq], vd_n.at(16 * kq, 0), 1);
      } else {
        wgmma_rs<T, 1, kHeadDim>(acc, pa[kq], v_n.at(16 * kq, 0), 1);
      }
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(acc);
    fence_operands(pa);
    if constexpr (kTangent) fence_operands(wa);
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();
  }

  T* out = batch_base<T>(p.out, b);
  T* out_dot = kTangent ? batch_base<T>(p.out_dot, b) : nullptr;
  float* lse_dot = kTangent ? static_cast<float*>(p.lse_dot) + b * p.len_q : nullptr;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_g + 8 * r;
    const float l = quad_sum(row_sum[r]);  // kOut: the row sum of P; kTangent: lse_dot (P is normalised)
    if (row >= L) continue;
    T* out_row = out + static_cast<int64_t>(row) * p.out.row_stride;
    const float inv = l == 0.f ? 0.f : 1.f / l;  // a NaN sum stays NaN
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      uint32_t* out_pair = reinterpret_cast<uint32_t*>(out_row + dt * 8 + 2 * t);
      if constexpr (kTangent) {
        float o0, o1;
        unpack2<T>(*out_pair, o0, o1);
        *reinterpret_cast<uint32_t*>(out_dot + static_cast<int64_t>(row) * p.out_dot.row_stride + dt * 8 + 2 * t) =
            pack2<T>(acc[dt][2 * r] - l * o0, acc[dt][2 * r + 1] - l * o1);
      } else {
        *out_pair = pack2<T>(acc[dt][2 * r] * inv, acc[dt][2 * r + 1] * inv);
      }
    }
    if (t == 0) {
      if constexpr (kTangent) {
        lse_dot[row] = l;
      } else {
        lse[row] = l == 0.f ? -INFINITY : (row_max[r] + log2f(l)) * static_cast<float>(M_LN2);
      }
    }
  }
}

template <typename T, int kHeadDim, bool kCausal, FwdPass kPass>
void launch_sdpa_fwd_wg(const SdpaFwdParams& p, cudaStream_t stream) {
  using Tr = FwdWgTraits<kHeadDim, kPass>;
  constexpr size_t smem = Tr::kSmemElems * sizeof(T);
  const dim3 grid(static_cast<unsigned>((p.len_q + Tr::kBlockM - 1) / Tr::kBlockM), static_cast<unsigned>(p.batch));
  launch_with_smem(sdpa_fwd_wg_kernel<T, Tr, kCausal>, grid, Tr::kThreads, smem, stream, p);
}

}  // namespace theria::kernels::cuda
