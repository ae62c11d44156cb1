// The tangent pass (FwdPass::kTangent of sdpa_fwd_tc.cuh: out_dot and lse_dot from the saved out and
// lse, the first step of the backward-JVP and so of the double backward; docs/derivatives.md, BJ) on
// Hopper warpgroup MMAs, head dims 64 and 128. With kOnline (below) it is also the JVP there.
//
// One CTA per (batch position, block of 64 queries per warpgroup: WarpgroupTile): each warpgroup keeps out_dot
// (64 x head dim, fp32) in registers while blocks of kBlockN keys (K, V, K_dot, V_dot; WarpgroupTile) stream
// through two buffers, each filled by TMA copies (tma.cuh: one thread issues them, every thread waits on the
// buffer's mbarrier) while the other is read. Per block and warpgroup:
//   1. S = Q K^T and S_dot = Q_dot K^T + Q K_dot^T, both operands K-major from shared memory;
//   2. P = exp(S - lse) with the saved lse (no running max, no rescaling) and W = P * scale * S_dot,
//      whose row sums give lse_dot;
//   3. out_dot += W V + P V_dot: A from registers (W, P as mma fragments), B = V, V_dot MN-major.
// At the end out_dot -= lse_dot * out with the saved out. Tiles are in the TMA's 128-byte swizzle
// (Swizzled128Rows); a view TMA cannot address (tangent_wg_maps returns false) runs the mma.sync
// pass.
// kOnline: the JVP in one pass, with no saved out and lse: P = exp(S - m) against a running row max m, as the
// forward's online softmax, with out += P V a third product beside the two of 3., out, out_dot and the row sums
// of P and W rescaled when m moves, and out, lse written at the end. One pass instead of the forward and then the
// tangent pass shares S, its exponentials and the K, V copies between out and out_dot. (The forward in this form, with the online softmax between the two products and nothing to overlap
// it with, measured slower than the mma.sync forward: docs/performance.md; sdpa_fwd_wg.cuh pipelines it.)
// float32 at precision "high" (T = Float32Half): as in sdpa_fwd_wg.cuh, the copies read the six operands' float16
// copies scaled by powers of two, formed into the scratch first (scaled_copies.cuh); the powers are folded into the
// logits' scale, the exponentials and the output factors (operand_scales.cuh).
#pragma once

#include "fused/attn_mask.cuh"
#include "fused/dq_finish.cuh"
#include "fused/mask_grad.cuh"
#include "fused/kernel_templates.h"
#include "fused/mbarrier.cuh"
#include "fused/mma.cuh"
#include "fused/scaled_copies.cuh"
#include "fused/tile_io.cuh"
#include "fused/tile_policy.h"
#include "fused/tma.cuh"
#include "fused/wgmma.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <cmath>

namespace theria::kernels::cuda {

template <int kHeadDim_, bool kMask, bool kOnline_>
struct TangentWgTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kOnline = kOnline_;
  static constexpr int kWarpGroups = WarpgroupTile::tangent_warpgroups(kHeadDim, kMask);
  static constexpr int kThreads = 128 * kWarpGroups;
  static constexpr int kBlockM = 64 * kWarpGroups;            // queries per CTA, 64 per warpgroup (wgmma M)
  static constexpr int kBlockN = WarpgroupTile::kTangentBlockN;  // keys per step
  static constexpr int kKeyOperands = 4;                      // K, V, K_dot, V_dot
  using QRows = Swizzled128Rows<kBlockM>;
  using KeyRows = Swizzled128Rows<kBlockN>;
  static constexpr int kQTile = QRows::tile_elems(kHeadDim), kKeyTile = KeyRows::tile_elems(kHeadDim);
  // Q, Q_dot; keys x 2 buffers.
  static constexpr int kSmemElems = 2 * kQTile + 2 * kKeyOperands * kKeyTile;
  static constexpr int kBarriers = 5;  // Q and Q_dot; each key buffer full; each key buffer empty
  // The tiles (16-bit elements) from the first 1024-byte boundary (tma.cuh, swizzled_smem), then the barriers, then
  // the masked build's key terms.
  static constexpr size_t kSmemBytes =
      kSwizzlePad + kSmemElems * 2 + kBarriers * sizeof(uint64_t) + (kMask ? kBlockN * sizeof(float) : 0);
  static_assert(kSmemBytes <= 232448, "227 KB of shared memory per CTA");
};

