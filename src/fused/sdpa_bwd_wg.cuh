// Fused backward and backward-JVP on Hopper warpgroup MMAs (wgmma), head dims 64 and 128: the quantities of
// sdpa_bwd_tc.cuh (docs/derivatives.md, B) and sdpa_bwd_jvp_tc.cuh (BJ), with the products that the
// mma.sync kernels run out of shared-memory bandwidth on read by the tensor cores once per warpgroup
// instead of once per warp (measured: docs/performance.md).
//
// One CTA per (batch position, block of 64 keys per warpgroup: two, three for the backward at head dim 64;
// WarpgroupTile::bwd_warpgroups): warpgroups of 64 keys each keep their dK, dV (or dk_dot, dv_dot; 64 x head dim
// fp32 each) in registers while blocks of kBlockM queries stream through two buffers, each filled by TMA copies
// (tma.cuh: one thread issues them, every thread waits on the buffer's mbarrier) while the other is read. Operand
// tiles are in the TMA's 128-byte swizzle (Swizzled128Rows), and a view TMA cannot address (launch_sdpa_bwd_wg
// returns false) runs the mma.sync kernels. Per block and warpgroup (tangent terms in brackets):
//   1. S^T [, S_dot^T], dP^T [, dP_dot^T] (64 keys x kBlockM queries), A (K, V [, K_dot, V_dot]) and B
//      (Q, dO [, Q_dot, dO_dot]) both K-major from shared memory, in two commit groups, so that P^T
//      [and P_dot^T] are formed while the dP products still run; the backward-JVP in one phase (32-query steps)
//      keeps Q and Q_dot stacked in one tile and forms S^T with K Q_dot^T as one product (BwdWgTraits::kStackQ);
//   2. dV += P^T dO, dK += dS^T Q  [dv_dot += P_dot^T dO + P^T dO_dot, dk_dot += dS_dot^T Q + dS^T Q_dot]:
//      A from registers (the accumulators of 1 as mma fragments), B MN-major from the query-side
//      tiles; dS^T [and dS_dot^T] go to shared memory meanwhile;
//   3. dQ^T [dq_dot^T] = K^T dS^T [K^T dS_dot^T + K_dot^T dS^T]: A = K^T MN-major, B = dS^T MN-major, both
//      from shared memory; at head dim 128 for this warpgroup's 64 head-dim columns over all 128 keys (one
//      warpgroup: all 128 columns, as two 64-column tiles, over its 64 keys), at 64 with two warpgroups
//      (kDqSplitQueries) for all 64 columns of this warpgroup's half of the step's queries over all 128 keys, and
//      with three (kDqSplitKeys) for all 64 columns over this warpgroup's 64 keys. The tiles are staged as
//      [query][column] and added to the fp32 buffer as rows of 4 columns (v4 reductions); split over keys, the
//      warpgroups' partial tiles are summed first, always in the same order (so that the deterministic mode stays
//      deterministic).
//      Where WarpgroupTile::bwd_defer_dq_adds says, a step's tile is added in the next step, under that step's
//      score products (1. above; BwdWgTraits::kDeferAdds).
//      Where WarpgroupTile::bwd_lag_dq says (the D=64 kernels), the products of 3. run one step late, over the step
//      before's dS^T in the other of two buffers, so that no step waits at a CTA-wide barrier: the dS^T buffers are
//      handed over on mbarriers (full: every thread's arrival right after its stores, waited for just before the
//      products; empty: after the products), the query-side buffers given back on mbarriers, the row statistics
//      copied per warpgroup (kLag below). Nothing waits or branches on a thread while a wgmma group runs: ptxas
//      serialises every wgmma of the kernel otherwise (C7520).
// float32 at precision "high" (T = Float32Half): the copies read q, dout, k and v (and their tangents) as float16
// copies scaled by powers of two, formed into the scratch first (scaled_copies.cuh); the kernel is the float16 one,
// with the powers folded into the logits' scale, the staged row statistics and the output factors
// (operand_scales.cuh).
// Grouped-query attention: as in sdpa_bwd_tc.cuh (the plain build one query head per CTA, adding dK, dV to fp32
// buffers; the grouped build a key-side position, streaming its group's query heads: GroupSteps).
// The last wave (tile_policy.h, plan_bwd_tail): the key blocks past the last whole wave of CTAs may leave the main
// launch at once and run as a second one (kTail) in which several CTAs each take a run of one block's query steps,
// adding their dK, dV to fp32 scratch that sdpa_bwd_tail_finish_kernel then writes out.
#pragma once

#include "fused/attn_mask.cuh"
#include "fused/mask_grad.cuh"
#include "fused/dq_finish.cuh"
#include "fused/group_steps.cuh"
#include "fused/kernel_templates.h"
#include "fused/mbarrier.cuh"
#include "fused/mma.cuh"
#include "fused/row_terms_tc.cuh"
#include "fused/scaled_copies.cuh"
#include "fused/tile_io.cuh"
#include "fused/tile_policy.h"
#include "fused/tma.cuh"
#include "fused/wgmma.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

