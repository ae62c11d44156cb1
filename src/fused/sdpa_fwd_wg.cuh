// The forward (FwdPass::kOut of sdpa_fwd_tc.cuh: out and the row log-sum-exp) as a warp-specialised pipeline
// on Hopper warpgroup MMAs, after FlashAttention-3's forward. launch_tc.cuh runs it where tile_policy.h says it
// pays (warpgroup_forward, warpgroup_forward_pays: at head dims 64 and 128, every length).
//
// One CTA per (batch position, block of 64 * kWarpGroups queries): kWarpGroups consumer warpgroups of 64 query
// rows each, and one producer warpgroup in which one thread copies Q once and then the K blocks, and another the V
// blocks (kBlockN keys; K and V each in a ring of kStages), each copy a TMA transfer (tma.cuh) that completes its
// stage's "full" mbarrier (mbarrier.cuh); the consumers hand a stage back on its "empty" barrier as soon as the
// product that reads it has completed, so neither side ever waits at a CTA-wide barrier. The producer hands most
// of its registers to the consumers (setmaxnreg), which hold the output, the scores and P.
//
// A consumer keeps the next block's score product in flight while it forms the current probabilities:
//   issue S_j = Q K_j^T;  issue O += P_{j-1} V_{j-1};  wait for S_j;  release K_j;
//   online softmax of S_j (new running max, P_j)   <- the tensor cores still run P_{j-1} V_{j-1}
//   wait for the product;  release V_{j-1};  rescale O to the new max.
// Operands are read by the tensor cores from shared memory in the TMA's 128-byte swizzle (Swizzled128Rows): Q and
// K K-major, V MN-major; P goes in from registers. Tile shape: tile_policy.h (FwdWgTile). A view TMA cannot address
// (launch_sdpa_fwd_wg returns false) runs the mma.sync forward.
// float32 at precision "high" (T = Float32Half): the copies read q, k and v as float16 copies scaled by powers of two,
// formed into the scratch first (scaled_copies.cuh); the logits' scale and out's factor take the powers off
// (operand_scales.cuh).
#pragma once

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

// The pipeline's barriers, after the tiles in shared memory: Q full; per stage of each ring, full (the producer's
// copy landed) and empty (every consumer warp is done with it). Block j sits in stage j % kStages; its full phase
// has parity (j / kStages) & 1, and the empty phase it waits for before its copy, the previous block's in that
// stage, the other parity.
template <int kStages>
struct FwdWgBarriers {
  uint64_t *full_q, *full_k, *full_v, *empty_k, *empty_v;
  __device__ __forceinline__ explicit FwdWgBarriers(uint64_t* base)
      : full_q(base),
        full_k(base + 1),
        full_v(full_k + kStages),
        empty_k(full_v + kStages),
        empty_v(empty_k + kStages) {}
  static constexpr int kCount = 1 + 4 * kStages;
  __device__ __forceinline__ static int stage(int j) { return j % kStages; }
  __device__ __forceinline__ static uint32_t parity(int j) { return (j / kStages) & 1; }
};

template <int kHeadDim_>
struct FwdWgTraits {
  using Tile = FwdWgTile<kHeadDim_>;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarpGroups = Tile::kWarpGroups;
  static constexpr int kConsumerWarps = 4 * kWarpGroups;
  static constexpr int kProducerThreads = 128;  // registers go to whole warpgroups: the producer is one
  static constexpr int kThreads = 32 * kConsumerWarps + kProducerThreads;
  // setmaxnreg: the launch bounds start every thread at 65536 / kThreads registers; the producer gives up all but
  // kProducerRegs and the consumers take them (ptxas allocates each side within its own limit). Three consumer
  // warpgroups need the producer at the minimum, 24: at 56 they get 152 registers and spill.
  static constexpr int kProducerRegs = kWarpGroups > 2 ? 24 : 56;
  static constexpr int kConsumerRegs = (65536 / kThreads / 8 * 8 * kThreads - kProducerRegs * kProducerThreads) /
                                       (32 * kConsumerWarps) / 8 * 8;
  static constexpr int kBlockM = 64 * kWarpGroups;             // queries per CTA, 64 per warpgroup (the wgmma M)
  static constexpr int kBlockN = Tile::kBlockN;                // keys per step
  static constexpr int kStages = Tile::kStages;                // K and V each in a ring of kStages
  using QRows = Swizzled128Rows<kBlockM>;
  using KeyRows = Swizzled128Rows<kBlockN>;
  static constexpr int kQTile = QRows::tile_elems(kHeadDim), kKeyTile = KeyRows::tile_elems(kHeadDim);
  // Q; K and V rings (tiles of 1024-byte atoms).
  static constexpr int kSmemElems = kQTile + 2 * kStages * kKeyTile;
  // The tiles from the first 1024-byte boundary (tma.cuh, swizzled_smem), then the barriers.
  static constexpr size_t kSmemBytes =
      kSwizzlePad + kSmemElems * 2 + FwdWgBarriers<kStages>::kCount * sizeof(uint64_t);
};

