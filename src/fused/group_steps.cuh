// The query blocks a backward CTA streams past its key block. Under grouped-query attention a CTA serves one
// key-side position, shared by `group` consecutive query heads, and streams each head's query blocks in turn,
// so that dK and dV sum over the group in registers (no expanded K, V, no atomics on dK, dV). Step s is block
// s % per_head of head s / per_head; the heads' rows, statistics and dQ buffers lie head_stride, len_q and
// len_q x head dim apart (first_query_batch: the group's query positions are consecutive heads).
#pragma once

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

}  // namespace theria::kernels::cuda
