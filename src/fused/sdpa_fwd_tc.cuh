// Fused forward on tensor cores (docs/derivatives.md, F): one CTA per (batch position, block of
// kBlockM query rows); each warp owns 16 rows. Key/value tiles of kBlockN rows stream through a
// double-buffered cp.async pipeline; S = Q K^T and O += P V run as m16n8k16 MMAs with fp32
// accumulation; the online softmax works in log2 units (exp2 of logits pre-multiplied by
// scale * log2(e)). Writes out and the row log-sum-exp (natural log, fp32). No L x S buffer.
// The same kernel serves three passes (FwdPass): the forward, the JVP, and the tangent pass of the
// backward-JVP, which reads the saved out and lse instead of recomputing them (for 16-bit operands at head
// dims 64 and 128 the forward, the tangent pass and the JVP run the warpgroup kernels of sdpa_fwd_wg.cuh and
// sdpa_tangent_wg.cuh instead, where TMA can address the operands: launch_tc.cuh chooses). Tile shapes:
// tile_policy.h (FwdTile).
#pragma once

#include "fused/attn_mask.cuh"
#include "fused/dq_finish.cuh"
#include "fused/mask_grad.cuh"
#include "fused/kernel_templates.h"
#include "fused/mma.cuh"
#include "fused/staged_bias.cuh"
#include "fused/tile_io.cuh"
#include "fused/tile_policy.h"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <cmath>

