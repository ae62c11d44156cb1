// Explicit backward and backward-JVP on CPU (docs/derivatives.md, B and BJ).
//
// P is rebuilt from the saved lse, never stored. Three passes, all deterministic:
//   1. row terms   delta = rowsum(dout * out)       [and delta_dot = rowsum(dout_dot*out + dout*out_dot)]
//   2. per query-row block: dq     += scale * ds k                [dq_dot += scale (ds_dot k + ds k_dot)]
//                           and ds [ds_dot] itself where a float mask requires grad (its gradient)
//   3. per key block:       dv     += p dout,  dk += scale ds q   [and their tangents]
// Passes 2 and 3 rebuild the same per-pair terms through pair_terms() (kernels/sdpa_scalar.h,
// shared with the CUDA SIMT kernels), so dq and dk/dv never need atomics.
#include "explicit/cpu_kernels.h"
#include "explicit/cpu_tile.h"

#include <ATen/Parallel.h>

namespace theria::kernels::cpu {
namespace {

template <typename T, bool kTangent>
void row_terms(const SdpaBwdParams& p) {
  at::parallel_for(0, p.batch * p.len_q, 256, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / p.len_q, i = bi % p.len_q;
      const T* dout_i = row<T>(p.dout, b, i);
      const T* out_i = row<T>(p.out, b, i);
      static_cast<T*>(p.delta)[bi] = dot(dout_i, out_i, p.dim_v);
      if constexpr (kTangent) {
        static_cast<T*>(p.delta_dot)[bi] =
            dot(row<T>(p.dout_dot, b, i), out_i, p.dim_v) + dot(dout_i, row<T>(p.out_dot, b, i), p.dim_v);
      }
    }
  });
}

template <typename T, bool kTangent>
void dq_pass(const SdpaBwdParams& p) {
  const int64_t E = p.dim_qk;
  const T scale = static_cast<T>(p.scale);
  const int64_t blocks_m = (p.len_q + kBlockM - 1) / kBlockM;
  at::parallel_for(0, p.batch * blocks_m, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks_m, i0 = (task % blocks_m) * kBlockM;
      for (int64_t i = i0; i < std::min(i0 + kBlockM, p.len_q); ++i) {
        T* dq_i = row<T>(p.dq, b, i);
        T* dq_dot_i = kTangent ? row<T>(p.dq_dot, b, i) : nullptr;
        std::fill(dq_i, dq_i + E, T(0));
        if constexpr (kTangent) std::fill(dq_dot_i, dq_dot_i + E, T(0));
        for (int64_t j = 0; j < visible_end(p, i); ++j) {
          const auto t = pair_terms<T, kTangent>(p, b, i, j);
          store_mask_grad<T>(p, b, i, j, kTangent ? t.ds_dot : t.ds);
          axpy(dq_i, scale * t.ds, row<T>(p.k, b, j), E);
          if constexpr (kTangent) {
            axpy(dq_dot_i, scale * t.ds_dot, row<T>(p.k, b, j), E);
            axpy(dq_dot_i, scale * t.ds, row<T>(p.k_dot, b, j), E);
          }
        }
      }
    }
  });
}

template <typename T, bool kTangent>
void dkdv_pass(const SdpaBwdParams& p) {
  const int64_t E = p.dim_qk, Ev = p.dim_v;
  const T scale = static_cast<T>(p.scale);
  const int64_t blocks_n = (p.len_kv + kBlockN - 1) / kBlockN;
  // One task per key-side position and key block; under grouped-query attention its keys collect the terms
  // of every query head of their group (consecutive query positions b0 .. b0 + group - 1).
  at::parallel_for(0, kv_batches(p) * blocks_n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = first_query_batch(p, task / blocks_n), j0 = (task % blocks_n) * kBlockN;
      for (int64_t j = j0; j < std::min(j0 + kBlockN, p.len_kv); ++j) {
        T* dk_j = row<T>(p.dk, b, j);
        T* dv_j = row<T>(p.dv, b, j);
        std::fill(dk_j, dk_j + E, T(0));
        std::fill(dv_j, dv_j + Ev, T(0));
        T* dk_dot_j = kTangent ? row<T>(p.dk_dot, b, j) : nullptr;
        T* dv_dot_j = kTangent ? row<T>(p.dv_dot, b, j) : nullptr;
        if constexpr (kTangent) {
          std::fill(dk_dot_j, dk_dot_j + E, T(0));
          std::fill(dv_dot_j, dv_dot_j + Ev, T(0));
        }
        for (int64_t bq = b; bq < b + p.group; ++bq) {
          for (int64_t i = first_query_seeing(p, j); i < p.len_q; ++i) {
            const auto t = pair_terms<T, kTangent>(p, bq, i, j);
            axpy(dv_j, t.p, row<T>(p.dout, bq, i), Ev);
            axpy(dk_j, scale * t.ds, row<T>(p.q, bq, i), E);
            if constexpr (kTangent) {
              axpy(dv_dot_j, t.p_dot, row<T>(p.dout, bq, i), Ev);
              axpy(dv_dot_j, t.p, row<T>(p.dout_dot, bq, i), Ev);
              axpy(dk_dot_j, scale * t.ds_dot, row<T>(p.q, bq, i), E);
              axpy(dk_dot_j, scale * t.ds, row<T>(p.q_dot, bq, i), E);
            }
          }
        }
      }
    }
  });
}

template <typename T, bool kTangent>
void run(const SdpaBwdParams& p) {
  row_terms<T, kTangent>(p);
  dq_pass<T, kTangent>(p);
  dkdv_pass<T, kTangent>(p);
}

}  // namespace

template <typename T>
void sdpa_bwd(const SdpaBwdParams& params) {
  if (params.with_tangent()) {
    run<T, true>(params);
  } else {
    run<T, false>(params);
  }
}

template void sdpa_bwd<float>(const SdpaBwdParams&);
template void sdpa_bwd<double>(const SdpaBwdParams&);

}  // namespace theria::kernels::cpu
