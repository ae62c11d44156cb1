// The query blocks a backward CTA streams past its key block. Under grouped-query attention a CTA serves one
// key-side position, shared by `group` consecutive query heads, and streams each head's query blocks in turn,
// so that dK and dV sum over the group in registers (no expanded K, V, no atomics on dK, dV). Step s is block
// s % per_head of head s / per_head; the heads' rows, statistics and dQ buffers lie head_stride, len_q and
// len_q x head dim apart (first_query_batch: the group's query positions are consecutive heads).
#pragma once

#include "fused/attn_mask.cuh"
#include "fused/dq_finish.cuh"
#include "fused/launch.h"
#include "kernels/sdpa_params.h"
#include "kernels/sdpa_scalar.h"

namespace theria::kernels::cuda {

// kGroups false (the plain kernels): one head, and the steps are the query blocks themselves.
template <bool kGroups>
struct GroupSteps {
  int m_begin, block_m, group, per_head, count;

  // Each head's query rows [m_begin, m_end) (a tile map can bound them: visible_query_rows).
  __device__ __forceinline__ GroupSteps(const SdpaFwdParams& p, int m_begin_, int block_m_, int m_end)
      : m_begin(m_begin_), block_m(block_m_), group(kGroups ? static_cast<int>(p.group) : 1) {
    per_head = m_begin < m_end ? (m_end - m_begin + block_m - 1) / block_m : 0;
    count = per_head * group;
  }
  // The query head (0 .. group - 1) and the first row of step s (s < count).
  __device__ __forceinline__ int head(int s) const { return kGroups && group > 1 ? s / per_head : 0; }
  __device__ __forceinline__ int row(int s) const { return m_begin + (s - head(s) * per_head) * block_m; }
};

// The first query position of the key-side position a backward CTA serves (blockIdx.y).
template <bool kGroups>
__device__ __forceinline__ int64_t first_query_of_block(const SdpaFwdParams& p) {
  return kGroups ? first_query_batch(p, blockIdx.y) : static_cast<int64_t>(blockIdx.y);
}

// A backward CTA's walk over the query steps past its keys [n0, n0 + kBlockN), as the three backward kernels take it:
// under a mask that varies by query bounded by the tile map's first and last visible steps (visible_query_rows;
// `scratch`, two ints of shared memory, is the CTA's row statistics before it writes them), the deterministic turns of
// the steps left out passed first; no step where the mask hides every key of the block. Every thread calls it.
template <bool kGroups>
struct BackwardWalk {
  GroupSteps<kGroups> steps;
  int count;  // the steps to take

  // Step s's class in the tile map of a mask that varies by query (the masked build), for ClassesAhead to read a step
  // ahead: a hidden step is skipped, its rows not loaded. (The other builds' steps are all KeyBlock::kTerms: the
  // kernels' lambdas say so without naming the walk, so that they capture nothing.)
  template <int kBlockM, int kBlockN, class Mask>
  __device__ __forceinline__ KeyBlock step_class(const SdpaFwdParams& p, const Mask& mask, int n0, int s) const {
    return mask.template step_block<kBlockM, kBlockN>(p, steps.head(s), steps.row(s), n0);
  }
};
template <int kBlockM, int kBlockN, int kThreads, bool kGroups, bool kDeterministic, bool kMask, class Mask>
__device__ __forceinline__ BackwardWalk<kGroups> backward_walk(const SdpaFwdParams& p, const BwdWorkspace& ws,
                                                               const Mask& mask, int64_t b0, int n0, int m_begin,
                                                               int len_q, int* scratch, int tid) {
  const int heads = kGroups ? static_cast<int>(p.group) : 1;
  const RowRange rows =
      visible_query_rows<kBlockM, kBlockN, kThreads>(p.mask, mask.tiles, heads, n0, m_begin, len_q, scratch, tid);
  const GroupSteps<kGroups> steps(p, rows.begin, kBlockM, rows.end);
  pass_dq_turns_outside<kDeterministic && kMask>(ws, b0, steps.group, m_begin, rows.begin, rows.end, len_q, kBlockM);
  return {steps, mask.all_hidden() ? 0 : steps.count};
}

}  // namespace theria::kernels::cuda