namespace theria::kernels::cuda {

// kWarps warps per CTA, each owning kMTiles 16-row MMA tiles: a key/value fragment loaded from
// shared memory feeds kMTiles MMAs. Q fragments stay in registers when they fit beside the
// accumulators, else they are reloaded from shared memory for every key block. With kTangent the
// same kernel is the JVP (docs/derivatives.md, J): Q_dot, K_dot, V_dot tiles stream beside Q, K, V;
// S_dot = Q_dot K^T + Q K_dot^T, W = P * scale * S_dot, and three accumulators share the rescaling:
// O = P V, O_dot = W V + P V_dot, and the row sum of W (lse_dot times the row sum of P).
// FwdPass::kTangent knows the softmax already (saved lse): P = exp(S - lse) needs no running max or
// rescaling, O is not accumulated, and O_dot = W V + P V_dot - lse_dot * out with the saved out:
// five products per block instead of six, and one accumulator fewer.
// kParts: parts per operand (mma.cuh's MmaOperand; 2 for float32 split into bfloat16). The tile shape: FwdTile.
template <int kHeadDim_, FwdPass kPass_, int kParts_>
struct FwdTraits {
  using Tile = FwdTile<kHeadDim_, kPass_, kParts_>;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = Tile::kWarps;
  static constexpr int kMTiles = Tile::kMTiles;
  static constexpr FwdPass kPass = kPass_;
  static constexpr bool kTangent = kPass != FwdPass::kOut;         // tangents stream beside Q, K, V
  static constexpr bool kGivenStats = kPass == FwdPass::kTangent;  // out and lse are inputs
  static constexpr int kParts = kParts_;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = 16 * kMTiles * kWarps;
  static constexpr int kBlockN = Tile::kBlockN;
  static constexpr int kOperands = kTangent ? 2 : 1;  // (Q, K, V) and, for the JVP, their tangents
  static constexpr bool kQInRegs = kHeadDim * kMTiles * kOperands * kParts <= 128;
  using Rows = PaddedRows<kHeadDim, kParts>;  // Q, K, V tiles
  static constexpr int kStride = Rows::kStride;
  static constexpr int kSmemElems = kOperands * (kBlockM + 4 * kBlockN) * kStride;  // Q, K x 2, V x 2 (each twice)
};

template <typename T, typename Tr, bool kCausal, bool kGroups, bool kMask>
__global__ void __launch_bounds__(Tr::kThreads) sdpa_fwd_tc_kernel(const SdpaFwdParams p) {
  constexpr int kHeadDim = Tr::kHeadDim, kMTiles = Tr::kMTiles;
  constexpr bool kTangent = Tr::kTangent, kGivenStats = Tr::kGivenStats;
  constexpr int kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kStride = Tr::kStride, kThreads = Tr::kThreads;
  using Rows = typename Tr::Rows;
  using E = ElemOf<T>;  // the operand tiles' element (T, or bfloat16 parts of float32)
  constexpr int kTile = (kBlockM + 4 * kBlockN) * kStride;  // one operand set: Q, K x 2, V x 2
  extern __shared__ __align__(16) unsigned char smem[];
  E* q_tile = reinterpret_cast<E*>(smem);
  E* k_tiles = q_tile + kBlockM * kStride;       // two buffers of kBlockN rows
  E* v_tiles = k_tiles + 2 * kBlockN * kStride;  // two buffers of kBlockN rows
  E* qd_tile = q_tile + kTile;                   // the tangents' set (kTangent only)
  E* kd_tiles = k_tiles + kTile;
  E* vd_tiles = v_tiles + kTile;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  const int m0 = blockIdx.x * kBlockM;
  const int64_t b = blockIdx.y;
  const T* q = batch_base<const T>(p.q, b);
  const T* k = key_base<const T, kGroups>(p.k, b);
  const T* v = key_base<const T, kGroups>(p.v, b);
  const T* qd = kTangent ? batch_base<const T>(p.q_dot, b) : nullptr;
  const T* kd = kTangent ? key_base<const T, kGroups>(p.k_dot, b) : nullptr;
  const T* vd = kTangent ? key_base<const T, kGroups>(p.v_dot, b) : nullptr;

  const int kv_end = kCausal ? min(S, m0 + kBlockM) : S;
  const int n_blocks = (kv_end + kBlockN - 1) / kBlockN;
  auto load_kv = [&](int buf, int row0) {
    load_rows_async<T, kBlockN, kHeadDim, kThreads>(k_tiles + buf * kBlockN * kStride, k, p.k.row_stride, row0, S, tid);
    load_rows_async<T, kBlockN, kHeadDim, kThreads>(v_tiles + buf * kBlockN * kStride, v, p.v.row_stride, row0, S, tid);
    if constexpr (kTangent) {
      load_rows_async<T, kBlockN, kHeadDim, kThreads>(kd_tiles + buf * kBlockN * kStride, kd, p.k_dot.row_stride, row0,
                                                      S, tid);
      load_rows_async<T, kBlockN, kHeadDim, kThreads>(vd_tiles + buf * kBlockN * kStride, vd, p.v_dot.row_stride, row0,
                                                      S, tid);
    }
  };

  // attn_mask (the masked build): a per-key mask (key padding) is taken a block of keys at a time, its terms staged
  // in shared memory past the tiles; a mask that varies by query is classified a block at a time from its tile map,
  // the walk bounded by its first and last visible blocks, and a hidden block's keys are not even loaded.
  ForwardMask<T, kBlockM, kBlockN, kThreads> mask(p, b, m0, n_blocks,
                                                  reinterpret_cast<float*>(smem + Tr::kSmemElems * sizeof(E)), tid, S,
                                                  kMask);
  const int nb_begin = mask.range.begin, nb_end = mask.range.end;
  // A dense 16-bit bias: its blocks copied beside K and V, past the key terms (StagedBias), where two CTAs still fit.
  using Bias = StagedBias<T, kBlockM, kBlockN, kThreads>;
  constexpr size_t kUnstagedSmem = Tr::kSmemElems * sizeof(E) + kBlockN * sizeof(float);
  constexpr bool kStageBias = kMask && kUnstagedSmem + Bias::kSmemBytes <= kStagedBiasMaxSmem;
  const Bias bias(p, kStageBias ? mask.base : nullptr);
  T* const bias_tiles = reinterpret_cast<T*>(smem + kUnstagedSmem);

  load_rows_async<T, kBlockM, kHeadDim, kThreads>(q_tile, q, p.q.row_stride, m0, L, tid);
  if constexpr (kTangent) load_rows_async<T, kBlockM, kHeadDim, kThreads>(qd_tile, qd, p.q_dot.row_stride, m0, L, tid);
  if (nb_begin < nb_end) {
    load_kv(0, nb_begin * kBlockN);
    if constexpr (kStageBias) bias.load(bias_tiles, p, mask.base, 0, nb_begin, m0, L, S, tid);
  }
  cp_async_commit();
  // The backward-JVP's dQ-tangent buffer, these rows zeroed while the first copies land
  // (SdpaFwdParams::zero_dq_accum).
  if constexpr (kGivenStats) {
    if (p.zero_dq_accum != nullptr) zero_dq_rows<kBlockM, kHeadDim, kThreads>(p.zero_dq_accum, b, m0, L, tid);
  }
  cp_async_wait<0>();
  __syncthreads();

  const int warp_row0 = warp * 16 * kMTiles;  // first row of this warp's tiles within the block
  constexpr int kQRegs = Tr::kQInRegs ? kHeadDim / 16 : 1;
  Frag<T> q_frag[Tr::kQInRegs ? kMTiles : 1][kQRegs];
  Frag<T> qd_frag[Tr::kQInRegs && kTangent ? kMTiles : 1][kQRegs];
  if constexpr (Tr::kQInRegs) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int kk = 0; kk < kHeadDim / 16; ++kk) {
        ld_frag<Rows>(q_frag[mt][kk], a_frag_addr<Rows>(q_tile, warp_row0 + mt * 16, kk * 16, lane));
        if constexpr (kTangent) {
          ld_frag<Rows>(qd_frag[mt][kk], a_frag_addr<Rows>(qd_tile, warp_row0 + mt * 16, kk * 16, lane));
        }
      }
    }
  }

  float o_acc[kGivenStats ? 1 : kMTiles][kGivenStats ? 1 : kHeadDim / 8][4];
  float od_acc[kTangent ? kMTiles : 1][kTangent ? kHeadDim / 8 : 1][4];
  // row_max: the running max, or with given statistics the saved lse (both log2 units).
  // row_w sums W as computed (lse_dot). The tangent pass also sums W as rounded for the W V product (row_w16),
  // so that out_dot = W V - rowsum(W) out cancels nothing between a rounded and an unrounded W: the backward-JVP
  // subtracts rowsum(dout * out_dot) from dP_dot, and with one visible key the two agree to the last bit.
  float row_max[kMTiles][2], row_sum[kMTiles][2], row_w[kMTiles][2], row_w16[kMTiles][2];
  float* lse = static_cast<float*>(p.lse) + b * p.len_q;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if constexpr (!kGivenStats) o_acc[mt][dt][e] = 0.f;
        if constexpr (kTangent) od_acc[mt][dt][e] = 0.f;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_max[mt][r] = -INFINITY;
      if constexpr (kGivenStats) {
        // A row with no visible key (lse -inf) sees only masked logits: exp2(-inf - 0) = 0.
        const int row = m0 + warp_row0 + mt * 16 + g + 8 * r;
        const float l = row < L ? lse[row] : 0.f;
        row_max[mt][r] = l == -INFINITY ? 0.f : l * static_cast<float>(M_LOG2E);
      }
      row_sum[mt][r] = row_w[mt][r] = row_w16[mt][r] = 0.f;
    }
  }
  const float scale_log2 = static_cast<float>(p.scale * M_LOG2E);
  const float scale = static_cast<float>(p.scale);
  for (int nb = nb_begin; nb < nb_end; ++nb) {
    const int buf = (nb - nb_begin) & 1;
    if (nb + 1 < nb_end && (!kMask || mask.next_seen())) {
      load_kv(buf ^ 1, (nb + 1) * kBlockN);
      if constexpr (kStageBias) bias.load(bias_tiles, p, mask.base, buf ^ 1, nb + 1, m0, L, S, tid);
      cp_async_commit();
    }
    KeyBlock key_block = KeyBlock::kTerms;
    if constexpr (kMask) {
      key_block = mask.classify(p, nb, nb_end, tid, S);
      if (key_block == KeyBlock::kHidden) {  // no pair of the block is seen: nothing to add
        cp_async_wait<0>();
        __syncthreads();
        continue;
      }
    }
    const E* k_tile = k_tiles + buf * kBlockN * kStride;
    const E* v_tile = v_tiles + buf * kBlockN * kStride;
    const E* kd_tile = kd_tiles + buf * kBlockN * kStride;
    const E* vd_tile = vd_tiles + buf * kBlockN * kStride;

    float s[kMTiles][kBlockN / 8][4];
    float sd[kTangent ? kMTiles : 1][kTangent ? kBlockN / 8 : 1][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[mt][nt][e] = 0.f;
          if constexpr (kTangent) sd[mt][nt][e] = 0.f;
        }
      }
    }
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      Frag<T> qa[kMTiles], qda[kTangent ? kMTiles : 1];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        if constexpr (Tr::kQInRegs) {
          qa[mt] = q_frag[mt][kk];
          if constexpr (kTangent) qda[mt] = qd_frag[mt][kk];
        } else {
          ld_frag<Rows>(qa[mt], a_frag_addr<Rows>(q_tile, warp_row0 + mt * 16, kk * 16, lane));
          if constexpr (kTangent) ld_frag<Rows>(qda[mt], a_frag_addr<Rows>(qd_tile, warp_row0 + mt * 16, kk * 16, lane));
        }
      }
