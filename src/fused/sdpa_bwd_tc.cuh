// Fused backward on tensor cores (docs/derivatives.md, B), FlashAttention-2 style:
//   sdpa_bwd_tc_kernel: one CTA per (batch position, block of kBlockN keys); each warp owns 16 keys
//     and keeps their dK, dV in registers while query blocks of kBlockM rows stream through a
//     double-buffered cp.async pipeline. Per block it rebuilds P^T = exp(S^T - lse) (S^T = K Q^T),
//     dP^T = V dO^T, dS^T = P^T (dP^T - delta), accumulates dV += P^T dO and dK += dS^T Q, and
//     adds dQ += dS K into an fp32 buffer with atomics (dS staged in shared memory for the
//     transposed product). Atomic adds make dQ's summation order, and so its last bits, vary
//     between runs unless the binding asks for ordered adds (DqTurn, deterministic mode); dK and dV
//     are deterministic.
//   row terms (delta) come from row_terms_tc.cuh before, sdpa_dq_finish_kernel after (launch_tc.cuh). At head
//   dim 128 the warpgroup kernel of sdpa_bwd_wg.cuh takes the kernel's place. Tile shapes: tile_policy.h (BwdTile).
//   Grouped-query attention: the plain build serves one query head per CTA and adds dK, dV to fp32 buffers
//   (write_key_rows); the grouped build (deterministic mode, masks) serves a key-side position, and its query
//   blocks stream head after head over the group's query heads (GroupSteps), so dK and dV sum in registers.
#pragma once

#include "fused/attn_mask.cuh"
#include "fused/mask_grad.cuh"
#include "fused/dq_finish.cuh"
#include "fused/group_steps.cuh"
#include "fused/kernel_templates.h"
#include "fused/mma.cuh"
#include "fused/row_terms_tc.cuh"
#include "fused/tile_io.cuh"
#include "fused/tile_policy.h"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