// The tensor maps of the pass's operands (tma.cuh), kernel parameters; keys in the order of a key buffer.
struct TangentWgMaps {
  CUtensorMap q, q_dot, keys[4];  // keys: K, V, K_dot, V_dot
};

// T: the dtype of the operands and results (Float32Half: float32, its tiles float16 copies); the tiles hold
// E = ElemOf<T>.
template <typename T, typename Tr, bool kCausal, bool kGroups, bool kMask>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    sdpa_tangent_wg_kernel(const __grid_constant__ SdpaFwdParams p, const __grid_constant__ TangentWgMaps maps) {
  using E = ElemOf<T>;
  constexpr int kHeadDim = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kThreads = Tr::kThreads;
  constexpr int kKeyOps = Tr::kKeyOperands, kQTile = Tr::kQTile, kKeyTile = Tr::kKeyTile;
  constexpr bool kOnline = Tr::kOnline;
  constexpr uint32_t kQBytes = kQTile * sizeof(E), kKeyBytes = kKeyTile * sizeof(E);
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = swizzled_smem(smem_raw);
  E* q_tile = reinterpret_cast<E*>(smem);  // Q, Q_dot
  E* key_tiles = q_tile + 2 * kQTile;      // [2 buffers][K, V, K_dot, V_dot]
  uint64_t* full = reinterpret_cast<uint64_t*>(key_tiles + 2 * kKeyOps * kKeyTile);  // Q; key buffers 0, 1
  uint64_t* empty = full + 3;  // key buffers 0, 1: every warp is done with it (the unmasked build)

  const int tid = threadIdx.x, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wg = __shfl_sync(0xffffffff, tid / 128, 0);  // seen as warp-uniform: descriptors stay uniform
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  const int m0 = blockIdx.x * kBlockM;
  const int64_t b = blockIdx.y;
  const int wg_row0 = 64 * wg;                     // this warpgroup's first row within the CTA's
  const int row_g = m0 + wg_row0 + 16 * warp + g;  // this thread's rows: row_g and row_g + 8
  if (tid == 0) {
    for (int i = 0; i < 3; ++i) mbarrier_init(&full[i], 1);
    for (int i = 0; i < 2; ++i) mbarrier_init(&empty[i], kThreads / 32);
  }
  __syncthreads();

  const int kv_end = kCausal ? min(S, m0 + kBlockM) : S;
  const int n_blocks = (kv_end + kBlockN - 1) / kBlockN;
  const TmaBatch key_at = tma_batch<kGroups>(p.k, b);
  // Block row0's keys into buffer buf (thread 0 issues; bit buf of `loaded` tells every thread to wait for it, on
  // the parity in bit buf of `phases`; bits, not arrays indexed by buf, which went to the stack). In the unmasked
  // build the j-th block of the walk waits first until every warp has released the buffer's previous block (block
  // j - 2) on its empty barrier: no CTA-wide barrier per step, so one warpgroup's products run while the other forms
  // its probabilities. (The masked build skips hidden blocks and stages per-block key terms that all threads read:
  // it keeps a __syncthreads per step.)
  uint32_t loaded = 0, phases = 0;
  auto load_keys = [&](int buf, int row0, int j) {
    if (tid == 0) {
      if (!kMask && j >= 2) mbarrier_wait(&empty[buf], ((j - 2) >> 1) & 1);
      mbarrier_arrive_expect_tx(&full[1 + buf], kKeyOps * kKeyBytes);
#pragma unroll
      for (int i = 0; i < kKeyOps; ++i) {
        tma_load_rows<kHeadDim, Tr::KeyRows::kBoxBytes>(key_tiles + (buf * kKeyOps + i) * kKeyTile, &maps.keys[i],
                                                        row0, key_at, &full[1 + buf]);
      }
    }
    loaded |= 1u << buf;
  };
  // Waits for the copies of bit `bit` of `loaded` on `bar` if they were issued.
  auto await_copy = [&](uint64_t* bar, int bit) {
    if (loaded >> bit & 1) {
      mbarrier_wait(bar, phases >> bit & 1);
      phases ^= 1u << bit;
      loaded &= ~(1u << bit);
    }
  };
  // attn_mask (the masked build), a block of keys at a time, as in sdpa_fwd_tc.cuh.
  ForwardMask<T, kBlockM, kBlockN, kThreads> mask(p, b, m0, n_blocks, reinterpret_cast<float*>(full + Tr::kBarriers),
                                                  tid, S, kMask);
  const int nb_begin = mask.range.begin, nb_end = mask.range.end;
  if (tid == 0) {
    const TmaBatch q_at = tma_batch<false>(p.q, b);
    mbarrier_arrive_expect_tx(&full[0], 2 * kQBytes);
    tma_load_rows<kHeadDim, Tr::QRows::kBoxBytes>(q_tile, &maps.q, m0, q_at, &full[0]);
    tma_load_rows<kHeadDim, Tr::QRows::kBoxBytes>(q_tile + kQTile, &maps.q_dot, m0, q_at, &full[0]);
  }
  if (nb_begin < nb_end) load_keys(0, nb_begin * kBlockN, 0);
  // The backward-JVP's dQ-tangent buffer, these rows zeroed under the first copies (SdpaFwdParams::zero_dq_accum).
  if (p.zero_dq_accum != nullptr) zero_dq_rows<kBlockM, kHeadDim, kThreads>(p.zero_dq_accum, b, m0, L, tid);

  // row_lse: what the exponentials subtract from this thread's rows' scaled logits, in log2 units: the saved lse
  // (a row with no visible key, lse -inf, sees only masked logits, which give exact zeros), or (kOnline) the
  // running max, 0 while the row has seen only -inf. row_w: this thread's part of the row sums of W as computed
  // (lse_dot); row_w16 of W as rounded for the W V product, so that out_dot = W V - rowsum(W) out cancels nothing
  // between a rounded and an unrounded W. kOnline: row_max, row_sum, the running max and this thread's part of the
  // row sums of P (sdpa_fwd_wg.cuh), the sums of W against the same max.
  float row_lse[2] = {0.f, 0.f}, row_w[2] = {0.f, 0.f}, row_w16[2] = {0.f, 0.f};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  float* lse = static_cast<float*>(p.lse) + b * p.len_q;
  // (Float32Half, operand_scales.cuh: P carries 2^kProbExp, in what the exponentials subtract.)
  if constexpr (!kOnline) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row_g + 8 * r;
      const float l = row < L ? lse[row] : 0.f;
      row_lse[r] = l == -INFINITY ? 0.f : l * static_cast<float>(M_LOG2E);
      if constexpr (kIsFloat32Half<T>) row_lse[r] -= static_cast<float>(kProbExp);
    }
  }
  float acc[kHeadDim / 8][4];               // out_dot before the lse_dot * out term (kOnline: unnormalised)
  float o[kOnline ? kHeadDim / 8 : 1][4];  // kOnline: out, unnormalised
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.f;
#pragma unroll
  for (int dt = 0; dt < (kOnline ? kHeadDim / 8 : 1); ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  // Float32Half: the logits' scale takes Q's and K's powers of two off; W carries P's 2^kProbExp and the tangents'
  // 2^t, out_dot's products V's too; the factors at the end take them off (kOnline's division by the row sum of P
  // takes P's).
  float scale_log2 = static_cast<float>(p.scale * M_LOG2E);
  [[maybe_unused]] const float scale = static_cast<float>(p.scale);
  if constexpr (kIsFloat32Half<T>) {
    scale_log2 = ScaleFactors::of(OperandScales::from(p.operand_amax), p.scale, false).logits *
                 static_cast<float>(M_LOG2E);
  }
  mbarrier_wait(&full[0], 0);  // (also with no key block: no copy may still be landing when the CTA exits)

  using QMajor = TileDesc<typename Tr::QRows, false>;
  using KMajor = TileDesc<typename Tr::KeyRows, false>;
  using MnMajor = TileDesc<typename Tr::KeyRows, true>;
  for (int nb = nb_begin; nb < nb_end; ++nb) {
    // The key buffer, in turn.
    const int buf = (nb - nb_begin) & 1, n0 = nb * kBlockN;
    if (nb + 1 < nb_end && (!kMask || mask.next_seen())) load_keys(buf ^ 1, n0 + kBlockN, nb + 1 - nb_begin);
    await_copy(&full[1 + buf], buf);  // waited for even where the block turns out hidden: the phases stay in step
    KeyBlock key_block = KeyBlock::kTerms;
    if constexpr (kMask) {
      key_block = mask.classify(p, nb, nb_end, tid, S);
      if (key_block == KeyBlock::kHidden) {  // no pair of the block is seen: nothing to add
        cp_async_wait<0>();
        __syncthreads();
        continue;
      }
    }
    const uint32_t q_s = smem_addr(q_tile) + 2 * Tr::QRows::offset(wg_row0, 0);
    const uint32_t key_s = smem_addr(key_tiles + buf * kKeyOps * kKeyTile);
    // Key operand i at key_s + i * kKeyBytes.
    const QMajor q_d(q_s), qd_d(q_s + kQBytes);
    const KMajor k_d(key_s), kd_d(key_s + 2 * kKeyBytes);

    // 1. S and S_dot; the first k-step overwrites the accumulators.
    float s[kBlockN / 8][4], sd[kBlockN / 8][4];
    wgmma_fence();
    wgmma_product_rule<E, kBlockN, kHeadDim, true, true>(s, sd, q_d, qd_d, k_d, kd_d);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(s);
    fence_operands(sd);

    // 2. P and W. Keys past S, and under the causal mask keys past the row, are -inf (P = W = 0).
    if (n0 + kBlockN > S || (kCausal && n0 + kBlockN - 1 > m0 + wg_row0)) {
      for_masked_pairs<kCausal, kBlockN / 8>(n0, row_g, S, t, [&](int nt, int e) {
        s[nt][e] = -INFINITY;
        sd[nt][e] = 0.f;
      });
    }
    if constexpr (kMask) {
      add_mask_tangent<T, false>(p, b, sd, row_g - g, n0, L, S, lane);  // first: a hidden pair's tangent stays 0
      mask.fold(p, key_block, s, row_g - g, n0, L, S, lane, [&](int nt, int e) { sd[nt][e] = 0.f; });
    }
    if constexpr (kOnline) {  // move the running max; rescale what was summed against the old one
      float alpha[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) alpha[r] = move_row_max(s, r, scale_log2, row_max[r], row_lse[r]);
      if (any_rescale(alpha)) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          row_sum[r] *= alpha[r];
          row_w[r] *= alpha[r];
          row_w16[r] *= alpha[r];
#pragma unroll
          for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              acc[dt][2 * r + c] *= alpha[r];
              o[dt][2 * r + c] *= alpha[r];
            }
          }
        }
      }
    }
    uint32_t pa[kBlockN / 16][4], wa[kBlockN / 16][4];  // P, W as A fragments
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if constexpr (kOnline && kIsFloat32Half<T>) {  // (P's exponent against the running max)
          s[nt][e] = fast_exp2(fmaf(s[nt][e], scale_log2, static_cast<float>(kProbExp) - row_lse[e >> 1]));
        } else {
          s[nt][e] = fast_exp2(fmaf(s[nt][e], scale_log2, -row_lse[e >> 1]));
        }
        // W = P * scale * S_dot (Float32Half: its scale through scale_log2 and an immediate, so that no second
        // computed scale is held through the walk: at the 168 registers of three warpgroups it spilled)
        sd[nt][e] = kIsFloat32Half<T> ? sd[nt][e] * s[nt][e] * scale_log2 * static_cast<float>(M_LN2)
                                      : sd[nt][e] * s[nt][e] * scale;
        row_w[e >> 1] += sd[nt][e];
        if constexpr (kOnline) row_sum[e >> 1] += s[nt][e];
      }
    }
    // The rounded W's row sums from its packed fragments (registers 0, 2 of a k-step: row r = 0; 1, 3: r = 1): one
    // rounding an element, where rounding to T and back before the packing took two more instructions.