#pragma unroll
      for (int np = 0; np < kBlockN / 16; ++np) {
        Frag<T> kb;
        ld_frag<Rows>(kb, b_frag_addr_nk<Rows>(k_tile, np * 16, kk * 16, lane));
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma<T>(s[mt][2 * np], qa[mt], kb, 0);
          mma<T>(s[mt][2 * np + 1], qa[mt], kb, 1);
        }
        if constexpr (kTangent) {
          Frag<T> kdb;
          ld_frag<Rows>(kdb, b_frag_addr_nk<Rows>(kd_tile, np * 16, kk * 16, lane));
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            mma<T>(sd[mt][2 * np], qda[mt], kb, 0);
            mma<T>(sd[mt][2 * np + 1], qda[mt], kb, 1);
            mma<T>(sd[mt][2 * np], qa[mt], kdb, 0);
            mma<T>(sd[mt][2 * np + 1], qa[mt], kdb, 1);
          }
        }
      }
    }

    // Online softmax in log2 units; keys past S, and under the causal mask keys past the row, are -inf.
    const int n0 = nb * kBlockN;
    const bool needs_mask = n0 + kBlockN > S || (kCausal && n0 + kBlockN - 1 > m0);
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      const int row_g = m0 + warp_row0 + mt * 16 + g;  // rows row_g and row_g + 8
      if constexpr (kMask) {
        // A float mask's tangent first, so that a pair the mask hides keeps a zero tangent.
        if constexpr (kTangent) add_mask_tangent<T, false>(p, b, sd[mt], row_g - g, n0, L, S, lane);
        const auto hidden = [&](int nt, int e) {
          if constexpr (kTangent) sd[mt][nt][e] = 0.f;
        };
        if (kStageBias && key_block == KeyBlock::kTerms && bias.covers(nb, S)) {
          bias.fold(bias_tiles, buf, 1.f / scale, s[mt], row_g - g - m0, L - m0, lane, hidden);
        } else {
          mask.fold(p, key_block, s[mt], row_g - g, n0, L, S, lane, hidden);
        }
      }
      if (needs_mask) {
        for_masked_pairs<kCausal, kBlockN / 8>(n0, row_g, S, t, [&](int nt, int e) {
          s[mt][nt][e] = -INFINITY;
          if constexpr (kTangent) sd[mt][nt][e] = 0.f;
        });
      }
      if constexpr (kGivenStats) {
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[mt][nt][e] = fast_exp2(fmaf(s[mt][nt][e], scale_log2, -row_max[mt][e >> 1]));
            const float w = sd[mt][nt][e] * s[mt][nt][e] * scale;  // W = P * scale * S_dot
            sd[mt][nt][e] = rounded_to<T>(w);
            row_w[mt][e >> 1] += w;
            row_w16[mt][e >> 1] += sd[mt][nt][e];
          }
        }
      } else {
        // What was accumulated, rescaled to row r's new max (factor alpha).
        const auto rescale = [&](int r, float alpha) {
          row_sum[mt][r] *= alpha;
          if constexpr (kTangent) row_w[mt][r] *= alpha;
#pragma unroll
          for (int dt = 0; dt < kHeadDim / 8; ++dt) {
            if constexpr (!kGivenStats) {
              o_acc[mt][dt][2 * r] *= alpha;
              o_acc[mt][dt][2 * r + 1] *= alpha;
            }
            if constexpr (kTangent) {
              od_acc[mt][dt][2 * r] *= alpha;
              od_acc[mt][dt][2 * r + 1] *= alpha;
            }
          }
        };
        // Row r's probabilities (one FFMA an element: logit * scale*log2(e) - running max) and their row sums.
        const auto exponentials = [&](int r, float m_use) {
#pragma unroll
          for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int e = 2 * r + c;
              s[mt][nt][e] = fast_exp2(fmaf(s[mt][nt][e], scale_log2, -m_use));
              row_sum[mt][r] += s[mt][nt][e];  // this thread's part; reduced at the end
              if constexpr (kTangent) {
                // W = P * scale * S_dot. (The JVP's out_dot feeds no cancellation, so it keeps one row sum
                // of W: the second one of the tangent pass cost the JVP 5-10 %.)
                sd[mt][nt][e] *= s[mt][nt][e] * scale;
                row_w[mt][r] += sd[mt][nt][e];
              }
            }
          }
        };
        // (A row that has seen only -inf keeps a zero state: mma.cuh, move_row_max.)
        if constexpr (Tr::Tile::jvp_skips_rescale(kMask)) {
          // The JVP, whose rescale is twice the forward's (out and out_dot), where it pays (tile_policy.h): the max
          // from the raw logits and the rescale skipped where no row of the warp moved its max, as the warpgroup
          // kernels do.
          // (m_use taken again from the moved max after the vote: held across it, the D=32 kernels spilled.)
          float alpha[2], m_use;
#pragma unroll
          for (int r = 0; r < 2; ++r) alpha[r] = move_row_max(s[mt], r, scale_log2, row_max[mt][r], m_use);
          if (any_rescale(alpha)) {
#pragma unroll
            for (int r = 0; r < 2; ++r) rescale(r, alpha[r]);
          }
#pragma unroll
          for (int r = 0; r < 2; ++r) exponentials(r, max_in_use(row_max[mt][r]));
        } else {
          // The max from the pairs scaled and the rescale always: the row-scaled max and the skipped rescale measured
          // 5 % slower in the forward at head dim 32 (docs/performance.md, sixteenth pass).
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            float m_use;
            rescale(r, move_row_max<kBlockN / 8, false>(s[mt], r, scale_log2, row_max[mt][r], m_use));
            exponentials(r, m_use);
          }
        }
      }
    }