namespace theria::kernels::cuda {

// kWarps warps own kKTiles 16-key tiles each and share every Q / dO tile they stream: a Q or dO
// fragment loaded from shared memory feeds kKTiles MMAs. For the dQ product the warps split the
// kBlockM x kHeadDim result into 16-row tiles x kHeadDim / kDqSplit column slices. The tile shape: BwdTile.
template <int kHeadDim_, int kParts>
struct BwdTraits {
  using Tile = BwdTile<kHeadDim_, kParts>;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = Tile::kWarps;
  static constexpr int kKTiles = Tile::kKTiles;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockN = 16 * kKTiles * kWarps;  // keys per CTA
  static constexpr int kBlockM = Tile::kBlockM;          // queries per step
  static constexpr int kDqSplit = kWarps / (kBlockM / 16);  // column slices of the dQ tile
  static constexpr int kDqCols = kHeadDim / kDqSplit;
  static_assert(kDqSplit >= 1 && kDqCols % 16 == 0, "dQ tiles must split into 16-column steps");
  using Rows = PaddedRows<kHeadDim, kParts>;  // Q, K, V tiles
  static constexpr int kStride = Rows::kStride;
  using DsRows = PaddedRows<kBlockM, kParts>;  // the staged dS^T
  static constexpr int kDsStride = DsRows::kStride;
  static constexpr int kTileElems = (2 * kBlockN + 4 * kBlockM) * kStride + kBlockN * kDsStride;  // K V, Q dO x2, dS
  static constexpr size_t kSmemBytes(size_t elem) { return kTileElems * elem + 4 * kBlockM * sizeof(float); }
};

template <typename T, typename Tr, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
__global__ void __launch_bounds__(Tr::kThreads) sdpa_bwd_tc_kernel(const SdpaBwdParams p, const BwdWorkspace ws) {
  constexpr int kHeadDim = Tr::kHeadDim, kDqCols = Tr::kDqCols, kKTiles = Tr::kKTiles;
  constexpr int kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kStride = Tr::kStride, kThreads = Tr::kThreads;
  using Rows = typename Tr::Rows;
  using DsRows = typename Tr::DsRows;
  constexpr int kDsStride = Tr::kDsStride;
  using E = ElemOf<T>;  // the operand tiles' element (T, or bfloat16 parts of float32)
  extern __shared__ __align__(16) unsigned char smem[];
  E* k_tile = reinterpret_cast<E*>(smem);
  E* v_tile = k_tile + kBlockN * kStride;
  E* q_tiles = v_tile + kBlockN * kStride;              // two buffers of kBlockM rows
  E* do_tiles = q_tiles + 2 * kBlockM * kStride;        // two buffers of kBlockM rows
  E* ds_tile = do_tiles + 2 * kBlockM * kStride;        // dS^T as [key][query]
  float* lse_log2 = reinterpret_cast<float*>(ds_tile + kBlockN * kDsStride);  // two buffers of kBlockM
  float* delta = lse_log2 + 2 * kBlockM;                                      // two buffers of kBlockM

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  const int n0 = blockIdx.x * kBlockN;
  const int64_t b0 = first_query_of_block<kGroups>(p);  // the key-side position's first query position
  const T* q = batch_base<const T>(p.q, b0);
  const T* k = key_base<const T, kReadKeysByGroup>(p.k, b0);
  const T* v = key_base<const T, kReadKeysByGroup>(p.v, b0);
  const T* dout = batch_base<const T>(p.dout, b0);

  // Under the top-left causal mask, key j is seen by queries i >= j only.
  const int m_begin = kCausal ? (n0 / kBlockM) * kBlockM : 0;
  const int warp_key0 = warp * 16 * kKTiles;  // first key of this warp's tiles within the block
  // attn_mask (the masked build): under a per-key mask the CTA's keys are classified once; when none is seen it
  // adds nothing (dK, dV zero, no dQ share) and runs no step.
  const BackwardMask<T, kKTiles> mask =
      kMask ? BackwardMask<T, kKTiles>(p, b0, n0, kBlockN, n0 + warp_key0, S, tid, g) : BackwardMask<T, kKTiles>();
  // The walk over query steps (the row statistics' shared memory is its scratch).
  const BackwardWalk<kGroups> walk = backward_walk<kBlockM, kBlockN, kThreads, kGroups, kDeterministic, kMask>(
      p, ws, mask, b0, n0, m_begin, L, reinterpret_cast<int*>(delta), tid);
  const GroupSteps<kGroups>& steps = walk.steps;
  const int n_steps = walk.count;
  ClassesAhead step_classes(
      [&](int s) {
        if constexpr (kMask) return walk.template step_class<kBlockM, kBlockN>(p, mask, n0, s);
        return KeyBlock::kTerms;
      },
      0, n_steps);

  // Row statistics of a query block: threads tid < kBlockM fetch one row's lse and delta into
  // registers early (so the load latency hides behind a step's products) and store them later; the
  // conversion to log2 units (lse_in_log2) waits until the store, so that nothing uses the loaded value early.
  static_assert(kBlockM <= kThreads, "one thread per query row of a block");
  auto fetch_stats = [&](int step, float& lse_row, float& delta_row) {
    const int m = steps.row(step);
    const int64_t at = (b0 + steps.head(step)) * p.len_q + m + tid;
    const bool valid = tid < kBlockM && m + tid < L;
    lse_row = valid ? static_cast<const float*>(p.lse)[at] : 0.f;
    delta_row = valid ? static_cast<const float*>(p.delta)[at] : 0.f;
  };
  auto store_stats = [&](int buf, float lse_row, float delta_row) {
    if (tid < kBlockM) {
      lse_log2[buf * kBlockM + tid] = lse_in_log2(lse_row);
      delta[buf * kBlockM + tid] = delta_row;
    }
  };
  auto load_step = [&](int buf, int step) {
    const int64_t head = steps.head(step);
    load_rows_async<T, kBlockM, kHeadDim, kThreads>(q_tiles + buf * kBlockM * kStride, q + head * p.q.head_stride,
                                                    p.q.row_stride, steps.row(step), L, tid);
    load_rows_async<T, kBlockM, kHeadDim, kThreads>(do_tiles + buf * kBlockM * kStride,
                                                    dout + head * p.dout.head_stride, p.dout.row_stride,
                                                    steps.row(step), L, tid);
  };

  load_rows_async<T, kBlockN, kHeadDim, kThreads>(k_tile, k, p.k.row_stride, n0, S, tid);
  load_rows_async<T, kBlockN, kHeadDim, kThreads>(v_tile, v, p.v.row_stride, n0, S, tid);
  if (n_steps > 0) {
    if (step_classes.first_seen()) load_step(0, 0);
    float lse_row, delta_row;
    fetch_stats(0, lse_row, delta_row);
    store_stats(0, lse_row, delta_row);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // The end of a step: the next step's operands have landed, and every
  // thread is done with this step's buffers.
  const auto end_step = [] {
    cp_async_wait<0>();
    __syncthreads();
  };

  float dk_acc[kKTiles][kHeadDim / 8][4], dv_acc[kKTiles][kHeadDim / 8][4];
#pragma unroll
  for (int kt = 0; kt < kKTiles; ++kt) {
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) dk_acc[kt][dt][e] = dv_acc[kt][dt][e] = 0.f;
    }
  }
  const float scale_log2 = static_cast<float>(p.scale * M_LOG2E);