#pragma unroll
    for (int kq = 0; kq < kBlockN / 16; ++kq) {
      c_to_a<T>(pa[kq], s[2 * kq], s[2 * kq + 1]);
      c_to_a<T>(wa[kq], sd[2 * kq], sd[2 * kq + 1]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float lo, hi;
        unpack2<E>(wa[kq][i], lo, hi);
        row_w16[i & 1] += lo + hi;
      }
    }

    // 3. out_dot += W V + P V_dot [, out += P V].
    const MnMajor v_n(key_s + kKeyBytes), vd_n(key_s + 3 * kKeyBytes);
    wgmma_fence();
#pragma unroll
    for (int kq = 0; kq < kBlockN / 16; ++kq) {
      wgmma_rs<E, 1, kHeadDim>(acc, wa[kq], v_n.at(16 * kq, 0), 1);
      wgmma_rs<E, 1, kHeadDim>(acc, pa[kq], vd_n.at(16 * kq, 0), 1);
      if constexpr (kOnline) wgmma_rs<E, 1, kHeadDim>(o, pa[kq], v_n.at(16 * kq, 0), 1);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(acc);
    fence_operands(o);
    fence_operands(pa);
    fence_operands(wa);
    // Every warp is done with this buffer before the next step refills it (and with the mask's staged terms).
    if constexpr (kMask) {
      cp_async_wait<0>();
      __syncthreads();
    } else {
      __syncwarp();
      if (lane == 0) mbarrier_arrive(&empty[buf]);
    }
  }
  // Float32Half: what takes the scales off (formed here, after the walk: no register held through it): W's
  // (2^t, and P's 2^kProbExp where the division by the row sum of P does not), out_dot's products' (also V's),
  // out's (V's); and what puts the backward-JVP's units on the statistics this pass writes for it (lse_dot 2^t,
  // delta 2^(dout + v), its share of delta_dot also 2^t), which only that pass reads.
  [[maybe_unused]] float w_factor = 1.f, acc_factor = 1.f, out_factor = 1.f, lse_dot_units = 1.f, delta_units = 1.f,
                         delta_dot_units = 1.f;
  if constexpr (kIsFloat32Half<T>) {
    const OperandScales e = OperandScales::from(p.operand_amax);
    const ScaleFactors f = ScaleFactors::of(e, p.scale, true);
    w_factor = pow2f(-(e.tangent + (kOnline ? 0 : kProbExp)));
    acc_factor = w_factor * pow2f(-e.v);
    out_factor = pow2f(-e.v);
    lse_dot_units = f.lse_dot;
    delta_units = f.delta;
    delta_dot_units = f.delta_dot;
  }
  T* out = batch_base<T>(p.out, b);
  T* out_dot = batch_base<T>(p.out_dot, b);
  float* lse_dot = static_cast<float*>(p.lse_dot) + b * p.len_q;
  // The tangent pass's share of delta_dot, rowsum(dout * out_dot), from the unrounded out_dot, and (where asked)
  // delta, rowsum(dout * out), from the saved out.
  float* dout_out_dot = p.dout_out_dot != nullptr ? static_cast<float*>(p.dout_out_dot) + b * p.len_q : nullptr;
  float* dout_out = dout_out_dot != nullptr && p.dout_out != nullptr ? static_cast<float*>(p.dout_out) + b * p.len_q
                                                                     : nullptr;
  const T* dout = dout_out_dot != nullptr ? batch_base<const T>(p.dout, b) : nullptr;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_g + 8 * r;
    // The tangent pass's P is normalised already: the row sum of W is lse_dot. kOnline divides by the row sum of P
    // (a row with no visible key: out, out_dot, lse_dot 0, lse -inf, as the forward).
    float inv = 1.f;
    if constexpr (kOnline) {
      const float l = quad_sum(row_sum[r]);
      inv = l == 0.f ? 0.f : 1.f / l;  // a NaN sum stays NaN
      if constexpr (kIsFloat32Half<T>) {  // (less P's exponent)
        if (row < L && t == 0) {
          lse[row] = l == 0.f ? -INFINITY : (row_max[r] + log2f(l) - kProbExp) * static_cast<float>(M_LN2);
        }
      } else {
        if (row < L && t == 0) lse[row] = l == 0.f ? -INFINITY : (row_max[r] + log2f(l)) * static_cast<float>(M_LN2);
      }
    }
    const float w_inv = kIsFloat32Half<T> ? inv * w_factor : inv, acc_inv = kIsFloat32Half<T> ? inv * acc_factor : inv;
    const float ld = quad_sum(row_w[r]) * w_inv;
    const float ld16 = quad_sum(row_w16[r]) * w_inv;  // the same from the rounded W
    float row_term = 0.f, out_term = 0.f;  // this thread's parts of rowsum(dout * out_dot), rowsum(dout * out)
    if (row < L) {  // (no early exit: the quad below sums across lanes)
      T* out_row = out + static_cast<int64_t>(row) * p.out.row_stride;
      T* od_row = out_dot + static_cast<int64_t>(row) * p.out_dot.row_stride;
      const T* dout_row = dout != nullptr ? dout + static_cast<int64_t>(row) * p.dout.row_stride : nullptr;
#pragma unroll
      for (int dt = 0; dt < kHeadDim / 8; ++dt) {
        float o0, o1;
        if constexpr (kOnline) {
          const float out_inv = kIsFloat32Half<T> ? inv * out_factor : inv;
          o0 = o[dt][2 * r] * out_inv;
          o1 = o[dt][2 * r + 1] * out_inv;
          store2<T>(out_row + dt * 8 + 2 * t, o0, o1);
        } else {
          load2<T>(out_row + dt * 8 + 2 * t, o0, o1);
        }
        const float od0 = acc[dt][2 * r] * acc_inv - ld16 * o0, od1 = acc[dt][2 * r + 1] * acc_inv - ld16 * o1;
        store2<T>(od_row + dt * 8 + 2 * t, od0, od1);
        if (dout_row != nullptr) {
          float d0, d1;
          load2<T>(dout_row + dt * 8 + 2 * t, d0, d1);
          row_term = fmaf(od0, d0, fmaf(od1, d1, row_term));
          out_term = fmaf(o0, d0, fmaf(o1, d1, out_term));
        }
      }
    }
    row_term = quad_sum(row_term);
    if (dout_out != nullptr) out_term = quad_sum(out_term);
    if (row < L && t == 0) {
      if constexpr (kIsFloat32Half<T>) {
        lse_dot[row] = ld * lse_dot_units;
        if (dout_out_dot != nullptr) dout_out_dot[row] = row_term * delta_dot_units;
        if (dout_out != nullptr) dout_out[row] = out_term * delta_units;
      } else {
        lse_dot[row] = ld;
        if (dout_out_dot != nullptr) dout_out_dot[row] = row_term;
        if (dout_out != nullptr) dout_out[row] = out_term;
      }
    }
  }
}