#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      Frag<T> pa[kMTiles], wa[kTangent ? kMTiles : 1];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        c_to_a<T>(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
        if constexpr (kTangent) c_to_a<T>(wa[mt], sd[mt][2 * kk], sd[mt][2 * kk + 1]);
      }
#pragma unroll
      for (int dp = 0; dp < kHeadDim / 16; ++dp) {
        Frag<T> vb;
        ld_frag_trans<Rows>(vb, b_frag_addr_kn<Rows>(v_tile, kk * 16, dp * 16, lane));
        if constexpr (!kGivenStats) {
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            mma<T>(o_acc[mt][2 * dp], pa[mt], vb, 0);
            mma<T>(o_acc[mt][2 * dp + 1], pa[mt], vb, 1);
          }
        }
        if constexpr (kTangent) {
          Frag<T> vdb;
          ld_frag_trans<Rows>(vdb, b_frag_addr_kn<Rows>(vd_tile, kk * 16, dp * 16, lane));
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            mma<T>(od_acc[mt][2 * dp], wa[mt], vb, 0);
            mma<T>(od_acc[mt][2 * dp + 1], wa[mt], vb, 1);
            mma<T>(od_acc[mt][2 * dp], pa[mt], vdb, 0);
            mma<T>(od_acc[mt][2 * dp + 1], pa[mt], vdb, 1);
          }
        }
      }
    }
    cp_async_wait<0>();
    __syncthreads();
  }

  T* out = batch_base<T>(p.out, b);
  T* out_dot = kTangent ? batch_base<T>(p.out_dot, b) : nullptr;
  float* lse_dot = kTangent ? static_cast<float*>(p.lse_dot) + b * p.len_q : nullptr;
  // The tangent pass's share of delta_dot, rowsum(dout * out_dot), from the unrounded out_dot.
  float* dout_out_dot = kGivenStats && p.dout_out_dot != nullptr ? static_cast<float*>(p.dout_out_dot) + b * p.len_q
                                                                 : nullptr;
  // and (where asked) delta, rowsum(dout * out), from the saved out.
  float* dout_out = dout_out_dot != nullptr && p.dout_out != nullptr ? static_cast<float*>(p.dout_out) + b * p.len_q
                                                                     : nullptr;
  const T* dout = dout_out_dot != nullptr ? batch_base<const T>(p.dout, b) : nullptr;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // With given statistics P is already normalised: the sums need no division.
      const float l = kGivenStats ? 1.f : quad_sum(row_sum[mt][r]);
      const float lw = kTangent ? quad_sum(row_w[mt][r]) : 0.f;
      const float lw16 = kGivenStats ? quad_sum(row_w16[mt][r]) : 0.f;
      const int row = m0 + warp_row0 + mt * 16 + g + 8 * r;
      const bool in_range = row < L;  // (no early exit: the quad below sums across lanes)
      const float inv = l == 0.f ? 0.f : 1.f / l;  // a NaN sum stays NaN
      const float ld = lw * inv;                    // lse_dot
      [[maybe_unused]] const float ld16 = lw16 * inv;  // the same from the rounded W
      T* out_row = out + static_cast<int64_t>(row) * p.out.row_stride;
      const T* dout_row = dout != nullptr ? dout + static_cast<int64_t>(row) * p.dout.row_stride : nullptr;
      // this thread's parts of rowsum(dout * out_dot), rowsum(dout * out)
      [[maybe_unused]] float row_term = 0.f, out_term = 0.f;
      if (in_range) {
#pragma unroll
        for (int dt = 0; dt < kHeadDim / 8; ++dt) {
          T* out_pair = out_row + dt * 8 + 2 * t;
          float o0, o1;
          if constexpr (kGivenStats) {
            load2<T>(out_pair, o0, o1);
          } else {
            o0 = o_acc[mt][dt][2 * r] * inv;
            o1 = o_acc[mt][dt][2 * r + 1] * inv;
            store2<T>(out_pair, o0, o1);
          }
          if constexpr (kTangent) {
            const float ld_out = kGivenStats ? ld16 : ld;
            const float od0 = od_acc[mt][dt][2 * r] * inv - ld_out * o0;
            const float od1 = od_acc[mt][dt][2 * r + 1] * inv - ld_out * o1;
            store2<T>(out_dot + static_cast<int64_t>(row) * p.out_dot.row_stride + dt * 8 + 2 * t, od0, od1);
            if (dout_row != nullptr) {
              float d0, d1;
              load2<T>(dout_row + dt * 8 + 2 * t, d0, d1);
              row_term = fmaf(od0, d0, fmaf(od1, d1, row_term));
              out_term = fmaf(o0, d0, fmaf(o1, d1, out_term));
            }
          }
        }
      }
      if constexpr (kGivenStats) {
        row_term = quad_sum(row_term);
        if (dout_out != nullptr) out_term = quad_sum(out_term);
        if (in_range && dout_out_dot != nullptr && t == 0) dout_out_dot[row] = row_term;
        if (in_range && dout_out != nullptr && t == 0) dout_out[row] = out_term;
      }
      if (in_range && t == 0) {
        if constexpr (!kGivenStats) {
          lse[row] = l == 0.f ? -INFINITY : (row_max[mt][r] + log2f(l)) * static_cast<float>(M_LN2);
        }
        if constexpr (kTangent) lse_dot[row] = ld;
      }
    }
  }
}

