// Explicit forward and JVP on CPU, one task per (batch, block of kBlockM query rows), streaming
// tiles of kBlockN keys with an online softmax (running max m, running sum l). The JVP adds two
// accumulators, both rescaled with the output accumulator:
//   acc_dot = sum_j p_j (s_dot_j v_j + v_dot_j),   acc_lse = sum_j p_j s_dot_j,
// so that lse_dot = acc_lse / l and out_dot = acc_dot / l - lse_dot * out  (docs/derivatives.md, J).
#include "explicit/cpu_kernels.h"
#include "explicit/cpu_tile.h"

#include <ATen/Parallel.h>

#include <vector>

namespace theria::kernels::cpu {
namespace {

template <typename T, bool kTangent>
void fwd_block(const SdpaFwdParams& p, int64_t b, int64_t i0, int64_t i1) {
  const int64_t E = p.dim_qk, Ev = p.dim_v, rows = i1 - i0;
  std::vector<T> m(rows, neg_inf<T>()), l(rows, 0), acc(rows * Ev, 0), s(kBlockN);
  std::vector<T> acc_dot(kTangent ? rows * Ev : 0, 0), acc_lse(kTangent ? rows : 0, 0);
  std::vector<T> s_dot(kTangent ? kBlockN : 0);

  const int64_t kv_end = visible_end(p, i1 - 1);
  for (int64_t j0 = 0; j0 < kv_end; j0 += kBlockN) {
    const int64_t j1 = std::min(j0 + kBlockN, kv_end);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r;
      const int64_t jr = std::min(j1, visible_end(p, i));
      if (jr <= j0) continue;  // the whole tile is masked for this row: no change to its state
      const T* q_i = row<T>(p.q, b, i);
      T tile_max = neg_inf<T>();
      for (int64_t j = j0; j < jr; ++j) {
        s[j - j0] = logit<T>(p, b, i, j, dot(q_i, row<T>(p.k, b, j), E));
        tile_max = nan_max(tile_max, s[j - j0]);
        if constexpr (kTangent) {
          s_dot[j - j0] = logit_tangent<T>(p, b, i, j, q_i, row<T>(p.k, b, j));
        }
      }
      const T m_new = nan_max(m[r], tile_max);
      // While every logit seen is -inf the row has no mass yet: keep the state as it is.
      const bool empty = (m_new == neg_inf<T>());
      const T alpha = empty ? T(1) : std::exp(m[r] - m_new);
      T* acc_r = acc.data() + r * Ev;
      l[r] *= alpha;
      for (int64_t e = 0; e < Ev; ++e) acc_r[e] *= alpha;
      if constexpr (kTangent) {
        acc_lse[r] *= alpha;
        for (int64_t e = 0; e < Ev; ++e) acc_dot[r * Ev + e] *= alpha;
      }
      for (int64_t j = j0; j < jr; ++j) {
        const T pj = empty ? T(0) : std::exp(s[j - j0] - m_new);
        l[r] += pj;
        axpy(acc_r, pj, row<T>(p.v, b, j), Ev);
        if constexpr (kTangent) {
          acc_lse[r] += pj * s_dot[j - j0];
          axpy(acc_dot.data() + r * Ev, pj * s_dot[j - j0], row<T>(p.v, b, j), Ev);
          axpy(acc_dot.data() + r * Ev, pj, row<T>(p.v_dot, b, j), Ev);
        }
      }
      m[r] = m_new;
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    T* out_i = row<T>(p.out, b, i);
    T& lse_i = static_cast<T*>(p.lse)[b * p.len_q + i];
    // No mass (no visible key, or every logit -inf, as under a mask that hides the whole row): zeros and
    // lse = -inf, as PyTorch's math SDPA (its safe softmax). A NaN anywhere in the row flows through the division.
    const bool no_mass = (l[r] == T(0));
    const T fill = T(0);
    for (int64_t e = 0; e < Ev; ++e) out_i[e] = no_mass ? fill : acc[r * Ev + e] / l[r];
    lse_i = no_mass ? neg_inf<T>() : m[r] + std::log(l[r]);
    if constexpr (kTangent) {
      T* out_dot_i = row<T>(p.out_dot, b, i);
      T& lse_dot_i = static_cast<T*>(p.lse_dot)[b * p.len_q + i];
      lse_dot_i = no_mass ? fill : acc_lse[r] / l[r];
      for (int64_t e = 0; e < Ev; ++e) {
        out_dot_i[e] = no_mass ? fill : acc_dot[r * Ev + e] / l[r] - lse_dot_i * out_i[e];
      }
    }
  }
}

template <typename T, bool kTangent>
void run(const SdpaFwdParams& p) {
  const int64_t blocks_m = (p.len_q + kBlockM - 1) / kBlockM;
  at::parallel_for(0, p.batch * blocks_m, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks_m, i0 = (task % blocks_m) * kBlockM;
      fwd_block<T, kTangent>(p, b, i0, std::min(i0 + kBlockM, p.len_q));
    }
  });
}

}  // namespace

template <typename T>
void sdpa_fwd(const SdpaFwdParams& params) {
  if (params.with_tangent()) {
    run<T, true>(params);
  } else {
    run<T, false>(params);
  }
}

template void sdpa_fwd<float>(const SdpaFwdParams&);
template void sdpa_fwd<double>(const SdpaFwdParams&);

}  // namespace theria::kernels::cpu