namespace theria::kernels::cuda {

// kTangent: the backward-JVP (with kDoutDot: along a dout tangent too); else the backward.
template <int kHeadDim_, bool kTangent_, bool kDoutDot_, int kBlockM_>
struct BwdWgTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kTangent = kTangent_;
  static constexpr bool kDoutDot = kTangent_ && kDoutDot_;
  static constexpr int kWarpGroups = WarpgroupTile::bwd_warpgroups(kHeadDim_, kTangent_, kBlockM_);
  static constexpr int kThreads = 128 * kWarpGroups;
  static constexpr int kBlockN = 64 * kWarpGroups;  // keys per CTA, 64 per warpgroup (wgmma M)
  static constexpr int kBlockM = kBlockM_;          // queries per step
  static constexpr int kKeyOperands = kTangent ? 4 : 2;               // K, V [, K_dot, V_dot]
  static constexpr int kRowOperands = kTangent ? (kDoutDot ? 4 : 3) : 2;  // Q, dO [, Q_dot [, dO_dot]]
  static constexpr int kDsTiles = kTangent ? 2 : 1;                   // dS^T [, dS_dot^T]
  static constexpr int kStats = kTangent ? 4 : 2;  // lse (log2 units), [lse_dot,] delta [, delta_dot]
  // dQ^T per warpgroup (3. above): its head-dim columns over all the block's keys, or at head dim 64 all columns
  // over its own keys.
  // Or (kDqSplitQueries: WarpgroupTile::bwd_dq_split_queries) all columns of its share of the step's queries over
  // all the block's keys.
  static constexpr bool kDqSplitQueries = WarpgroupTile::bwd_dq_split_queries(kHeadDim_) && kWarpGroups == 2;
  static constexpr bool kDqSplitKeys = kHeadDim == 64 && !kDqSplitQueries;
  static constexpr int kDqCols = kDqSplitKeys || kDqSplitQueries ? kHeadDim : kHeadDim / kWarpGroups;  // the wgmma M
  static constexpr int kDqKeys = kDqSplitKeys ? 64 : kBlockN;                                         // its K
  static constexpr int kDqQueries = kDqSplitQueries ? kBlockM / kWarpGroups : kBlockM;                // its N
  static_assert(kDqCols == 64, "a warpgroup's dQ^T tile is one 64-column wgmma tile");
  static_assert(kStats * kBlockM <= kThreads, "one thread per row statistic of a block");
  using KeyRows = Swizzled128Rows<kBlockN>;  // the key-side tiles (TMA)
  using RowRows = Swizzled128Rows<kBlockM>;  // the query-side tiles (TMA)
  using DsRows = CoreMatrixRows<kBlockM>;    // dS^T as [key][query] (written by the threads)
  static constexpr int kKeyTile = KeyRows::tile_elems(kHeadDim), kRowTile = RowRows::tile_elems(kHeadDim);
  // Floats per staged dQ row, both warpgroups' tiles side by side (conflict-free stores: 4 more than a multiple
  // of 32 banks would do; a row per warpgroup of kDqCols + 4 took 512 bytes more, which the D=128 backward-JVP with
  // a dout tangent does not have beside the swizzle's pad).
  static constexpr int kDqPitch = (kDqSplitQueries ? 1 : kWarpGroups) * kDqCols + 4;  // (split queries: own rows)
  // The backward-JVP with 64-query steps forms its tangents in phases (S^T and dP^T; S_dot^T; dP_dot^T, each its
  // own commit group) and turns each tile into operand fragments as soon as it is final, so that the four score
  // tiles are never all live beside the fragments.
  static constexpr bool kPhased = kTangent && kBlockM == 64;
  // The backward-JVP in one phase stacks Q and Q_dot in one tile of 2 kBlockM rows (each 64-column box Q's rows, then
  // Q_dot's), so that S^T and K Q_dot^T are one product of N = 2 kBlockM: each warpgroup reads its K tile once for
  // both, where two products of N = kBlockM read it twice (the kernel is bound by shared-memory reads: 32-query
  // steps, both score operands from shared memory; docs/performance.md, nineteenth pass).
  static constexpr bool kStackQ = kTangent && !kPhased;
  using RowOperands = OperandTiles<kBlockM, kHeadDim, kStackQ>;  // a query-side buffer: Q, dO, Q_dot, dO_dot
  using QRows = typename RowOperands::Stacked;                     // Q's and Q_dot's layout
  static constexpr int kDsElems = kDsTiles * DsRows::tile_elems(kBlockN);
  static constexpr int kTileElems = kKeyOperands * kKeyTile + 2 * kRowOperands * kRowTile + kDsElems;
  static constexpr int kBarriers = 3;  // the key tiles; each query-side buffer (lagged dQ: six more, kLagBarriers)
  static constexpr int kLagBarriers = 6;  // dS^T full, dS^T empty, query-side empty; two buffers each
  static constexpr int kDqStageFloats = kBlockM * kDqPitch;
  // A step's dQ^T tile staged at the step's end and added (the warpgroups' sum, the atomics) in the next step, under
  // that step's score products (WarpgroupTile::bwd_defer_dq_adds; not in the kernel's deterministic, masked and
  // grouped builds).
  static constexpr bool kDeferAdds = WarpgroupTile::bwd_defer_dq_adds(kHeadDim_, kTangent_, kDoutDot);
  // ... and the next step's copies issued right after the adds' barrier, or after the adds.
  static constexpr bool kCopiesBeforeAdds = WarpgroupTile::bwd_copies_before_adds(kHeadDim_);
  // Each step's dQ^T products in the next step, over the step before's dS^T (WarpgroupTile::bwd_lag_dq; the builds
  // that run it: kBwdLagsDq below): a second dS^T buffer, a copy of the row statistics per warpgroup, and barriers
  // for the dS^T buffers (full, empty) and the query-side buffers (empty).
  // (Each warpgroup adds its own rows or columns of the dQ^T tile: not with dQ^T split over keys.)
  static constexpr bool kLagDq =
      WarpgroupTile::bwd_lag_dq(kHeadDim_, kTangent_, kDoutDot) && kWarpGroups == 2 && !kDqSplitKeys;
  static constexpr int kStatsPerThread = kStats * kBlockM / 128;  // lagged dQ: of its warpgroup's copy
  static_assert(!kLagDq || kStatsPerThread * 128 == kStats * kBlockM, "lagged dQ: whole statistics a thread");
  // The tiles from the first 1024-byte boundary (tma.cuh, swizzled_smem), the row statistics, the dQ stage (rows
  // of 16-byte multiples: float4 reads), the barriers.
  // (lag: with lagged dQ, kLagDq in a build that runs it.)
  static constexpr size_t kSmemBytes(size_t elem, bool lag = false) {
    return kSwizzlePad + (kTileElems + (lag ? kDsElems : 0)) * elem +
           ((lag ? kWarpGroups : 1) * 2 * kStats * kBlockM + kDqStageFloats) * sizeof(float) +
           (kBarriers + (lag ? kLagBarriers : 0)) * sizeof(uint64_t);
  }
  static_assert(kSmemBytes(2, kLagDq) <= 232448, "227 KB of shared memory per CTA");
};

// The tensor maps of the kernel's operands (tma.cuh), kernel parameters, in the order of the tiles.
struct BwdWgMaps {
  CUtensorMap keys[4];  // K, V [, K_dot, V_dot]
  CUtensorMap rows[4];  // Q, dO [, Q_dot [, dO_dot]]
};

// Split key block i of the last wave (BwdWorkspace::tail_first + i, linear over the main launch's grid of
// ceil(len_kv / kBlockN) key blocks by batch positions): its first key and its batch position.
struct TailBlock {
  int n0;
  int64_t b;
};
template <int kBlockN>
__device__ __forceinline__ TailBlock tail_block(const BwdWorkspace& ws, int64_t i, int len_kv) {
  const int n_key_blocks = (len_kv + kBlockN - 1) / kBlockN;
  const int64_t unit = ws.tail_first + i;
  return {static_cast<int>(unit % n_key_blocks) * kBlockN, unit / n_key_blocks};
}

// Whether a build may split its last wave's walks (tile_policy.h, plan_bwd_tail).
template <typename T, typename Tr, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
constexpr bool kBwdTailSplits =
    !kCausal && !kDeterministic && !kGroups && !kMask;
// Whether a build runs each step's dQ^T products in the next step (BwdWgTraits::kLagDq): not the deterministic,
// masked and grouped ones (as the deferred adds), nor the split walks' launch (kTail), a few steps a CTA, where the
// lagged form spilled (392 bytes of the 16-bit backward's 255 registers, none in the main launch).
template <typename Tr, bool kDeterministic, bool kGroups, bool kMask, bool kTail = false>
constexpr bool kBwdLagsDq = Tr::kLagDq && !kDeterministic && !kGroups && !kMask && !kTail;

