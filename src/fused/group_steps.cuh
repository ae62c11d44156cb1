// The query blocks a backward CTA streams past its key block. Under grouped-query attention a CTA serves one
// key-side position, shared by `group` consecutive query heads, and streams each head's query blocks in turn,
// so that dK and dV sum over the group in registers (no expanded K, V, no atomics on dK, dV). Step s is block
// s % per_head of head s / per_head; the heads' rows, statistics and dQ buffers lie head_stride, len_q and
// len_q x head dim apart (first_query_batch: the group's query positions are consecutive heads).
#pragma once

#include "kernels/sdpa_params.h"
#include "kernels/sdpa_scalar.h"

namespace theria::kernels::cuda {

struct GroupSteps {
  int m_begin, block_m, group, per_head, count;

  __device__ __forceinline__ GroupSteps(const SdpaFwdParams& p, int m_begin_, int block_m_)
      : m_begin(m_begin_), block_m(block_m_), group(static_cast<int>(p.group)) {
    const int L = static_cast<int>(p.len_q);
    per_head = m_begin < L ? (L - m_begin + block_m - 1) / block_m : 0;
    count = per_head * group;
  }
  // The query head (0 .. group - 1) and the first row of step s (s < count).
  __device__ __forceinline__ int head(int s) const { return group == 1 ? 0 : s / per_head; }
  __device__ __forceinline__ int row(int s) const { return m_begin + (s - head(s) * per_head) * block_m; }
};

}  // namespace theria::kernels::cuda