// The tensor maps of Q, K and V (tma.cuh): kernel parameters, so that the TMA unit reads them from constant memory.
struct FwdWgMaps {
  CUtensorMap q, k, v;
};

// The producer warpgroup: thread 0 copies Q and then K_j, thread 32 (the next warp) V_j, for every visible block
// j, each as soon as the consumers have handed the stage back. A copy is one TMA transfer per 64 columns,
// announced on the stage's full barrier with its byte count (the barrier expects that one arrival); the other
// threads of the warpgroup only give their registers away.
template <typename T, typename Tr, bool kGroups>
__device__ __forceinline__ void fwd_wg_produce(const SdpaFwdParams& p, const FwdWgMaps& maps, int64_t b, int m0,
                                               int n_blocks, T* q_tile, T* k_ring, T* v_ring,
                                               const FwdWgBarriers<Tr::kStages>& bar, int tid) {
  constexpr int kHeadDim = Tr::kHeadDim, kKeyTile = Tr::kKeyTile;
  using Bars = FwdWgBarriers<Tr::kStages>;
  // (With no key block the consumers wait for nothing: no copy may still be landing when the CTA exits.)
  if ((tid != 0 && tid != 32) || n_blocks == 0) return;
  const bool keys = tid == 0;
  const TmaBatch key_at = tma_batch<kGroups>(keys ? p.k : p.v, b);
  const CUtensorMap* map = keys ? &maps.k : &maps.v;
  T* ring = keys ? k_ring : v_ring;
  uint64_t* full = keys ? bar.full_k : bar.full_v;
  uint64_t* empty = keys ? bar.empty_k : bar.empty_v;
  if (keys) {
    mbarrier_arrive_expect_tx(bar.full_q, Tr::kQTile * 2);
    const TmaBatch q_at = tma_batch<false>(p.q, b);
    tma_load_rows<kHeadDim, Tr::QRows::kBoxBytes>(q_tile, &maps.q, m0, q_at, bar.full_q);
  }
  for (int j = 0; j < n_blocks; ++j) {
    const int s = Bars::stage(j);
    if (j >= Tr::kStages) mbarrier_wait(&empty[s], Bars::parity(j) ^ 1);
    mbarrier_arrive_expect_tx(&full[s], kKeyTile * 2);
    tma_load_rows<kHeadDim, Tr::KeyRows::kBoxBytes>(ring + s * kKeyTile, map, j * Tr::kBlockN, key_at, &full[s]);
  }
}