// kTail: the launch of the split walks (BwdWorkspace::tail_*): CTA i takes steps [chunk (i % parts), + chunk) of key
// block tail_first + i / parts and adds its dK, dV to the fp32 scratch; the main launch's CTAs of those blocks leave
// at once.
template <typename T, typename Tr, bool kCausal, bool kDeterministic, bool kGroups, bool kMask, bool kTail = false>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    sdpa_bwd_wg_kernel(const __grid_constant__ SdpaBwdParams p, const __grid_constant__ BwdWorkspace ws,
                       const __grid_constant__ BwdWgMaps maps) {
  using E = ElemOf<T>;  // what the tiles hold
  constexpr int kHeadDim = Tr::kHeadDim, kStats = Tr::kStats, kRows = Tr::kRowOperands, kDqCols = Tr::kDqCols;
  constexpr bool kTangent = Tr::kTangent, kDoutDot = Tr::kDoutDot;
  constexpr int kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kThreads = Tr::kThreads, kDqPitch = Tr::kDqPitch;
  constexpr int kMt = kBlockM / 8, kKq = kBlockM / 16;  // accumulator column tiles, k-steps of a block
  using KeyRows = typename Tr::KeyRows;
  using RowRows = typename Tr::RowRows;
  using DsRows = typename Tr::DsRows;
  constexpr int kRowTile = Tr::kRowTile, kKeyTile = Tr::kKeyTile;
  constexpr int kDsTile = DsRows::tile_elems(kBlockN);
  constexpr uint32_t kKeyBytes = kKeyTile * sizeof(E), kRowBytes = kRowTile * sizeof(E), kDsBytes = kDsTile * sizeof(E);
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = swizzled_smem(smem_raw);
  E* k_tile = reinterpret_cast<E*>(smem);  // then V [, K_dot, V_dot]
  E* row_tiles = k_tile + Tr::kKeyOperands * kKeyTile;  // [2 buffers][Q, dO [, Q_dot [, dO_dot]]]
  // Each step's dQ^T products in the next step (BwdWgTraits::kLagDq).
  constexpr bool kLag = kBwdLagsDq<Tr, kDeterministic, kGroups, kMask, kTail>;
  E* ds_tile = row_tiles + 2 * kRows * kRowTile;  // dS^T [, then dS_dot^T] (lagged dQ: two such buffers, in turn)
  // [2][kStats][kBlockM] (lagged dQ: one such copy per warpgroup)
  float* stats = reinterpret_cast<float*>(ds_tile + (kLag ? 2 : 1) * Tr::kDsElems);
  // [kBlockM][kDqPitch]: warpgroup w's tile from column kDqCols w.
  float* dq_stage = stats + (kLag ? Tr::kWarpGroups : 1) * 2 * kStats * kBlockM;
  // The key tiles' barrier, the query-side buffers'.
  uint64_t* full = reinterpret_cast<uint64_t*>(dq_stage + Tr::kDqStageFloats);
  // Lagged dQ: each dS^T buffer's full and empty barriers, each query-side buffer's empty one (a warp's arrival each).
  uint64_t* const ds_full = full + Tr::kBarriers;
  uint64_t* const ds_empty = ds_full + 2;
  uint64_t* const rows_empty = ds_empty + 2;

  const int tid = threadIdx.x, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  // The warpgroup index through a shuffle, so that the compiler sees it is the same in the whole warp
  // and keeps the wgmma descriptors derived from it in uniform registers.
  const int wg = __shfl_sync(0xffffffff, tid / 128, 0);
  // Lagged dQ: the warp of thread 0 (through a shuffle, as wg).
  [[maybe_unused]] const bool copier_warp = kLag && __shfl_sync(0xffffffff, tid / 32, 0) == 0;
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  constexpr bool kTailSplits = kBwdTailSplits<T, Tr, kCausal, kDeterministic, kGroups, kMask>;
  static_assert(!kTail || kTailSplits, "the split walks: a build that splits");
  // This CTA's key block (n0, b0): from the grid, or in the split walks' launch from the tail's units.
  const int64_t tail_unit = kTail ? blockIdx.x / ws.tail_parts : 0;
  if constexpr (kTailSplits && !kTail) {  // (a split block: its walk is the split launch's)
    if (ws.tail_first >= 0 && blockIdx.y * static_cast<int64_t>(gridDim.x) + blockIdx.x >= ws.tail_first) return;
  }
  const TailBlock split = kTail ? tail_block<kBlockN>(ws, tail_unit, S) : TailBlock{};
  const int n0 = kTail ? split.n0 : blockIdx.x * kBlockN;
  const int64_t b0 = kTail ? split.b : first_query_of_block<kGroups>(p);  // the key-side position's first query
  if (tid == 0) {
    for (int i = 0; i < Tr::kBarriers; ++i) mbarrier_init(&full[i], 1);
    if constexpr (kLag) {
      // (ds_full: every thread's arrival, with no branch while the dV, dK products run; the others a warp's)
      for (int i = 0; i < Tr::kLagBarriers; ++i) mbarrier_init(&ds_full[i], i < 2 ? kThreads : kThreads / 32);
    }
  }
  __syncthreads();
  // Row statistics in shared memory: lse, then (tangent) lse_dot, delta, delta_dot, or delta.
  // Lagged dQ: each warpgroup copies its own (copy_stats: kStatsPerThread a thread), so that no warpgroup reads what
  // the other wrote.
  float* const my_stats = kLag ? stats + wg * 2 * kStats * kBlockM : stats;
  const int stat_id = kLag ? tid % 128 : tid;
  using StatStager = RowStatStager<kStats, kBlockM, kIsFloat32Half<T>>;
  const StatStager stat(p, b0, stat_id);
  // Lagged dQ: this thread's statistics of a block (kStatsPerThread), straight into shared memory.
  [[maybe_unused]] const auto copy_stats = [&](int buf, int m, int head) {
#pragma unroll
    for (int i = 0; i < Tr::kStatsPerThread; ++i) StatStager::copy(p, b0, stat_id + 128 * i, my_stats, buf, m, head);
    cp_async_commit();
  };
  constexpr int kLse = 0, kLseDot = 1, kDelta = kTangent ? 2 : 1, kDeltaDot = 3;

  const int m_begin = kCausal ? (n0 / kBlockM) * kBlockM : 0;
  const int wg_key0 = 64 * wg, key_w = wg_key0 + 16 * warp;  // within the block
  // attn_mask (the masked build; sdpa_bwd_tc.cuh).
  const BackwardMask<T, 1> mask =
      kMask ? BackwardMask<T, 1>(p, b0, n0, kBlockN, n0 + key_w, S, tid, g) : BackwardMask<T, 1>();
  // The walk over query steps (the row statistics' shared memory is its scratch).
  const BackwardWalk<kGroups> walk = backward_walk<kBlockM, kBlockN, kThreads, kGroups, kDeterministic, kMask>(
      p, ws, mask, b0, n0, m_begin, L, reinterpret_cast<int*>(stats), tid);
  const GroupSteps<kGroups>& steps = walk.steps;
  // The steps this CTA takes, [first_step, n_steps): the whole walk, or a split walk's part (an even first step: the
  // query-side buffers and the statistics' turns start at 0).
  const int part_begin = kTail ? static_cast<int>(blockIdx.x % ws.tail_parts) * ws.tail_chunk : 0;
  const int first_step = kTail ? part_begin : 0;
  const int n_steps = kTail ? min(walk.count, part_begin + ws.tail_chunk) : walk.count;
  ClassesAhead step_classes(
      [&](int s) {
        if constexpr (kMask) return walk.template step_class<kBlockM, kBlockN>(p, mask, n0, s);
        return KeyBlock::kTerms;
      },
      first_step, n_steps);

  // A step's query-side tiles into buffer buf (thread 0 issues; bit buf of `loaded` tells every thread that reads it
  // to wait for them, on the parity in bit buf of `phases`).
  uint32_t loaded = 0, phases = 0;
  auto load_rows = [&](int buf, int step) {
    if (tid == 0) {
      const TmaBatch at = tma_batch<false>(p.q, b0 + steps.head(step));
      mbarrier_arrive_expect_tx(&full[1 + buf], kRows * kRowBytes);
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        E* const tile = row_tiles + buf * kRows * kRowTile + Tr::RowOperands::at(i);
        if (Tr::RowOperands::stacked(i)) {  // (its boxes twice as far apart)
          tma_load_rows<kHeadDim, Tr::QRows::kBoxBytes>(tile, &maps.rows[i], steps.row(step), at, &full[1 + buf]);
        } else {
          tma_load_rows<kHeadDim, RowRows::kBoxBytes>(tile, &maps.rows[i], steps.row(step), at, &full[1 + buf]);
        }
      }
    }
    loaded |= 1u << buf;
  };
  if (tid == 0) {
    const TmaBatch at = tma_batch<kReadKeysByGroup>(p.k, b0);
    mbarrier_arrive_expect_tx(&full[0], Tr::kKeyOperands * kKeyBytes);
#pragma unroll
    for (int i = 0; i < Tr::kKeyOperands; ++i) {
      tma_load_rows<kHeadDim, KeyRows::kBoxBytes>(k_tile + i * kKeyTile, &maps.keys[i], n0, at, &full[0]);
    }
  }
  if (first_step < n_steps) {
    if (step_classes.first_seen()) load_rows(0, first_step);
    if constexpr (kLag) {  // (copied as every step's are: lse taken into log2 units where it is read)
      copy_stats(0, steps.row(first_step), steps.head(first_step));
      cp_async_wait<0>();
    } else {
      stat.store(my_stats, 0, stat.fetch(steps.row(first_step), L));
    }
  }
  mbarrier_wait(&full[0], 0);  // (also with no step: no copy may still be landing when the CTA exits)
  __syncthreads();

  // The end of a step: every thread is done with this step's buffers (and the dS^T tile, and the statistics).
  const auto end_step = [] {
    cp_async_wait<0>();  // (the masked build's staged terms)
    __syncthreads();
  };

  float dk_acc[kHeadDim / 8][4], dv_acc[kHeadDim / 8][4];  // dK, dV or their tangents
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dk_acc[dt][e] = dv_acc[dt][e] = 0.f;
  }
  // The logits' scale (S_dot's too). Float32Half (operand_scales.cuh): it takes Q's and K's powers of two off; the
  // row statistics come in the products' units (RowStatStager; delta, lse_dot, delta_dot as their passes wrote
  // them), and the output factors, formed after the walk (no register held through it), take the rest off.
  float scale_log2 = static_cast<float>(p.scale * M_LOG2E), scale = static_cast<float>(p.scale);
  if constexpr (kIsFloat32Half<T>) {
    scale = ScaleFactors::of(OperandScales::from(p.operand_amax), p.scale, kTangent).logits;
    scale_log2 = scale * static_cast<float>(M_LOG2E);
  }
  const int key_g = n0 + key_w + g;
  // The traits' choice, less the builds that keep their adds in the step: deterministic mode (its turns count one add
  // per query block and key block), the masked and grouped builds.
  constexpr bool kDefer = Tr::kDeferAdds && !kDeterministic && !kMask && !kGroups;

  // 3. below: dQ^T [dq_dot^T], this warpgroup's columns [64 wg, 64 wg + 64) over the block's keys, or
  // (kDqSplitKeys) every column over its keys, or (kDqSplitQueries) every column of its share of the queries.
  constexpr bool kSplit = Tr::kDqSplitKeys, kSplitQ = Tr::kDqSplitQueries;
  constexpr int kDqN = Tr::kDqQueries;
  // The first head-dim column of this warpgroup's dQ^T tile (every column at head dim 64).
  const int dq_col0 = kSplit || kSplitQ ? 0 : kDqCols * wg;
  const int dq_q0 = kSplitQ ? kDqN * wg : 0;  // (split queries: the first query of this warpgroup's share)
  // A step's tile staged as [query][column] (each warpgroup its columns of the stage's rows) ...
  auto stage_dq = [&](const float (&acc)[kDqN / 8][4]) {
    float* stage = kSplitQ ? dq_stage + dq_q0 * kDqPitch : dq_stage + kDqCols * wg;
#pragma unroll
    for (int nt = 0; nt < kDqN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        stage[(nt * 8 + 2 * t + (e & 1)) * kDqPitch + 16 * warp + g + 8 * (e >> 1)] = acc[nt][e];
      }
    }
  };
  // ... and added (query block m of batch position b) to the fp32 buffer in rows of 4 columns: each warpgroup its own
  // tile, or (kSplit) all threads the sum of the warpgroups' tiles.
  auto add_staged_dq = [&](int64_t b, int m, auto&& after_barrier) {
    if constexpr ((kSplit || kDefer) && !kLag) {  // (deferred: also every warp done with the step before)
      __syncthreads();
    } else {
      named_barrier_sync(1 + wg, 128);
    }
    after_barrier();
    const DqTurn<kDeterministic> turn(ws, b, m);
    turn.wait();
    const float* from = kSplit || kSplitQ ? dq_stage : dq_stage + kDqCols * wg;
#pragma unroll
    for (int i = kSplit ? tid : tid % 128; i < kDqN * kDqCols / 4; i += kSplit ? kThreads : 128) {
      const int qi = dq_q0 + i / (kDqCols / 4), c4 = (i % (kDqCols / 4)) * 4;
      if (m + qi < L) {
        float4 x = *reinterpret_cast<const float4*>(from + qi * kDqPitch + c4);
        if constexpr (kSplit) {  // the warpgroups' tiles in their order
#pragma unroll
          for (int w = 1; w < Tr::kWarpGroups; ++w) {
            const float4 y = *reinterpret_cast<const float4*>(from + qi * kDqPitch + w * kDqCols + c4);
            x = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
          }
        }
        atomicAdd(reinterpret_cast<float4*>(ws.dq_accum + (b * p.len_q + m + qi) * kHeadDim + dq_col0 + c4), x);
      }
    }
    turn.pass();
  };
  // kDefer: the query block of the staged tile (lagged dQ: that of the step before the step before, from the walk).
  [[maybe_unused]] int64_t b_prev = 0;
  [[maybe_unused]] int m_prev = 0;
  // 3.'s products into acc over the dS^T [, dS_dot^T] tiles at ds (issued after a wgmma_fence, not committed).
  const auto dq_products = [&](float (&acc)[kDqN / 8][4], const E* ds) {
    const uint32_t ds_keys = smem_addr(ds) + 2 * DsRows::offset(kSplit ? wg_key0 : 0, dq_q0);
    const TileDesc<DsRows, true> ds_n(ds_keys), dsd_n(ds_keys + kDsBytes);
    const uint32_t key_cols = smem_addr(k_tile) + 2 * KeyRows::offset(kSplit ? wg_key0 : 0, dq_col0);
    const TileDesc<KeyRows, true> kt_n(key_cols), kdt_n(key_cols + 2 * kKeyBytes);
#pragma unroll
    for (int kk = 0; kk < Tr::kDqKeys / 16; ++kk) {
      if constexpr (kTangent) {
        wgmma_ss<E, 1, 1, kDqN>(acc, kt_n.at(16 * kk, 0), dsd_n.at(16 * kk, 0), kk > 0);
        wgmma_ss<E, 1, 1, kDqN>(acc, kdt_n.at(16 * kk, 0), ds_n.at(16 * kk, 0), 1);
      } else {
        wgmma_ss<E, 1, 1, kDqN>(acc, kt_n.at(16 * kk, 0), ds_n.at(16 * kk, 0), kk > 0);
      }
    }
  };
  // Lagged dQ: this warp's arrival on a barrier, after every lane's accesses (ordered by the warp's sync); and the
  // parity of the phase in which step s's use of its buffer (dS^T, query-side: s & 1) completes.
  [[maybe_unused]] const auto use_parity = [&](int s) { return static_cast<uint32_t>((s - first_step) >> 1) & 1; };
  [[maybe_unused]] const auto warp_arrive = [&](uint64_t* bar) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(bar);
  };

  for (int step = first_step; step < n_steps; ++step) {
    // The query-side buffer and the row statistics' buffer, in turn.
    const int buf = step & 1, m = steps.row(step);
    const int next = step + 1;
    const int head = steps.head(step);
    const int64_t b = b0 + head;
    if (!kDefer && next < n_steps && step_classes.next_seen()) load_rows(buf ^ 1, next);
    if (loaded >> buf & 1) {  // waited for even where the step turns out hidden, so that the phases stay in step
      mbarrier_wait(&full[1 + buf], phases >> buf & 1);
      phases ^= 1u << buf;
      loaded &= ~(1u << buf);
    }
    const float* stat_s = my_stats + buf * kStats * kBlockM;
    // (lagged dQ: copied at the step's start instead, below)
    const float next_stat = !kLag && next < n_steps ? stat.fetch(steps.row(next), L, steps.head(next)) : 0.f;
    const KeyBlock tile = step_classes.take(step);
    if (tile == KeyBlock::kHidden) {  // no pair of the step is seen: it adds nothing
      skip_step<kDeterministic>(
          ws, b, m, [&] { if (next < n_steps) stat.store(my_stats, buf ^ 1, next_stat); }, end_step);
      continue;
    }
    if constexpr (kLag) {
      // The next step's row statistics, into their other buffer (last read in the step before, before its closing
      // barrier), before this step's products are issued (no thread waits or branches while they run: ptxas would
      // serialise every wgmma of the kernel).
      if (next < n_steps) copy_stats(buf ^ 1, steps.row(next), steps.head(next));
    }
    // wgmma descriptors of the tiles: this warpgroup's rows of the key-side tiles, the query-side tiles.
    using KeyMajor = TileDesc<KeyRows, false>;
    using RowMajor = TileDesc<RowRows, false>;
    using RowMnMajor = TileDesc<RowRows, true>;
    using QMajor = TileDesc<typename Tr::QRows, false>;
    using QMnMajor = TileDesc<typename Tr::QRows, true>;
    const uint32_t key_s = smem_addr(k_tile) + 2 * KeyRows::offset(wg_key0, 0);
    const uint32_t row_s = smem_addr(row_tiles + buf * kRows * kRowTile);
    // Key-side operand i at i tiles from the first; query-side operand i at Tr::RowOperands::at(i).
    const auto row_at = [&](int i) { return row_s + static_cast<uint32_t>(sizeof(E)) * Tr::RowOperands::at(i); };
    const KeyMajor k_d(key_s), v_d(key_s + kKeyBytes), kd_d(key_s + 2 * kKeyBytes), vd_d(key_s + 3 * kKeyBytes);
    const QMajor q_d(row_at(0));  // (in the maps' order: each descriptor is a shuffle, and the order its schedule)
    const RowMajor do_d(row_at(1));
    const QMajor qd_d(row_at(2));
    const RowMajor dod_d(row_at(3));

    // 1. Score products [and tangents]; the first k-step overwrites the accumulators.
    constexpr bool kPhased = Tr::kPhased;
    static_assert(!(kPhased && kMask), "the phased backward-JVP has no mask terms");
    constexpr bool kTangentNow = kTangent && !kPhased;  // the tangent tiles formed with S^T, dP^T
    float st[kMt][4], dpt[kMt][4], sdt[kTangent ? kMt : 1][4], dpdt[kTangent ? kMt : 1][4];
    // (Tr::kStackQ: K_dot Q^T, added to S_dot^T once the group is done)
    [[maybe_unused]] float sdt_part[Tr::kStackQ ? kMt : 1][4];
    wgmma_fence();
    if constexpr (Tr::kStackQ) {  // [S^T | K Q_dot^T] = K [Q; Q_dot]^T, K_dot Q^T beside it
      wgmma_product_rule_stacked<E, kBlockM, kHeadDim>(st, sdt, sdt_part, k_d, kd_d, q_d);
    } else {
      wgmma_product_rule<E, kBlockM, kHeadDim, kTangentNow, true>(st, sdt, k_d, kd_d, q_d, qd_d);  // S^T
    }
    wgmma_commit();
    // dP^T = V dO^T
    wgmma_product_rule<E, kBlockM, kHeadDim, kTangentNow, kDoutDot>(dpt, dpdt, v_d, vd_d, do_d, dod_d);
    wgmma_commit();
    if constexpr (kPhased) {  // S_dot^T = K_dot Q^T + K Q_dot^T
      wgmma_product_tangent<E, kBlockM, kHeadDim, true>(sdt, k_d, kd_d, q_d, qd_d);
      wgmma_commit();
    }
    if constexpr (kDefer) {  // the step before's dQ^T tile while these run; then the next step's copies
      const auto load_next = [&] {
        if (next < n_steps) load_rows(buf ^ 1, next);
      };
      if constexpr (kLag) {
        // The next step's query-side tiles once both warpgroups have run the step before's products (the first warp
        // waits, all its lanes: no thread's own branch while the products run); then the tile staged in the step
        // before (the dQ^T of the one before that), after this warpgroup's barrier.
        if (next < n_steps) {
          if (copier_warp && step > first_step) mbarrier_wait(&rows_empty[buf ^ 1], use_parity(step - 1));
          load_rows(buf ^ 1, next);
        }
        if (step >= first_step + 2) add_staged_dq(b0 + steps.head(step - 2), steps.row(step - 2), [] {});
      } else if (step == first_step) {
        load_next();
      } else if constexpr (Tr::kCopiesBeforeAdds) {
        add_staged_dq(b_prev, m_prev, load_next);
      } else {
        add_staged_dq(b_prev, m_prev, [] {});
        load_next();
      }
    }

    // P^T [and P_dot^T] while the dP products run; masked pairs are exact zeros. Blocks inside the
    // visible region (all of them but the edges and, causal, the diagonal) skip the test.
    wgmma_wait<1>();  // S^T [, S_dot^T] (phased: S^T and dP^T; S_dot^T may still run)
    fence_operands(st);
    if constexpr (kPhased) fence_operands(dpt);
    else if constexpr (kTangent) fence_operands(sdt);
    if constexpr (Tr::kStackQ) {
      fence_operands(sdt_part);
#pragma unroll
      for (int nt = 0; nt < kMt; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) sdt[nt][e] += sdt_part[nt][e];
      }
    }
    if constexpr (kMask) {
      if constexpr (kTangent) add_mask_tangent<T, true>(p, b, sdt, n0 + key_w, m, L, S, lane);
      mask.fold(p, head, tile, 0, st, n0 + key_w, m, L, S, lane, [&](int nt, int e) {
        if constexpr (kTangent) sdt[nt][e] = 0.f;
      });
    }
    auto probabilities = [&](auto masked) {
#pragma unroll
      for (int nt = 0; nt < kMt; ++nt) {
        float2 lse2 = *reinterpret_cast<const float2*>(stat_s + kLse * kBlockM + nt * 8 + 2 * t);
        if constexpr (kLag) lse2 = make_float2(StatStager::in_log2(lse2.x), StatStager::in_log2(lse2.y));
        [[maybe_unused]] float2 lsed2 = {0.f, 0.f};
        if constexpr (kTangent) lsed2 = *reinterpret_cast<const float2*>(stat_s + kLseDot * kBlockM + nt * 8 + 2 * t);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = nt * 8 + 2 * t + (e & 1), key = key_g + (e >> 1) * 8;
          const bool visible = !masked || (key < S && m + qi < L && (!kCausal || key <= m + qi));
          const float pt = visible ? fast_exp2(fmaf(st[nt][e], scale_log2, -((e & 1) ? lse2.y : lse2.x))) : 0.f;
          st[nt][e] = pt;
          if constexpr (kTangentNow) sdt[nt][e] = pt * fmaf(sdt[nt][e], scale, -((e & 1) ? lsed2.y : lsed2.x));
        }
      }
    };
    if (n0 + kBlockN > S || m + kBlockM > L || (kCausal && n0 + kBlockN - 1 > m)) {
      probabilities(std::true_type{});
    } else {
      probabilities(std::false_type{});
    }
    // As A fragments of the block's k-steps (16 queries each): P^T (the backward, or with a dout
    // tangent), P_dot^T, dS^T, dS_dot^T.
    constexpr bool kNeedP = !kTangent || kDoutDot;
    uint32_t pa[kNeedP ? kKq : 1][4], dsa[kKq][4];
    uint32_t pda[kTangent ? kKq : 1][4], dsda[kTangent ? kKq : 1][4];
    if constexpr (kPhased) {
      // dP_dot^T = V_dot dO^T [+ V dO_dot^T] while P_dot^T is formed: P_dot^T = P^T (S_dot^T scale - lse_dot), as
      // fragments at once; its part of dS_dot^T, P_dot^T (dP^T - delta), in its place; then dS^T = P^T (dP^T - delta)
      // in dP^T's place.
      wgmma_fence();
      wgmma_product_tangent<E, kBlockM, kHeadDim, kDoutDot>(dpdt, v_d, vd_d, do_d, dod_d);
      wgmma_commit();
      wgmma_wait<1>();  // S_dot^T
      fence_operands(sdt);
#pragma unroll
      for (int nt = 0; nt < kMt; ++nt) {
        const float2 lsed2 = *reinterpret_cast<const float2*>(stat_s + kLseDot * kBlockM + nt * 8 + 2 * t);
#pragma unroll
        for (int e = 0; e < 4; ++e) sdt[nt][e] = st[nt][e] * fmaf(sdt[nt][e], scale, -((e & 1) ? lsed2.y : lsed2.x));
      }
#pragma unroll
      for (int kq = 0; kq < kKq; ++kq) c_to_a<T>(pda[kq], sdt[2 * kq], sdt[2 * kq + 1]);
#pragma unroll
      for (int nt = 0; nt < kMt; ++nt) {
        const float2 delta2 = *reinterpret_cast<const float2*>(stat_s + kDelta * kBlockM + nt * 8 + 2 * t);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float dp_minus = dpt[nt][e] - ((e & 1) ? delta2.y : delta2.x);
          sdt[nt][e] *= dp_minus;
          dpt[nt][e] = st[nt][e] * dp_minus;
        }
      }
