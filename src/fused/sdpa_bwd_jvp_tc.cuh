// Fused backward-JVP on tensor cores (docs/derivatives.md, BJ): the tangents (dq_dot, dk_dot, dv_dot)
// of the backward along (q_dot, k_dot, v_dot, dout_dot). Through DB it is also the double backward.
// Same schedule as the backward (sdpa_bwd_tc.cuh): one CTA per (batch position, block of keys), each
// warp owns 16 keys and keeps dk_dot, dv_dot in registers while query blocks stream through a
// double-buffered cp.async pipeline, with their tangents beside them. Per block:
//   S^T = K Q^T, S_dot^T = K_dot Q^T + K Q_dot^T, dP^T = V dO^T, dP_dot^T = V_dot dO^T + V dO_dot^T,
//   P^T = exp(S^T - lse), P_dot^T = P^T (scale S_dot^T - lse_dot),
//   dS^T = P^T (dP^T - delta), dS_dot^T = P_dot^T (dP^T - delta) + P^T (dP_dot^T - delta_dot),
//   dv_dot += P_dot^T dO + P^T dO_dot, dk_dot += dS_dot^T Q + dS^T Q_dot (scale at the end),
//   dq_dot += dS_dot K + dS K_dot through fp32 atomics (both staged transposed in shared memory).
// lse_dot, delta and delta_dot come from the tangent pass (sdpa_fwd_tc.cuh), to which row_terms_tc.cuh adds a dout
// tangent's share of delta_dot.
// At head dim 128 the warpgroup kernel of sdpa_bwd_wg.cuh takes this kernel's place (launch_tc.cuh chooses; tile
// shapes: tile_policy.h, BwdJvpTile). Grouped-query attention: as
// in sdpa_bwd_tc.cuh (the plain build one query head per CTA, adding the tangents of dK, dV to fp32 buffers; the
// grouped build a key-side position, streaming its group's query heads: GroupSteps).
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

// The tile shape: BwdJvpTile. Without a dout tangent (the double backward) the dO_dot tile and its two products
// drop out.
template <int kHeadDim_, bool kDoutDot_, int kParts = 1>
struct BwdJvpTraits {
  using Tile = BwdJvpTile<kHeadDim_, kParts>;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kDoutDot = kDoutDot_;
  static constexpr int kRowOperands = kDoutDot ? 4 : 3;  // Q, dO, Q_dot [, dO_dot] per query block
  static constexpr int kWarps = Tile::kWarps;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockN = 16 * kWarps;
  static constexpr int kBlockM = Tile::kBlockM;
  static constexpr int kMinBlocks = Tile::kMinBlocks;  // CTAs per SM the registers must allow
  static constexpr int kDqSplit = kWarps / (kBlockM / 16);
  static constexpr int kDqCols = kHeadDim / kDqSplit;
  static_assert(kDqCols % 16 == 0, "dQ tiles must split into 16-column steps");
  using Rows = PaddedRows<kHeadDim, kParts>;  // K, V, their tangents, the query-side tiles
  using DsRows = PaddedRows<kBlockM, kParts>;  // the staged dS^T, dS_dot^T
  // K, V, K_dot, V_dot; Q, dO, Q_dot [, dO_dot] x 2 buffers; dS^T and dS_dot^T.
  static constexpr int kTileElems =
      Rows::tile_elems(4 * kBlockN + 2 * kRowOperands * kBlockM) + 2 * DsRows::tile_elems(kBlockN);
  static constexpr int kStats = 4;  // lse (log2 units), lse_dot, delta, delta_dot per query row
  static constexpr size_t kSmemBytes(size_t elem) { return kTileElems * elem + 2 * kStats * kBlockM * sizeof(float); }
};