// The tensor maps of the pass's operands; false when TMA cannot address one of them (tma.cuh, encode_rows_map), or,
// for float32 (Float32Half), without the scratch of their copies or the operands' largest magnitudes
// (sdpa_fwd_tc_scratch_bytes); the copies it forms on the stream.
template <typename T, int kHeadDim, bool kGroups, bool kMask, bool kOnline>
bool tangent_wg_maps(const SdpaFwdParams& p, TangentWgMaps& maps, cudaStream_t stream) {
  using E = ElemOf<T>;
  using Tr = TangentWgTraits<kHeadDim, kMask, kOnline>;
  // What the copies read: a 16-bit operand as it is; float32 its scaled float16 copy (Q, Q_dot, then the keys' order:
  // the scratch's order, scaled_copies.cuh, in which a backward-JVP run after this pass finds them).
  MatrixView views[6] = {p.q, p.q_dot, p.k, p.v, p.k_dot, p.v_dot};
  if constexpr (kIsFloat32Half<T>) {
    static_assert(!kGroups && !kMask, "float32 in the plain build");
    if (!ScaledCopies::can_form(p)) return false;
    constexpr int kSlots[6] = {kSlotQ, kSlotQDot, kSlotK, kSlotV, kSlotKDot, kSlotVDot};
    ScaledCopies copies(p.scratch, p.batch, kHeadDim, p.operand_amax);
    for (int i = 0; i < 6; ++i) views[i] = copies.add(views[i], i < 2 ? p.len_q : p.len_kv, kSlots[i]);
    copies.launch(stream);
  }
  bool ok = encode_rows_map<E>(&maps.q, views[0], p.len_q, kHeadDim, p.batch, false, Tr::kBlockM) &&
            encode_rows_map<E>(&maps.q_dot, views[1], p.len_q, kHeadDim, p.batch, false, Tr::kBlockM);
  for (int i = 0; i < 4 && ok; ++i) {
    ok = encode_rows_map<E>(&maps.keys[i], views[2 + i], p.len_kv, kHeadDim, p.batch, kGroups, Tr::kBlockN);
  }
  return ok;
}

template <typename T, int kHeadDim, bool kCausal, bool kGroups, bool kMask, bool kOnline>
void launch_sdpa_tangent_wg(const SdpaFwdParams& p, const TangentWgMaps& maps, cudaStream_t stream) {
  using Tr = TangentWgTraits<kHeadDim, kMask, kOnline>;
  const dim3 grid(static_cast<unsigned>((p.len_q + Tr::kBlockM - 1) / Tr::kBlockM), static_cast<unsigned>(p.batch));
  launch_with_smem(sdpa_tangent_wg_kernel<T, Tr, kCausal, kGroups, kMask>, grid, Tr::kThreads, Tr::kSmemBytes,
                   stream, p, maps);
}

}  // namespace theria::kernels::cuda