#pragma unroll
      for (int kq = 0; kq < kKq; ++kq) c_to_a<T>(dsa[kq], dpt[2 * kq], dpt[2 * kq + 1]);
      wgmma_wait<0>();  // dP_dot^T: dS_dot^T = P_dot^T (dP^T - delta) + P^T (dP_dot^T - delta_dot)
      fence_operands(dpdt);
#pragma unroll
      for (int nt = 0; nt < kMt; ++nt) {
        const float2 deltad2 = *reinterpret_cast<const float2*>(stat_s + kDeltaDot * kBlockM + nt * 8 + 2 * t);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          dpdt[nt][e] = sdt[nt][e] + st[nt][e] * (dpdt[nt][e] - ((e & 1) ? deltad2.y : deltad2.x));
        }
      }
#pragma unroll
      for (int kq = 0; kq < kKq; ++kq) {
        if constexpr (kNeedP) c_to_a<T>(pa[kq], st[2 * kq], st[2 * kq + 1]);
        c_to_a<T>(dsda[kq], dpdt[2 * kq], dpdt[2 * kq + 1]);
      }
    } else {
      wgmma_wait<0>();
      fence_operands(dpt);
      if constexpr (kTangent) fence_operands(dpdt);
      // dS^T = P^T (dP^T - delta) [, dS_dot^T = P_dot^T (dP^T - delta) + P^T (dP_dot^T - delta_dot)].
#pragma unroll
      for (int nt = 0; nt < kMt; ++nt) {
        const float2 delta2 = *reinterpret_cast<const float2*>(stat_s + kDelta * kBlockM + nt * 8 + 2 * t);
        [[maybe_unused]] float2 deltad2 = {0.f, 0.f};
        if constexpr (kTangent) {
          deltad2 = *reinterpret_cast<const float2*>(stat_s + kDeltaDot * kBlockM + nt * 8 + 2 * t);
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float dp_minus = dpt[nt][e] - ((e & 1) ? delta2.y : delta2.x);
          if constexpr (kTangent) {
            dpdt[nt][e] = sdt[nt][e] * dp_minus + st[nt][e] * (dpdt[nt][e] - ((e & 1) ? deltad2.y : deltad2.x));
          }
          dpt[nt][e] = st[nt][e] * dp_minus;
        }
      }
      if constexpr (kMask) {  // a float mask's gradient is dS (its tangent dS_dot), where asked
        if constexpr (kTangent) write_mask_grad<T, true>(p, b, dpdt, n0 + key_w, m, L, S, lane);
        else write_mask_grad<T, true>(p, b, dpt, n0 + key_w, m, L, S, lane);
      }
#pragma unroll
      for (int kq = 0; kq < kKq; ++kq) {
        if constexpr (kNeedP) c_to_a<T>(pa[kq], st[2 * kq], st[2 * kq + 1]);
        c_to_a<T>(dsa[kq], dpt[2 * kq], dpt[2 * kq + 1]);
        if constexpr (kTangent) {
          c_to_a<T>(pda[kq], sdt[2 * kq], sdt[2 * kq + 1]);
          c_to_a<T>(dsda[kq], dpdt[2 * kq], dpdt[2 * kq + 1]);
        }
      }
    }

    // Lagged dQ, with no wgmma in flight (above): this step's dS^T buffer once both warpgroups' dQ^T products of the
    // step before the last have read it, and the step before's dS^T (for 3.) once both have written it.
    const bool dq_now = !kLag || step > first_step;
    if constexpr (kLag) {
      if (step >= first_step + 2) mbarrier_wait(&ds_empty[buf], use_parity(step - 2));
    }
    // 2. dV += P^T dO, dK += dS^T Q [dv_dot += P_dot^T dO + P^T dO_dot, dk_dot += dS_dot^T Q + dS^T Q_dot].
    const QMnMajor q_n(row_at(0));
    const RowMnMajor do_n(row_at(1));
    const QMnMajor qd_n(row_at(2));
    const RowMnMajor dod_n(row_at(3));
    wgmma_fence();