template <typename T, typename Tr, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks) sdpa_bwd_jvp_tc_kernel(const SdpaBwdParams p, const BwdWorkspace ws) {
  constexpr int kHeadDim = Tr::kHeadDim, kDqCols = Tr::kDqCols, kStats = Tr::kStats, kRows = Tr::kRowOperands;
  constexpr bool kDoutDot = Tr::kDoutDot;
  constexpr int kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kThreads = Tr::kThreads;
  using Rows = typename Tr::Rows;
  using DsRows = typename Tr::DsRows;
  constexpr int kRowTile = Rows::tile_elems(kBlockM);  // one query-side tile
  constexpr int kKeyTile = Rows::tile_elems(kBlockN);  // one key-side tile
  constexpr int kDsTile = DsRows::tile_elems(kBlockN);
  using E = ElemOf<T>;  // the operand tiles' element (T, or bfloat16 parts of float32)
  extern __shared__ __align__(16) unsigned char smem[];
  E* k_tile = reinterpret_cast<E*>(smem);
  E* v_tile = k_tile + kKeyTile;
  E* kd_tile = v_tile + kKeyTile;
  E* vd_tile = kd_tile + kKeyTile;
  E* row_tiles = vd_tile + kKeyTile;  // [2 buffers][Q, dO, Q_dot, dO_dot]
  E* ds_tile = row_tiles + 2 * kRows * kRowTile;  // dS^T as [key][query]
  E* dsd_tile = ds_tile + kDsTile;  // dS_dot^T
  float* stats = reinterpret_cast<float*>(dsd_tile + kDsTile);  // [2][kStats][kBlockM]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  const int n0 = blockIdx.x * kBlockN;
  const int64_t b0 = first_query_of_block<kGroups>(p);  // the key-side position's first query position
  const T* k = key_base<const T, kReadKeysByGroup>(p.k, b0);
  const T* v = key_base<const T, kReadKeysByGroup>(p.v, b0);
  const T* kd = key_base<const T, kReadKeysByGroup>(p.k_dot, b0);
  const T* vd = key_base<const T, kReadKeysByGroup>(p.v_dot, b0);
  const T* row_src[4] = {batch_base<const T>(p.q, b0), batch_base<const T>(p.dout, b0),
                         batch_base<const T>(p.q_dot, b0), kDoutDot ? batch_base<const T>(p.dout_dot, b0) : nullptr};
  const int64_t row_stride[4] = {p.q.row_stride, p.dout.row_stride, p.q_dot.row_stride, p.dout_dot.row_stride};
  const int64_t head_stride[4] = {p.q.head_stride, p.dout.head_stride, p.q_dot.head_stride, p.dout_dot.head_stride};
  const RowStatStager<kStats, kBlockM> stat(p, b0, tid);  // the row statistic this thread stages per block

  const int m_begin = kCausal ? (n0 / kBlockM) * kBlockM : 0;
  // attn_mask (the masked build; sdpa_bwd_tc.cuh).
  const BackwardMask<T, 1> mask =
      kMask ? BackwardMask<T, 1>(p, b0, n0, kBlockN, n0 + warp * 16, S, tid, g) : BackwardMask<T, 1>();
  // The walk over query steps (the row statistics' shared memory is its scratch).
  const BackwardWalk<kGroups> walk = backward_walk<kBlockM, kBlockN, kThreads, kGroups, kDeterministic, kMask>(
      p, ws, mask, b0, n0, m_begin, L, reinterpret_cast<int*>(stats), tid);
  const GroupSteps<kGroups>& steps = walk.steps;
  const int n_steps = walk.count;
  ClassesAhead step_classes(
      [&](int s) {
        if constexpr (kMask) return walk.template step_class<kBlockM, kBlockN>(p, mask, n0, s);
        return KeyBlock::kTerms;
      },
      0, n_steps);

  auto load_rows = [&](int buf, int step) {
    const int64_t head = steps.head(step);
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      load_rows_async<T, kBlockM, kHeadDim, kThreads, Rows>(row_tiles + (buf * kRows + i) * kRowTile,
                                                            row_src[i] + head * head_stride[i], row_stride[i],
                                                            steps.row(step), L, tid);
    }
  };
  static_assert(kBlockM * kStats <= kThreads, "one thread per statistic of a block");

  load_rows_async<T, kBlockN, kHeadDim, kThreads, Rows>(k_tile, k, p.k.row_stride, n0, S, tid);
  load_rows_async<T, kBlockN, kHeadDim, kThreads, Rows>(v_tile, v, p.v.row_stride, n0, S, tid);
  load_rows_async<T, kBlockN, kHeadDim, kThreads, Rows>(kd_tile, kd, p.k_dot.row_stride, n0, S, tid);
  load_rows_async<T, kBlockN, kHeadDim, kThreads, Rows>(vd_tile, vd, p.v_dot.row_stride, n0, S, tid);
  if (n_steps > 0) {
    if (step_classes.first_seen()) load_rows(0, 0);
    stat.store(stats, 0, stat.fetch(steps.row(0), L));
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

  float dkd_acc[kHeadDim / 8][4], dvd_acc[kHeadDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dkd_acc[dt][e] = dvd_acc[dt][e] = 0.f;
  }
  const float scale_log2 = static_cast<float>(p.scale * M_LOG2E);
  const float scale = static_cast<float>(p.scale);
  const int key_g = n0 + warp * 16 + g;

  for (int step = 0; step < n_steps; ++step) {
    const int buf = step & 1, m = steps.row(step);
    const int head = steps.head(step);
    const int64_t b = b0 + head;
    if (step + 1 < n_steps && step_classes.next_seen()) {
      load_rows(buf ^ 1, step + 1);
      cp_async_commit();
    }
    const E* q_t = row_tiles + (buf * kRows + 0) * kRowTile;
    const E* do_t = row_tiles + (buf * kRows + 1) * kRowTile;
    const E* qd_t = row_tiles + (buf * kRows + 2) * kRowTile;
    const E* dod_t = row_tiles + (buf * kRows + kRows - 1) * kRowTile;  // used only with kDoutDot
    const float* lse_s = stats + buf * kStats * kBlockM;
    const float next_stat = step + 1 < n_steps ? stat.fetch(steps.row(step + 1), L, steps.head(step + 1)) : 0.f;
    const KeyBlock tile = step_classes.take(step);
    if (tile == KeyBlock::kHidden) {  // no pair of the step is seen: it adds nothing
      skip_step<kDeterministic>(
          ws, b, m, [&] { if (step + 1 < n_steps) stat.store(stats, buf ^ 1, next_stat); }, end_step);
      continue;
    }
    // This thread's row statistics for the step (queries nt * 8 + 2t and + 1), read before the products so
    // that the elementwise pass does not wait on shared memory (Nsight Compute: 10 % of the stall samples
    // at D=64 sat there).
    float2 row_stats[kStats][kBlockM / 8];
#pragma unroll
    for (int i = 0; i < kStats; ++i) {
#pragma unroll
      for (int nt = 0; nt < kBlockM / 8; ++nt) {
        row_stats[i][nt] = *reinterpret_cast<const float2*>(lse_s + i * kBlockM + nt * 8 + 2 * t);
      }
    }

    float st[kBlockM / 8][4], sdt[kBlockM / 8][4], dpt[kBlockM / 8][4], dpdt[kBlockM / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBlockM / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) st[nt][e] = sdt[nt][e] = dpt[nt][e] = dpdt[nt][e] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      Frag<T> ka, kda, va, vda;
      ld_frag<Rows>(ka, a_frag_addr<Rows>(k_tile, warp * 16, kk * 16, lane));
      ld_frag<Rows>(kda, a_frag_addr<Rows>(kd_tile, warp * 16, kk * 16, lane));
      ld_frag<Rows>(va, a_frag_addr<Rows>(v_tile, warp * 16, kk * 16, lane));
      ld_frag<Rows>(vda, a_frag_addr<Rows>(vd_tile, warp * 16, kk * 16, lane));
#pragma unroll
      for (int np = 0; np < kBlockM / 16; ++np) {
        Frag<T> qb, qdb, ob, odb;
        ld_frag<Rows>(qb, b_frag_addr_nk<Rows>(q_t, np * 16, kk * 16, lane));
        ld_frag<Rows>(qdb, b_frag_addr_nk<Rows>(qd_t, np * 16, kk * 16, lane));
        ld_frag<Rows>(ob, b_frag_addr_nk<Rows>(do_t, np * 16, kk * 16, lane));
        if constexpr (kDoutDot) ld_frag<Rows>(odb, b_frag_addr_nk<Rows>(dod_t, np * 16, kk * 16, lane));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int nt = 2 * np + h;
          mma<T>(st[nt], ka, qb, h);
          mma<T>(sdt[nt], kda, qb, h);
          mma<T>(sdt[nt], ka, qdb, h);
          mma<T>(dpt[nt], va, ob, h);
          mma<T>(dpdt[nt], vda, ob, h);
          if constexpr (kDoutDot) mma<T>(dpdt[nt], va, odb, h);
        }
      }
    }

    // P^T, P_dot^T, dS^T, dS_dot^T from the row statistics; masked pairs are exact zeros.
    if constexpr (kMask) {
      add_mask_tangent<T, true>(p, b, sdt, n0 + warp * 16, m, L, S, lane);  // first: a hidden pair's tangent stays 0
      mask.fold(p, head, tile, 0, st, n0 + warp * 16, m, L, S, lane, [&](int nt, int e) { sdt[nt][e] = 0.f; });
    }