  for (int step = 0; step < n_steps; ++step) {
    const int buf = step & 1, m = steps.row(step);
    const int64_t head = steps.head(step), b = b0 + head;
    if (step + 1 < n_steps && step_classes.next_seen()) {
      load_step(buf ^ 1, step + 1);
      cp_async_commit();
    }
    const E* q_tile = q_tiles + buf * kBlockM * kStride;
    const E* do_tile = do_tiles + buf * kBlockM * kStride;
    const float* lse_s = lse_log2 + buf * kBlockM;
    const float* delta_s = delta + buf * kBlockM;
    float next_lse = 0.f, next_delta = 0.f;
    if (step + 1 < n_steps) fetch_stats(step + 1, next_lse, next_delta);
    const KeyBlock tile = step_classes.take(step);
    if (tile == KeyBlock::kHidden) {  // no pair of the step is seen: it adds nothing
      skip_step<kDeterministic>(
          ws, b, m, [&] { if (step + 1 < n_steps) store_stats(buf ^ 1, next_lse, next_delta); }, end_step);
      continue;
    }

    // S^T = K_w Q^T and dP^T = V_w dO^T: (16 kKTiles) keys x kBlockM queries per warp.
    float st[kKTiles][kBlockM / 8][4], dpt[kKTiles][kBlockM / 8][4];
#pragma unroll
    for (int kt = 0; kt < kKTiles; ++kt) {
#pragma unroll
      for (int nt = 0; nt < kBlockM / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) st[kt][nt][e] = dpt[kt][nt][e] = 0.f;
      }
    }
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      Frag<T> ka[kKTiles], va[kKTiles];
#pragma unroll
      for (int kt = 0; kt < kKTiles; ++kt) {
        ld_frag<Rows>(ka[kt], a_frag_addr<Rows>(k_tile, warp_key0 + kt * 16, kk * 16, lane));
        ld_frag<Rows>(va[kt], a_frag_addr<Rows>(v_tile, warp_key0 + kt * 16, kk * 16, lane));
      }
#pragma unroll
      for (int np = 0; np < kBlockM / 16; ++np) {
        Frag<T> qb, ob;
        ld_frag<Rows>(qb, b_frag_addr_nk<Rows>(q_tile, np * 16, kk * 16, lane));
        ld_frag<Rows>(ob, b_frag_addr_nk<Rows>(do_tile, np * 16, kk * 16, lane));
#pragma unroll
        for (int kt = 0; kt < kKTiles; ++kt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            mma<T>(st[kt][2 * np + h], ka[kt], qb, h);
            mma<T>(dpt[kt][2 * np + h], va[kt], ob, h);
          }
        }
      }
    }

    // P^T from the saved statistics; dS^T = P^T (dP^T - delta). Masked pairs give exact zeros.
    // (Skipping the test on interior blocks measured slower: more registers, same work.)
    if constexpr (kMask) {
#pragma unroll
      for (int kt = 0; kt < kKTiles; ++kt) {
        mask.fold(p, head, tile, kt, st[kt], n0 + warp_key0 + kt * 16, m, L, S, lane, [](int, int) {});
      }
    }
#pragma unroll
    for (int kt = 0; kt < kKTiles; ++kt) {
#pragma unroll
      for (int nt = 0; nt < kBlockM / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = nt * 8 + 2 * t + (e & 1), key = n0 + warp_key0 + kt * 16 + g + (e >> 1) * 8;
          const bool visible = key < S && m + qi < L && (!kCausal || key <= m + qi);
          const float pt = visible ? fast_exp2(fmaf(st[kt][nt][e], scale_log2, -lse_s[qi])) : 0.f;
          st[kt][nt][e] = pt;
          dpt[kt][nt][e] = pt * (dpt[kt][nt][e] - delta_s[qi]);
        }
      }
    }
    if constexpr (kMask) {  // a float mask's gradient is dS, where asked
#pragma unroll
      for (int kt = 0; kt < kKTiles; ++kt) {
        write_mask_grad<T, true>(p, b, dpt[kt], n0 + warp_key0 + kt * 16, m, L, S, lane);
      }
    }

    // dV += P^T dO and dK += dS^T Q (scale applied once at the end); stage dS^T for the dQ product,
    // which needs it transposed across warps.