#pragma unroll
    for (int kq = 0; kq < kKq; ++kq) {
      if constexpr (kTangent) {
        wgmma_rs<E, 1, kHeadDim>(dv_acc, pda[kq], do_n.at(16 * kq, 0), 1);
        if constexpr (kDoutDot) wgmma_rs<E, 1, kHeadDim>(dv_acc, pa[kq], dod_n.at(16 * kq, 0), 1);
        wgmma_rs<E, 1, kHeadDim>(dk_acc, dsda[kq], q_n.at(16 * kq, 0), 1);
        wgmma_rs<E, 1, kHeadDim>(dk_acc, dsa[kq], qd_n.at(16 * kq, 0), 1);
      } else {
        wgmma_rs<E, 1, kHeadDim>(dv_acc, pa[kq], do_n.at(16 * kq, 0), 1);
        wgmma_rs<E, 1, kHeadDim>(dk_acc, dsa[kq], q_n.at(16 * kq, 0), 1);
      }
    }
    wgmma_commit();
    // Meanwhile, stage dS^T [and dS_dot^T] (the A fragments' quarters: rows g, g + 8 x columns 2t, 2t + 8); lagged
    // dQ: into this step's buffer.
    E* const ds_step = ds_tile + (kLag ? buf * Tr::kDsElems : 0);