#pragma unroll
    for (int nt = 0; nt < kBlockM / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = nt * 8 + 2 * t + (e & 1), key = key_g + (e >> 1) * 8;
        const bool visible = key < S && m + qi < L && (!kCausal || key <= m + qi);
        const auto pick = [&](int i) { return (e & 1) ? row_stats[i][nt].y : row_stats[i][nt].x; };
        const float pt = visible ? fast_exp2(fmaf(st[nt][e], scale_log2, -pick(0))) : 0.f;
        const float pdt = pt * fmaf(sdt[nt][e], scale, -pick(1));
        const float dp_minus = dpt[nt][e] - pick(2);
        st[nt][e] = pt;
        sdt[nt][e] = pdt;
        dpt[nt][e] = pt * dp_minus;
        dpdt[nt][e] = pdt * dp_minus + pt * (dpdt[nt][e] - pick(3));
      }
    }
    if constexpr (kMask) write_mask_grad<T, true>(p, b, dpdt, n0 + warp * 16, m, L, S, lane);  // the mask's dS_dot

    // dv_dot += P_dot^T dO + P^T dO_dot; dk_dot += dS_dot^T Q + dS^T Q_dot; stage dS^T, dS_dot^T.
#pragma unroll
    for (int kq = 0; kq < kBlockM / 16; ++kq) {
      Frag<T> pa, pda, dsa, dsda;
      c_to_a<T>(pa, st[2 * kq], st[2 * kq + 1]);
      c_to_a<T>(pda, sdt[2 * kq], sdt[2 * kq + 1]);
      c_to_a<T>(dsa, dpt[2 * kq], dpt[2 * kq + 1]);
      c_to_a<T>(dsda, dpdt[2 * kq], dpdt[2 * kq + 1]);
#pragma unroll
      for (int dp = 0; dp < kHeadDim / 16; ++dp) {
        Frag<T> ob, odb, qb, qdb;
        ld_frag_trans<Rows>(ob, b_frag_addr_kn<Rows>(do_t, kq * 16, dp * 16, lane));
        if constexpr (kDoutDot) ld_frag_trans<Rows>(odb, b_frag_addr_kn<Rows>(dod_t, kq * 16, dp * 16, lane));
        ld_frag_trans<Rows>(qb, b_frag_addr_kn<Rows>(q_t, kq * 16, dp * 16, lane));
        ld_frag_trans<Rows>(qdb, b_frag_addr_kn<Rows>(qd_t, kq * 16, dp * 16, lane));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          mma<T>(dvd_acc[2 * dp + h], pda, ob, h);
          if constexpr (kDoutDot) mma<T>(dvd_acc[2 * dp + h], pa, odb, h);
          mma<T>(dkd_acc[2 * dp + h], dsda, qb, h);
          mma<T>(dkd_acc[2 * dp + h], dsa, qdb, h);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int nt = 2 * kq + half, at = DsRows::offset(warp * 16 + g + 8 * r, nt * 8 + 2 * t);
          store_parts<DsRows, T>(ds_tile + at, dpt[nt][2 * r], dpt[nt][2 * r + 1]);
          store_parts<DsRows, T>(dsd_tile + at, dpdt[nt][2 * r], dpdt[nt][2 * r + 1]);
        }
      }
    }
    if (step + 1 < n_steps) stat.store(stats, buf ^ 1, next_stat);
    __syncthreads();

    // dq_dot += dS_dot K + dS K_dot for query tile (warp % tiles), columns [col0, col0 + kDqCols).
    const int q_tile16 = (warp % (kBlockM / 16)) * 16, col0 = (warp / (kBlockM / 16)) * kDqCols;
    float dq_acc[kDqCols / 8][4];
