// The launch policy of the tensor-core kernels, in one file (as FlashAttention-3's tile_size.h): which implementation
// serves each family at each head dim, and the tile shape it runs (warps, rows per CTA, rows per step). The choices
// were measured on an H100 / H200; docs/performance.md has the measurements behind each. The kernels' layouts (tiles,
// strides, shared memory) follow from these in their Traits (sdpa_fwd_tc.cuh, sdpa_bwd_tc.cuh, sdpa_bwd_jvp_tc.cuh,
// sdpa_bwd_wg.cuh, sdpa_tangent_wg.cuh); the family launchers (launch_tc.cuh) read the implementation choice.
//
// The THERIA_* macros below are the only compile-time tuning switches of the kernels: each overrides one choice for
// scripts/device/variants.sh, which builds and times alternatives in one device call; a normal build defines none.
#pragma once

#include "fused/kernel_templates.h"

// 1: at head dims 64 and 128 the 16-bit tangent pass, JVP, backward and backward-JVP run the warpgroup kernels
// (warpgroup_kernels below); 0: the mma.sync ones (for comparisons).
#ifndef THERIA_WG
#define THERIA_WG 1
#endif
// Forward family on mma.sync: warps per CTA and 16-row tiles per warp of the forward, and of the tangent pass;
// THERIA_TANGENT_BLOCK_N > 0 sets the key block of the passes with tangents (0: FwdTile's choice per head dim).
#ifndef THERIA_FWD_WARPS
#define THERIA_FWD_WARPS 4
#endif
#ifndef THERIA_FWD_MTILES
#define THERIA_FWD_MTILES 2
#endif
#ifndef THERIA_TANGENT_MTILES
#define THERIA_TANGENT_MTILES 1
#endif
#ifndef THERIA_TANGENT_BLOCK_N
#define THERIA_TANGENT_BLOCK_N 0
#endif
// Backward on mma.sync: warps, 16-key tiles per warp and query rows per step, at head dim THERIA_BWD_TUNE_DIM only.
#ifndef THERIA_BWD_TUNE_DIM
#define THERIA_BWD_TUNE_DIM 0
#define THERIA_BWD_WARPS 0
#define THERIA_BWD_KTILES 0
#define THERIA_BWD_BLOCK_M 0
#endif
// Backward-JVP on mma.sync at head dims 64 and 128: warps, query rows per step (0: BwdJvpTile's choice), and the
// CTAs per SM its registers must allow.
#ifndef THERIA_BJ_WARPS
#define THERIA_BJ_WARPS 4
#endif
#ifndef THERIA_BJ_BLOCK_M
#define THERIA_BJ_BLOCK_M 0
#endif
#ifndef THERIA_BJ_MIN_BLOCKS
#define THERIA_BJ_MIN_BLOCKS 1
#endif

// 0: the D=64 backward kernels' dQ^T split over keys again (WarpgroupTile::bwd_dq_split_queries), for comparisons.
#ifndef THERIA_DQ_SPLIT_QUERIES
#define THERIA_DQ_SPLIT_QUERIES 1
#endif
// 0: the D=64 backward kernels form each step's dQ^T in that step again (WarpgroupTile::bwd_lag_dq), for comparisons.
#ifndef THERIA_BWD_LAG_DQ
#define THERIA_BWD_LAG_DQ 1
#endif