#pragma unroll
    for (int kq = 0; kq < kKq; ++kq) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int at = DsRows::offset(key_w + g + 8 * (i & 1), 16 * kq + 8 * (i >> 1) + 2 * t);
        *reinterpret_cast<uint32_t*>(ds_step + at) = dsa[kq][i];
        if constexpr (kTangent) *reinterpret_cast<uint32_t*>(ds_step + kDsTile + at) = dsda[kq][i];
      }
    }
    if (!kLag && next < n_steps) stat.store(my_stats, buf ^ 1, next_stat);
    fence_proxy_async();
    if constexpr (kLag) {
      mbarrier_arrive(&ds_full[buf]);  // this step's dS^T written (every thread)
      if (dq_now) mbarrier_wait(&ds_full[buf ^ 1], use_parity(step - 1));  // the step before's, by both
    } else {
      __syncthreads();
    }

    // 3. dQ^T [dq_dot^T] (above); lagged: the step before's, over its dS^T buffer once both warpgroups have written
    // it. In the first step there is none: the products run anyway, over whatever that buffer holds, and their tile is
    // dropped (a step's products whether or not: a branch around them costs the kernel registers).
    float dq_acc[kDqN / 8][4];
    wgmma_fence();
    dq_products(dq_acc, kLag ? ds_tile + (buf ^ 1) * Tr::kDsElems : ds_tile);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(dq_acc);
    fence_operands(dk_acc);
    fence_operands(dv_acc);
    // The A registers of 2 stay untouched until its wgmmas are done.
    fence_operands(dsa);
    if constexpr (kNeedP) fence_operands(pa);
    if constexpr (kTangent) {
      fence_operands(pda);
      fence_operands(dsda);
    }
    if constexpr (kLag) {
      // This step's dS^T written, its query-side buffer and (dQ^T) the step before's dS^T buffer read, with no wgmma in
      // flight; the stage rewritten once this warpgroup's adds at the step's start have read it; added in the next
      // step.
      warp_arrive(&rows_empty[buf]);
      if (dq_now) warp_arrive(&ds_empty[buf ^ 1]);
      cp_async_wait<0>();  // the next step's row statistics (read after the next step's barrier)
      named_barrier_sync(1 + wg, 128);
      stage_dq(dq_acc);  // (the first step's dropped tile too: the next step adds none)
      continue;
    }
    stage_dq(dq_acc);
    if constexpr (kDefer) {
      // Added in the next step, or after the last. No closing barrier: the adds' barrier in the next step, which each
      // warp reaches only once done with this step (its dQ^T products waited for above), comes before that step
      // writes its dS^T rows (at head dim 128 the other warpgroup's dQ^T products read them too), the dQ stage and
      // (copies) this step's query-side buffer; the statistics' other buffer is written after this step's barrier.
      b_prev = b;
      m_prev = m;
      continue;
    }
    add_staged_dq(b, m, [] {});
    end_step();
  }

  if constexpr (kLag) {  // the tile staged in the last step, then the last step's
    if (n_steps > first_step) {
      const int last = n_steps - 1;
      if (last > first_step) add_staged_dq(b0 + steps.head(last - 1), steps.row(last - 1), [] {});
      float dq_acc[kDqN / 8][4];
      mbarrier_wait(&ds_full[last & 1], use_parity(last));
      wgmma_fence();
      dq_products(dq_acc, ds_tile + (last & 1) * Tr::kDsElems);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(dq_acc);
      named_barrier_sync(1 + wg, 128);
      stage_dq(dq_acc);
      add_staged_dq(b0 + steps.head(last), steps.row(last), [] {});
    }
  } else if constexpr (kDefer) {
    if (n_steps > first_step) add_staged_dq(b_prev, m_prev, [] {});
  }
  if constexpr (kMask) {
    if (mask.all_hidden()) pass_dq_turns<kDeterministic>(ws, b0, steps);
  }
  float dk_factor = scale, dv_factor = 1.f;
  if constexpr (kIsFloat32Half<T>) {
    const ScaleFactors f = ScaleFactors::of(OperandScales::from(p.operand_amax), p.scale, kTangent);
    dk_factor = f.dk;
    dv_factor = f.dv;
  }
  if constexpr (kTail) {  // the part's sums into the scratch: [split key block][dK, dV][key][column]
    float* const part = ws.tail_part + tail_unit * 2 * kBlockN * kHeadDim;
    add_acc_rows<kHeadDim>(part, kHeadDim, dk_acc, key_w, S - n0, dk_factor, lane);
    add_acc_rows<kHeadDim>(part + kBlockN * kHeadDim, kHeadDim, dv_acc, key_w, S - n0, dv_factor, lane);
    return;
  }
  const MatrixView& dk = kTangent ? p.dk_dot : p.dk;
  const MatrixView& dv = kTangent ? p.dv_dot : p.dv;
  write_key_rows<T, kHeadDim, kGroups>(ws, dk, b0, dk_acc, n0 + key_w, S, dk_factor, lane);
  write_key_rows<T, kHeadDim, kGroups>(ws, dv, b0, dv_acc, n0 + key_w, S, dv_factor, lane);
}