#pragma unroll
    for (int dt = 0; dt < kDqCols / 8; ++dt) dq_acc[dt][0] = dq_acc[dt][1] = dq_acc[dt][2] = dq_acc[dt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      Frag<T> da, dda;
      ld_frag_trans<DsRows>(da, at_frag_addr<DsRows>(ds_tile, kk * 16, q_tile16, lane));
      ld_frag_trans<DsRows>(dda, at_frag_addr<DsRows>(dsd_tile, kk * 16, q_tile16, lane));
#pragma unroll
      for (int dp = 0; dp < kDqCols / 16; ++dp) {
        Frag<T> kb, kdb;
        ld_frag_trans<Rows>(kb, b_frag_addr_kn<Rows>(k_tile, kk * 16, col0 + dp * 16, lane));
        ld_frag_trans<Rows>(kdb, b_frag_addr_kn<Rows>(kd_tile, kk * 16, col0 + dp * 16, lane));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          mma<T>(dq_acc[2 * dp + h], dda, kb, h);
          mma<T>(dq_acc[2 * dp + h], da, kdb, h);
        }
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
  const int key0 = n0 + warp * 16;
  write_key_rows<T, kHeadDim, kGroups>(ws, p.dk_dot, b0, dkd_acc, key0, S, scale, lane);
  write_key_rows<T, kHeadDim, kGroups>(ws, p.dv_dot, b0, dvd_acc, key0, S, 1.f, lane);
}

// The mma.sync kernel alone (launch_tc.cuh's launch_sdpa_bwd_jvp_tc runs the row terms before and dQ_dot's finish
// after).
template <typename T, int kHeadDim, bool kCausal, bool kDoutDot, bool kDeterministic, bool kGroups, bool kMask>
void launch_bwd_jvp_tc_kernel(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  using Tr = BwdJvpTraits<kHeadDim, kDoutDot, kPartsOf<T>>;
  constexpr size_t smem = Tr::kSmemBytes(sizeof(ElemOf<T>));
  const dim3 grid(static_cast<unsigned>((p.len_kv + Tr::kBlockN - 1) / Tr::kBlockN),
                  static_cast<unsigned>(kv_batches(p)));
  launch_with_smem(sdpa_bwd_jvp_tc_kernel<T, Tr, kCausal, kDeterministic, kGroups, kMask>, grid, Tr::kThreads, smem, stream, p, ws);
}

}  // namespace theria::kernels::cuda