// T: the dtype of q, k, v and out (Float32Half: float32, its tiles float16 copies); the tiles hold E = ElemOf<T>.
template <typename T, typename Tr, bool kCausal, bool kGroups>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    sdpa_fwd_wg_kernel(const __grid_constant__ SdpaFwdParams p, const __grid_constant__ FwdWgMaps maps) {
  using E = ElemOf<T>;
  constexpr int kHeadDim = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kKeyTile = Tr::kKeyTile;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = swizzled_smem(smem_raw);
  E* q_tile = reinterpret_cast<E*>(smem);
  E* k_ring = q_tile + Tr::kQTile;  // [stage]
  E* v_ring = k_ring + Tr::kStages * kKeyTile;
  using Bars = FwdWgBarriers<Tr::kStages>;
  const Bars bar(reinterpret_cast<uint64_t*>(smem + Tr::kSmemElems * 2));

  const int tid = threadIdx.x, lane = tid % 32;
  const int L = static_cast<int>(p.len_q), S = static_cast<int>(p.len_kv);
  const int m0 = blockIdx.x * kBlockM;
  const int64_t b = blockIdx.y;
  const int kv_end = kCausal ? min(S, m0 + kBlockM) : S;
  const int n_blocks = (kv_end + kBlockN - 1) / kBlockN;
  if (tid == 0) {
    mbarrier_init(bar.full_q, 1);
    for (int s = 0; s < Tr::kStages; ++s) {
      mbarrier_init(&bar.full_k[s], 1);
      mbarrier_init(&bar.full_v[s], 1);
      mbarrier_init(&bar.empty_k[s], Tr::kConsumerWarps);
      mbarrier_init(&bar.empty_v[s], Tr::kConsumerWarps);
    }
  }
  __syncthreads();  // the last CTA-wide barrier: the producer warpgroup leaves the consumers' code here
  if (tid >= 32 * Tr::kConsumerWarps) {
    warpgroup_regs_decrease<Tr::kProducerRegs>();
    fwd_wg_produce<E, Tr, kGroups>(p, maps, b, m0, n_blocks, q_tile, k_ring, v_ring, bar,
                                   tid - 32 * Tr::kConsumerWarps);
    return;
  }
  warpgroup_regs_increase<Tr::kConsumerRegs>();

  const int warp = (tid / 32) % 4, g = lane / 4, t = lane % 4;
  const int wg = __shfl_sync(0xffffffff, tid / 128, 0);  // seen as warp-uniform: descriptors stay uniform
  const int row_g = m0 + 64 * wg + 16 * warp + g;        // this thread's rows: row_g and row_g + 8
  // (Float32Half: the logits' scale takes Q's and K's powers of two off, and out's factor, formed at the end, V's:
  // operand_scales.cuh.)
  float scale_log2 = static_cast<float>(p.scale * M_LOG2E);
  if constexpr (kIsFloat32Half<T>) {
    scale_log2 = ScaleFactors::of(OperandScales::from(p.operand_amax), p.scale, false).logits *
                 static_cast<float>(M_LOG2E);
  }
  float o[kHeadDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  // Running max of the scaled logits (log2 units) and this thread's part of the row sums of P.
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  // P of the block whose product with V is next, as wgmma A fragments.
  uint32_t pa[kBlockN / 16][4];

  using QMajor = TileDesc<typename Tr::QRows, false>;
  using KMajor = TileDesc<typename Tr::KeyRows, false>;
  using MnMajor = TileDesc<typename Tr::KeyRows, true>;
  const QMajor q_d(smem_addr(q_tile) + 2 * Tr::QRows::offset(64 * wg, 0));
  const auto release = [&](uint64_t* empty) {
    if (lane == 0) mbarrier_arrive(empty);
  };
  // The descriptors of block j's K and V tiles.
  const auto k_desc = [&](int j) { return KMajor(smem_addr(k_ring + Bars::stage(j) * kKeyTile)); };
  const auto v_desc = [&](int j) { return MnMajor(smem_addr(v_ring + Bars::stage(j) * kKeyTile)); };
  // S = Q K_j^T into s, issued and committed (not waited for).
  const auto issue_scores = [&](float (&s)[kBlockN / 8][4], const KMajor& k_d) {
    wgmma_fence();
    wgmma_product<E, kBlockN, kHeadDim>(s, q_d, k_d);
    wgmma_commit();
  };
  // O += P V_j with the P in pa, issued and committed.
  const auto issue_values = [&](const MnMajor& v_n) {
    wgmma_fence();
#pragma unroll
    for (int kq = 0; kq < kBlockN / 16; ++kq) wgmma_rs<E, 1, kHeadDim>(o, pa[kq], v_n.at(16 * kq, 0), 1);
    wgmma_commit();
  };
  // P (the scores after the softmax) into the operand registers.
  const auto p_to_operands = [&](const float (&s)[kBlockN / 8][4]) {
#pragma unroll
    for (int kq = 0; kq < kBlockN / 16; ++kq) c_to_a<T>(pa[kq], s[2 * kq], s[2 * kq + 1]);
  };
  // The online softmax of block j's scores: masks keys past S (and, causal, past the row), moves the running
  // max, leaves P (unnormalised, against the new max) in s and returns the factor that rescales what was
  // accumulated against the old max.
  const auto softmax = [&](float (&s)[kBlockN / 8][4], int j, float (&alpha)[2]) {
    const int n0 = j * kBlockN;
    if (n0 + kBlockN > S || (kCausal && n0 + kBlockN - 1 > m0 + 64 * wg)) {
      for_masked_pairs<kCausal, kBlockN / 8>(n0, row_g, S, t, [&](int nt, int e) { s[nt][e] = -INFINITY; });
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m_use;
      alpha[r] = move_row_max(s, r, scale_log2, row_max[r], m_use);
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          s[nt][2 * r + c] = fast_exp2(fmaf(s[nt][2 * r + c], scale_log2, -m_use));
          sum += s[nt][2 * r + c];
        }
      }
      row_sum[r] = row_sum[r] * alpha[r] + sum;  // this thread's part; reduced at the end
    }
  };

  if (n_blocks > 0) {
    mbarrier_wait(bar.full_q, 0);
    mbarrier_wait(&bar.full_k[0], 0);
    {
      float s[kBlockN / 8][4];
      issue_scores(s, k_desc(0));
      wgmma_wait<0>();
      fence_operands(s);
      release(&bar.empty_k[0]);
      float alpha[2];
      softmax(s, 0, alpha);
      p_to_operands(s);
    }
    for (int j = 1; j < n_blocks; ++j) {
      float s[kBlockN / 8][4];
      const KMajor k_d = k_desc(j);
      const MnMajor v_n = v_desc(j - 1);
      // O's rescale and P are pinned before the first product, so that the compiler cannot sink them into the
      // window where a wgmma group is in flight.
      fence_operands(o);
      fence_operands(pa);
      mbarrier_wait(&bar.full_k[Bars::stage(j)], Bars::parity(j));
      issue_scores(s, k_d);
      mbarrier_wait(&bar.full_v[Bars::stage(j - 1)], Bars::parity(j - 1));
      issue_values(v_n);
      wgmma_wait<1>();  // the scores
      fence_operands(s);
      release(&bar.empty_k[Bars::stage(j)]);
      float alpha[2];
      softmax(s, j, alpha);
      wgmma_wait<0>();  // O += P_{j-1} V_{j-1}
      fence_operands(o);
      fence_operands(pa);
      release(&bar.empty_v[Bars::stage(j - 1)]);
      // P_j into the operand registers only now: written while P_{j-1} V_{j-1} was in flight, they made ptxas
      // serialise the wgmmas (the exponentials, the costly part, did overlap the product).
      p_to_operands(s);
      if (any_rescale(alpha)) {
#pragma unroll
        for (int dt = 0; dt < kHeadDim / 8; ++dt) {
          o[dt][0] *= alpha[0];
          o[dt][1] *= alpha[0];
          o[dt][2] *= alpha[1];
          o[dt][3] *= alpha[1];
        }
      }
    }
    const int last = n_blocks - 1;
    mbarrier_wait(&bar.full_v[Bars::stage(last)], Bars::parity(last));
    issue_values(v_desc(last));
    wgmma_wait<0>();
    fence_operands(o);
    fence_operands(pa);
    release(&bar.empty_v[Bars::stage(last)]);
  }

  T* out = batch_base<T>(p.out, b);
  float* lse = static_cast<float*>(p.lse) + b * p.len_q;
  [[maybe_unused]] float out_factor = 1.f;
  if constexpr (kIsFloat32Half<T>) out_factor = pow2f(-OperandScales::from(p.operand_amax).v);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float l = quad_sum(row_sum[r]);
    const int row = row_g + 8 * r;
    if (row >= L) continue;  // (after the quad sum, which every lane takes part in)
    float inv = l == 0.f ? 0.f : 1.f / l;  // a NaN sum stays NaN
    if constexpr (kIsFloat32Half<T>) inv *= out_factor;
    T* out_row = out + static_cast<int64_t>(row) * p.out.row_stride;
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      store2<T>(out_row + dt * 8 + 2 * t, o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
    if (t == 0) lse[row] = l == 0.f ? -INFINITY : (row_max[r] + log2f(l)) * static_cast<float>(M_LN2);
  }
}