// The split walks' sums (BwdWorkspace::tail_part, fp32, dK already scaled) written out as the main launch writes its
// key blocks' rows: one CTA per split key block and gradient (y: dK, dV), 8 columns a thread.
template <typename T, int kHeadDim, int kBlockN>
__global__ void __launch_bounds__(256) sdpa_bwd_tail_finish_kernel(const MatrixView dk, const MatrixView dv,
                                                                   const __grid_constant__ BwdWorkspace ws,
                                                                   int len_kv) {
  constexpr int kChunks = kHeadDim / 8;  // per row
  const TailBlock split = tail_block<kBlockN>(ws, blockIdx.x, len_kv);
  const int n0 = split.n0;
  const MatrixView& dst = blockIdx.y == 0 ? dk : dv;
  T* const rows = batch_base<T>(dst, split.b);
  const float* const src = ws.tail_part + (blockIdx.x * 2 + blockIdx.y) * kBlockN * kHeadDim;
  for (int i = threadIdx.x; i < kBlockN * kChunks; i += 256) {
    const int r = i / kChunks, col = (i % kChunks) * 8;
    if (n0 + r >= len_kv) break;  // (rows in order)
    store_scaled_chunk8(rows + static_cast<int64_t>(n0 + r) * dst.row_stride + col, src + r * kHeadDim + col, 1.f);
  }
}