// The mma.sync kernel alone (launch_tc.cuh's launch_sdpa_fwd_tc chooses it).
template <typename T, int kHeadDim, bool kCausal, FwdPass kPass, bool kGroups, bool kMask>
void launch_fwd_tc_kernel(const SdpaFwdParams& p, cudaStream_t stream) {
  using Tr = FwdTraits<kHeadDim, kPass, kPartsOf<T>>;
  // + the key terms and, for a dense 16-bit bias, its two staged blocks
  size_t smem = Tr::kSmemElems * sizeof(ElemOf<T>) + (kMask ? Tr::kBlockN * sizeof(float) : 0);
  using Bias = StagedBias<T, Tr::kBlockM, Tr::kBlockN, Tr::kThreads>;
  if constexpr (kMask) {
    if (smem + Bias::kSmemBytes <= kStagedBiasMaxSmem && bias_rows_copyable(p.mask)) smem += Bias::kSmemBytes;
  }
  const dim3 grid(static_cast<unsigned>((p.len_q + Tr::kBlockM - 1) / Tr::kBlockM), static_cast<unsigned>(p.batch));
  launch_with_smem(sdpa_fwd_tc_kernel<T, Tr, kCausal, kGroups, kMask>, grid, Tr::kThreads, smem, stream, p);
}

}  // namespace theria::kernels::cuda