// False (nothing launched) when TMA cannot address one of Q, K, V (tma.cuh, encode_rows_map), or, for float32
// (Float32Half), without the scratch of its copies or the operands' largest magnitudes (sdpa_fwd_tc_scratch_bytes).
template <typename T, int kHeadDim, bool kCausal, bool kGroups>
bool launch_sdpa_fwd_wg(const SdpaFwdParams& p, cudaStream_t stream) {
  using E = ElemOf<T>;
  using Tr = FwdWgTraits<kHeadDim>;
  // What the copies read: a 16-bit operand as it is; float32 its scaled float16 copy, formed into the scratch first.
  MatrixView q = p.q, k = p.k, v = p.v;
  if constexpr (kIsFloat32Half<T>) {
    static_assert(!kGroups, "float32 in the plain build");
    if (!ScaledCopies::can_form(p)) return false;
    ScaledCopies copies(p.scratch, p.batch, kHeadDim, p.operand_amax);
    q = copies.add(p.q, p.len_q, kSlotQ);
    k = copies.add(p.k, p.len_kv, kSlotK);
    v = copies.add(p.v, p.len_kv, kSlotV);
    copies.launch(stream);
  }
  FwdWgMaps maps;
  if (!encode_rows_map<E>(&maps.q, q, p.len_q, kHeadDim, p.batch, false, Tr::kBlockM) ||
      !encode_rows_map<E>(&maps.k, k, p.len_kv, kHeadDim, p.batch, kGroups, Tr::kBlockN) ||
      !encode_rows_map<E>(&maps.v, v, p.len_kv, kHeadDim, p.batch, kGroups, Tr::kBlockN)) {
    return false;
  }
  const dim3 grid(static_cast<unsigned>((p.len_q + Tr::kBlockM - 1) / Tr::kBlockM), static_cast<unsigned>(p.batch));
  launch_with_smem(sdpa_fwd_wg_kernel<T, Tr, kCausal, kGroups>, grid, Tr::kThreads, Tr::kSmemBytes, stream, p, maps);
  return true;
}

}  // namespace theria::kernels::cuda