// The CTAs of `kernel` that run at once on the device (its SMs times the CTAs an SM holds): the slots of a wave.
template <typename Kernel>
int64_t wave_slots(Kernel kernel, int threads, size_t smem) {
  int device = 0, sms = 0, per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem);
  return static_cast<int64_t>(sms) * per_sm;
}

// The kernel alone; the caller zeroes ws.dq_accum before and finishes dQ after. False (nothing launched) when TMA
// cannot address one of the operands (tma.cuh, encode_rows_map).
template <typename T, typename Tr, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
bool launch_sdpa_bwd_wg(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  using E = ElemOf<T>;
  BwdWgMaps maps;
  // What the copies read: a 16-bit operand as it is; float32 (Float32Half) its scaled float16 copy, formed into the
  // scratch.
  MatrixView keys[4] = {p.k, p.v, p.k_dot, p.v_dot};
  MatrixView rows[4] = {p.q, p.dout, p.q_dot, p.dout_dot};
  if constexpr (kIsFloat32Half<T>) {
    static_assert(!kGroups && !kMask, "float32 in the plain build");
    if (!ScaledCopies::can_form(p)) return false;
    // In the scratch's order (scaled_copies.cuh): Q, Q_dot, K, V, K_dot, V_dot, dO, dO_dot, those the pass has; the
    // first six may be the tangent pass's already (p.tangent_copies_formed).
    struct Slot {
      MatrixView* view;
      bool query_side, present;
      int slot;  // operand_scales.cuh
    };
    constexpr bool kTan = Tr::kTangent;
    const Slot slots[8] = {{&rows[0], true, true, kSlotQ},          {&rows[2], true, kTan, kSlotQDot},
                           {&keys[0], false, true, kSlotK},         {&keys[1], false, true, kSlotV},
                           {&keys[2], false, kTan, kSlotKDot},      {&keys[3], false, kTan, kSlotVDot},
                           {&rows[1], true, true, kSlotDout},       {&rows[3], true, Tr::kDoutDot, kSlotDoutDot}};
    ScaledCopies copies(p.scratch, p.batch, Tr::kHeadDim, p.operand_amax);
    for (int i = 0; i < 8; ++i) {
      const Slot& s = slots[i];
      if (!s.present) continue;
      const bool formed = kTan && p.tangent_copies_formed && i < 6;
      *s.view = copies.add(*s.view, s.query_side ? p.len_q : p.len_kv, s.slot, formed);
    }
    copies.launch(stream);
  }
  bool ok = true;
  for (int i = 0; i < Tr::kKeyOperands && ok; ++i) {
    ok = encode_rows_map<E>(&maps.keys[i], keys[i], p.len_kv, Tr::kHeadDim, p.batch, kReadKeysByGroup, Tr::kBlockN);
  }
  for (int i = 0; i < Tr::kRowOperands && ok; ++i) {
    ok = encode_rows_map<E>(&maps.rows[i], rows[i], p.len_q, Tr::kHeadDim, p.batch, false, Tr::kBlockM);
  }
  if (!ok) return false;
  constexpr size_t smem = Tr::kSmemBytes(sizeof(E), kBwdLagsDq<Tr, kDeterministic, kGroups, kMask>);
  const dim3 grid(static_cast<unsigned>((p.len_kv + Tr::kBlockN - 1) / Tr::kBlockN),
                  static_cast<unsigned>(kv_batches(p)));
  // The last wave's walks split where the plan says so and the binding gave the scratch (tile_policy.h).
  BwdWorkspace run = ws;
  constexpr bool kTailSplits = kBwdTailSplits<T, Tr, kCausal, kDeterministic, kGroups, kMask>;
  if constexpr (kTailSplits) {
    if (ws.tail_part != nullptr && !ws.key_side_adds) {
      static const int64_t slots =
          wave_slots(sdpa_bwd_wg_kernel<T, Tr, kCausal, kDeterministic, kGroups, kMask>, Tr::kThreads, smem);
      const BwdTailPlan plan = plan_bwd_tail(static_cast<int64_t>(grid.x) * grid.y, slots,
                                             static_cast<int>((p.len_q + Tr::kBlockM - 1) / Tr::kBlockM));
      const size_t bytes = static_cast<size_t>(plan.units) * 2 * Tr::kBlockN * Tr::kHeadDim * sizeof(float);
      if (plan.parts > 1 && bytes <= ws.tail_part_bytes) {
        run.tail_first = plan.first;
        run.tail_parts = plan.parts;
        run.tail_chunk = plan.chunk;
        cudaMemsetAsync(ws.tail_part, 0, bytes, stream);
      }
    }
  }
  launch_with_smem(sdpa_bwd_wg_kernel<T, Tr, kCausal, kDeterministic, kGroups, kMask>, grid, Tr::kThreads, smem, stream,
                   p, run, maps);
  if constexpr (kTailSplits) {
    if (run.tail_first >= 0) {
      const int64_t units = static_cast<int64_t>(grid.x) * grid.y - run.tail_first;
      constexpr size_t tail_smem = Tr::kSmemBytes(sizeof(E), kBwdLagsDq<Tr, kDeterministic, kGroups, kMask, true>);
      launch_with_smem(sdpa_bwd_wg_kernel<T, Tr, kCausal, kDeterministic, kGroups, kMask, true>,
                       dim3(static_cast<unsigned>(units * run.tail_parts)), Tr::kThreads, tail_smem, stream, p, run,
                       maps);
      const dim3 finish_grid(static_cast<unsigned>(units), 2);
      sdpa_bwd_tail_finish_kernel<T, Tr::kHeadDim, Tr::kBlockN><<<finish_grid, 256, 0, stream>>>(
          Tr::kTangent ? p.dk_dot : p.dk, Tr::kTangent ? p.dv_dot : p.dv, run, static_cast<int>(p.len_kv));
    }
  }
  return true;
}

}  // namespace theria::kernels::cuda