#pragma unroll
    for (int kq = 0; kq < kBlockM / 16; ++kq) {
      Frag<T> pa[kKTiles], dsa[kKTiles];
#pragma unroll
      for (int kt = 0; kt < kKTiles; ++kt) {
        c_to_a<T>(pa[kt], st[kt][2 * kq], st[kt][2 * kq + 1]);
        c_to_a<T>(dsa[kt], dpt[kt][2 * kq], dpt[kt][2 * kq + 1]);
      }
#pragma unroll
      for (int dp = 0; dp < kHeadDim / 16; ++dp) {
        Frag<T> ob, qb;
        ld_frag_trans<Rows>(ob, b_frag_addr_kn<Rows>(do_tile, kq * 16, dp * 16, lane));
        ld_frag_trans<Rows>(qb, b_frag_addr_kn<Rows>(q_tile, kq * 16, dp * 16, lane));
#pragma unroll
        for (int kt = 0; kt < kKTiles; ++kt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            mma<T>(dv_acc[kt][2 * dp + h], pa[kt], ob, h);
            mma<T>(dk_acc[kt][2 * dp + h], dsa[kt], qb, h);
          }
        }
      }
#pragma unroll
      for (int kt = 0; kt < kKTiles; ++kt) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int nt = 2 * kq + half;
            store_parts<DsRows, T>(ds_tile + (warp_key0 + kt * 16 + g + 8 * r) * kDsStride + nt * 8 + 2 * t,
                                   dpt[kt][nt][2 * r], dpt[kt][nt][2 * r + 1]);
          }
        }
      }
    }
    if (step + 1 < n_steps) store_stats(buf ^ 1, next_lse, next_delta);
    __syncthreads();

    // dQ += dS K for query tile (warp % tiles) and columns [col0, col0 + kDqCols), into the fp32 buffer.
    const int q_tile16 = (warp % (kBlockM / 16)) * 16, col0 = (warp / (kBlockM / 16)) * kDqCols;
    float dq_acc[kDqCols / 8][4];
#pragma unroll
    for (int dt = 0; dt < kDqCols / 8; ++dt) dq_acc[dt][0] = dq_acc[dt][1] = dq_acc[dt][2] = dq_acc[dt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      Frag<T> da;
      ld_frag_trans<DsRows>(da, at_frag_addr<DsRows>(ds_tile, kk * 16, q_tile16, lane));
#pragma unroll
      for (int dp = 0; dp < kDqCols / 16; ++dp) {
        Frag<T> kb;
        ld_frag_trans<Rows>(kb, b_frag_addr_kn<Rows>(k_tile, kk * 16, col0 + dp * 16, lane));
        mma<T>(dq_acc[2 * dp], da, kb, 0);
        mma<T>(dq_acc[2 * dp + 1], da, kb, 1);
      }
    }
    const DqTurn<kDeterministic> turn(ws, b, m);
    turn.wait();
    add_dq_tile<kDqCols, kHeadDim>(ws.dq_accum + b * p.len_q * kHeadDim, dq_acc, m + q_tile16, col0, L, lane);
    turn.pass();
    end_step();
  }

  if constexpr (kMask) {
    if (mask.all_hidden()) pass_dq_turns<kDeterministic>(ws, b0, steps);
  }
  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int kt = 0; kt < kKTiles; ++kt) {
    const int key0 = n0 + warp_key0 + kt * 16;
    write_key_rows<T, kHeadDim, kGroups>(ws, p.dk, b0, dk_acc[kt], key0, S, scale, lane);
    write_key_rows<T, kHeadDim, kGroups>(ws, p.dv, b0, dv_acc[kt], key0, S, 1.f, lane);
  }
}

// The mma.sync kernel alone (launch_tc.cuh's launch_sdpa_bwd_tc runs the row terms before and dQ's finish after).
template <typename T, int kHeadDim, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
void launch_bwd_tc_kernel(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  using Tr = BwdTraits<kHeadDim, kPartsOf<T>>;
  constexpr size_t smem = Tr::kSmemBytes(sizeof(ElemOf<T>));
  const dim3 grid(static_cast<unsigned>((p.len_kv + Tr::kBlockN - 1) / Tr::kBlockN),
                  static_cast<unsigned>(kv_batches(p)));
  launch_with_smem(sdpa_bwd_tc_kernel<T, Tr, kCausal, kDeterministic, kGroups, kMask>, grid, Tr::kThreads, smem, stream, p, ws);
}

}  // namespace theria::kernels::cuda