namespace theria::kernels::cuda {

// Which kernels serve the tangent pass and the JVP (sdpa_tangent_wg.cuh), the backward and the backward-JVP
// (sdpa_bwd_wg.cuh), all four alike: the warpgroup (wgmma) ones at head dims 64 and 128 for operands of one 16-bit
// part (16-bit dtypes, and float32 at precision "high" as scaled float16 copies: Float32Half), the mma.sync ones
// elsewhere and for operands of several parts (float32's bfloat16 split and three-part products). There the JVP
// runs as one pass of the warpgroup tangent kernel (WarpgroupTile::one_pass_jvp), not the mma.sync JVP
// (FwdPass::kJvp), whose warps each load their own copy of the shared operands (measured: docs/performance.md). The
// forward: warpgroup_forward below.
constexpr bool warpgroup_kernels(int head_dim, int parts) {
  return THERIA_WG && parts == 1 && (head_dim == 64 || head_dim == 128);
}

// The forward (FwdPass::kOut) can run the warp-specialised warpgroup pipeline (sdpa_fwd_wg.cuh) at head dims 64 and
// 128 for operands of one 16-bit part (as warpgroup_kernels), without attn_mask (the masked build keeps mma.sync:
// its per-block mask terms are staged by the same threads that read them). kWarpgroupForwardMinKeys keys on (0: every
// length): with its copies on TMA it measured faster than the mma.sync forward at every length tried on an H200, 256
// to 32768 keys, D=64 and 128 (1.00-1.06x at 256 and 512 keys at D=64, 1.26-1.84x from 2048 on;
// docs/performance.md). (With cp.async copies it had been slower below 8192 keys; the threshold stays as the place to
// set one again.)
constexpr bool warpgroup_forward(int head_dim, int parts, bool mask) {
  return (head_dim == 64 || head_dim == 128) && parts == 1 && !mask;
}
constexpr int64_t kWarpgroupForwardMinKeys = 0;
inline bool warpgroup_forward_pays(int64_t len_kv) { return len_kv >= kWarpgroupForwardMinKeys; }

// Warp-specialised forward: kWarpGroups consumer warpgroups of 64 query rows and one producer warpgroup (three at head
// dim 64, as FlashAttention-3: there a step's exponentials take as long as its products, and a third warpgroup gives
// the tensor cores more work to switch to while two compute theirs); kBlockN keys per step (the score accumulator is
// 64 x kBlockN per warpgroup: kBlockN / 2 registers a thread); K and V each in a ring of kStages blocks (at head
// dim 128, three fill 224 of the 227 KB of shared memory; the producer signals a copy once the next is issued, so
// with two stages the consumers' release of V_{j-2} would gate V_{j-1}'s signal).
template <int kHeadDim>
struct FwdWgTile {
  static constexpr int kWarpGroups = kHeadDim == 64 ? 3 : 2;
  static constexpr int kBlockN = 128;
  static constexpr int kStages = 3;
};

// Forward, JVP and (mma.sync) tangent pass: kWarps warps per CTA, each owning kMTiles 16-row tiles (a key/value
// fragment feeds kMTiles MMAs); kBlockN keys per step. kParts: parts per operand (mma.cuh's MmaOperand).
template <int kHeadDim, FwdPass kPass, int kParts>
struct FwdTile {
  static constexpr bool kTangent = kPass != FwdPass::kOut;
  // 4 warps x 2 m-tiles = 128 query rows per CTA measured fastest on an H100. The JVP carries twice the
  // accumulators: one m-tile per warp; so do split operands (twice the fragments).
  static constexpr int kWarps = THERIA_FWD_WARPS;
  static constexpr int kMTiles = kParts > 1                 ? 1
                                 : kPass == FwdPass::kOut   ? THERIA_FWD_MTILES
                                 : kPass == FwdPass::kJvp   ? 1
                                                            : THERIA_TANGENT_MTILES;
  // Above head dim 64 the passes with tangents take 32-key blocks: with 64 their shared memory (six operand tiles)
  // leaves one CTA per SM and the JVP spills; measured on an H100: D=128 JVP 3.63 -> 2.96 ms, while at D=64 32-key
  // blocks cost 1.50 -> 1.94 ms. Split operands take twice the shared memory: 32-key blocks wherever 64 would leave
  // one CTA per SM.
  static constexpr bool kWide = kHeadDim > 64;
  static constexpr int kBlockN = kParts > 1 ? (kTangent || kWide || kParts > 2 ? 32 : 64)
                                 : !kTangent                  ? 64
                                 : THERIA_TANGENT_BLOCK_N > 0 ? THERIA_TANGENT_BLOCK_N
                                 : kWide                      ? 32
                                                              : 64;
  // The one-pass JVP's online softmax (sdpa_fwd_tc.cuh): its max from the raw logits and its rescale skipped where no
  // row of a warp moved its max. Measured on an H100 against the pairs-scaled max and the rescale always: at head dim
  // 32 (16-bit, no mask) the JVP -7.8 / -8.5 % dense, -1.5 % causal; at 96 +1.7 / +4.7 %, and at 32 with a key-padding
  // mask +2.4 %: so there only (docs/performance.md, sixteenth pass).
  static constexpr bool jvp_skips_rescale(bool mask) {
    return kPass == FwdPass::kJvp && kHeadDim == 32 && kParts == 1 && !mask;
  }
};

// Backward on mma.sync: up to head dim 64, 4 warps of 2 key tiles over 32-query steps (Q/dO fragments feed two MMAs;
// the accumulators still fit in registers); above, 8 warps of one key tile over 64-query steps. Two-part operands
// (float32 split into bfloat16) take twice the shared memory and fragment registers: 4 warps of one key tile over
// 32-query steps at every head dim.
template <int kHeadDim, int kParts>
struct BwdTile {
  static constexpr bool kOverride = kHeadDim == THERIA_BWD_TUNE_DIM && kParts == 1;
  static constexpr bool kSplit = kParts > 1;
  static constexpr int kWarps = kOverride ? THERIA_BWD_WARPS : kHeadDim <= 64 || kSplit ? 4 : 8;
  static constexpr int kKTiles = kOverride ? THERIA_BWD_KTILES : kHeadDim <= 64 && !kSplit ? 2 : 1;
  static constexpr int kBlockM = kOverride ? THERIA_BWD_BLOCK_M : kHeadDim <= 64 || kSplit ? 32 : 64;
};

// Backward-JVP on mma.sync: 4 warps x 16 keys; queries per step chosen so the four score tiles and two accumulators
// fit in registers: 32 up to head dim 96, 16 for 128. Split operands take twice the shared memory and fragment
// registers: 16-query steps at head dims 64 and 128 (at 32 and 96 the dQ product's column slices need 32).
template <int kHeadDim, int kParts>
struct BwdJvpTile {
  static constexpr bool kTunable = (kHeadDim == 64 || kHeadDim == 128) && kParts == 1;  // the overrides leave 32, 96
  static constexpr int kWarps = kTunable ? THERIA_BJ_WARPS : 4;
  static constexpr int kBlockM = kTunable && THERIA_BJ_BLOCK_M > 0 ? THERIA_BJ_BLOCK_M
                                 : kParts > 1                      ? (kHeadDim % 64 == 0 ? 16 : 32)
                                 : kHeadDim <= 96                  ? 32
                                                                   : 16;
  static constexpr int kMinBlocks = THERIA_BJ_MIN_BLOCKS;  // CTAs per SM the registers must allow
};

// Warpgroup kernels: warpgroups of 64 rows each (one wgmma M), two or three per CTA. The tangent pass streams 64-key
// steps over its query rows (at head dim 64 too: 128-key steps spill there, the two score accumulators taking 128
// registers a thread); the backward and backward-JVP stream query steps (bwd_block_m) over the CTA's 128 or 192 keys.
struct WarpgroupTile {
  static constexpr int kTangentBlockN = 64;  // keys per step of the tangent pass
  // The backward: at head dim 64 with 64-query steps (the masked build in deterministic mode) three warpgroups (192
  // keys a CTA; 168 registers a thread; 5-6 % faster than two, docs/results/bwd_d64_three_wg); two otherwise: with
  // 128-query steps at 64 (bwd_block_m), and where the accumulators do not fit the 168 registers of three (the
  // backward-JVP, head dim 128).
  static constexpr int bwd_warpgroups(int head_dim, bool tangent, int block_m) {
    return head_dim == 64 && !tangent && block_m == 64 ? 3 : 2;
  }
  // The tangent pass: three warpgroups (192 query rows a CTA) at head dim 64, where its element-wise work is as long
  // as its products and a third warpgroup keeps the tensor cores busier; two at 128 and in the masked builds (at
  // 170 registers a thread they spill).
  static constexpr int tangent_warpgroups(int head_dim, bool mask) { return head_dim == 64 && !mask ? 3 : 2; }
  // The JVP as one pass of the tangent kernel (sdpa_tangent_wg.cuh, kOnline: out and lse formed beside out_dot)
  // rather than the forward and then the tangent pass; not at head dim 128 with a mask, where its out accumulator
  // spills (255 registers and 284 bytes of spill; 253 without a mask, 168 with three warpgroups at 64).
  static constexpr bool one_pass_jvp(int head_dim, bool mask) { return !(head_dim == 128 && mask); }
  // Queries per backward step: for the backward 128 at head dim 64 (two warpgroups; as FlashAttention-3's 128 x 128
  // blocks there; 243-244 registers, no spill, 255 and 20 bytes of spill in the masked build, whose 64-query steps
  // with three warpgroups spill 76): 1.5-8.8 % faster than 64 with three, masked 7-13 %, except the masked build in
  // deterministic mode, 6-8 % slower, which keeps 64 (docs/results/bwd_d64_128q, bwd_d64_mask_128q); 64 otherwise
  // (at 128 255 registers, with a few bytes of spill in the causal and masked builds since its copies moved to TMA);
  // 32 for the backward-JVP formed in one phase (64 spills at 64 and does not fit the shared memory at 128).
  // The backward-JVP at head dim 64 without a mask runs in phases (BwdWgTraits::kPhased: S^T, dP^T; S_dot^T;
  // dP_dot^T, each turned into fragments once final), which fits 64-query steps (249-252 registers, no spill;
  // 12 % faster than 32, docs/results/d64_bwd_jvp_phased).
  static constexpr int bwd_block_m(int head_dim, bool tangent, bool mask, bool deterministic) {
    if (!tangent) return head_dim == 64 && !(mask && deterministic) ? 128 : 64;
    return head_dim == 64 && !mask ? 64 : 32;
  }
  // A step's dQ^T tile staged at its end and added (the warpgroups' sum, the atomics) in the next step, under that
  // step's score products, instead of with the tensor cores idle; the adds' CTA-wide barrier, which every warp reaches
  // only once done with the step before, also frees that step's query-side buffer for the copies of the step after
  // (no end-of-step barrier). Where it measured faster on an H200 (docs/performance.md, "issue 18, item 1, tenth
  // pass"): the 16-bit backward-JVP at head dim 64 (phased: without a dout tangent, with which it spills 4-8 bytes)
  // and the 16-bit backward (at 128 forward+backward -2 to -5 %; at 64 -1 %, only with the copies issued before the
  // adds: bwd_copies_before_adds); the backward-JVP at 128 measured level. (The bfloat16 split's backward, +0.5 to
  // +3 %, kept its adds in the step; it no longer runs here: Float32Half takes the 16-bit choices.)
  static constexpr bool bwd_defer_dq_adds(int head_dim, bool tangent, bool dout_dot) {
    return tangent ? head_dim == 64 && !dout_dot : head_dim == 64 || head_dim == 128;
  }
  // With the adds deferred, the next step's copies go right after the adds' barrier (head dim 64: HVP -2 %, the
  // backward -1 %) or after the adds themselves (128, where the earlier copies measured +0.3 to +2 % on the backward).
  static constexpr bool bwd_copies_before_adds(int head_dim) { return head_dim == 64; }
  // dQ^T at head dim 64 with two warpgroups (16-bit): each warpgroup all 64 columns of its half of the step's
  // queries over all the block's keys (as FlashAttention-3's dQ, split over queries), instead of every query over its
  // own keys with the two partial tiles summed through the stage. H200, alternating rounds (docs/results/dq_split_queries):
  // bf16 forward+backward -4.2 % / -4.9 %, HVP -1.6 % / -1.9 % at 8·16·2048·64 / 2·16·8192·64.
  static constexpr bool bwd_dq_split_queries(int head_dim) { return THERIA_DQ_SPLIT_QUERIES && head_dim == 64; }
  // With dQ^T split over queries and the adds deferred, each step's dQ^T products run one step late, in the next
  // step, over the step before's dS^T (a second dS^T buffer), so that the two warpgroups never wait for each other
  // at a CTA-wide barrier: each keeps its own copy of the row statistics, and the buffers go back on mbarriers (the
  // dS^T tiles once both warpgroups' dQ^T products have read them, the query-side tiles once both have run their
  // products), so that one warpgroup's products can run while the other computes its probabilities. Not in the
  // deterministic, masked and grouped builds (their turns, staged terms and group walks keep the step's barriers),
  // nor the split walks' launch. H100, alternating rounds against the step's barriers (docs/results/bwd_lagged_dq):
  // the D=64 backward kernel -12 %, backward-JVP -3.7 %; bf16 forward+backward -5.5 to -8.0 %, HVP -1.5 to -5.2 % at
  // 8·16·2048·64 and 2·16·8192·64. Measured and not kept (that folder has the patches): the D=128 backward lagged so,
  // +5.6 % forward+backward at 2·16·8192·128; the warpgroups' score products issued in turn on top (named barriers),
  // HVP +2.9 to +3.6 %. The D=128 backward-JVP has no room for a second dS^T buffer (215.6 of 227 KB).
  static constexpr bool bwd_lag_dq(int head_dim, bool tangent, bool dout_dot) {
    return THERIA_BWD_LAG_DQ && bwd_dq_split_queries(head_dim) && bwd_defer_dq_adds(head_dim, tangent, dout_dot);
  }
};

// The warpgroup backward kernels' last wave. They run one CTA per SM (their shared memory), each walking all query
// steps of one key block; with `units` key blocks over `slots` SMs the last wave holds units % slots of them and
// leaves the other SMs idle for a whole walk (2048 key blocks on an H200's 132 SMs: 15.5 walks of work take 16).
// Where that pays, those key blocks run after the others as a second launch in which `parts` CTAs each take `chunk`
// consecutive steps of one walk and add their dK, dV to fp32 scratch, a third launch writing them out
// (sdpa_bwd_wg.cuh). The plan picks the parts (2 to 8) whose waves finish the tail soonest, each part counted
// kTailSetupSteps steps more for its set-up (its key tiles' copies, its fp32 adds, its share of the two launches; an
// estimate); a split that would not save a tenth of a walk is not made. Not in deterministic mode (the partial
// sums' order), nor for causal walks (their lengths differ, and the longest go first), masks or grouped heads.
// H200, L = 8192: the split kernels 1.6-2.4 % faster, an HVP's kernels 1.3-1.4 %
// (docs/results/bwd_tail_split).
struct BwdTailPlan {
  int64_t first = -1;  // the first split key block (linear over the grid); -1: none
  int64_t units = 0;   // key blocks split
  int parts = 1, chunk = 0;
};
constexpr int kTailSetupSteps = 2;
inline BwdTailPlan plan_bwd_tail(int64_t units, int64_t slots, int steps) {
  BwdTailPlan plan;
  const int64_t tail = slots > 0 ? units % slots : 0;
  if (units <= slots || tail == 0 || steps < 4) return plan;
  double best = 0.9;  // in walks: the tail's walks whole take one
  for (int parts = 2; parts <= 8; ++parts) {
    const int chunk = 2 * ((steps + 2 * parts - 1) / (2 * parts));
    const int taken = (steps + chunk - 1) / chunk;
    const int64_t waves = (tail * taken + slots - 1) / slots;
    const double cost = static_cast<double>(waves * chunk + taken * kTailSetupSteps) / steps;
    if (cost < best) {
      best = cost;
      plan = {units - tail, tail, taken, chunk};
    }
  }
  return plan;
}

}  // namespace theria::kernels::cuda
