// Host-side entry points of the fused CUDA kernels. Plain params structs and a stream in, no torch
// types: the torch binding (fused_backend.cpp) fills the params. Definitions: dispatch.cu, which
// turns runtime dtype / head dim / causal into the template instantiations of instantiations/.
#pragma once

#include "kernels/sdpa_params.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace theria::kernels::cuda {

// kFloat32x3: float32 tensors on the tensor-core kernels with three bfloat16 parts per operand (matmul precision
// "highest"); kFloat32 there means two parts ("high"); kFloat32Half float16 copies scaled by powers of two ("high" at
// head dims 64 and 128: operand_scales.cuh). The SIMT kernels take kFloat32 as float32 products.
enum class Dtype { kFloat16, kBFloat16, kFloat32, kFloat64, kFloat32x3, kFloat32Half };

// Scratch of the tensor-core backward and backward-JVP, allocated by the binding.
struct BwdWorkspace {
  // [batch, len_q, dim_qk] fp32 (dq or dq_dot), zero when the backward kernel runs: zeroed by the pass's first kernel
  // where the params name it (SdpaFwdParams::zero_dq_accum: the row terms, or the backward-JVP's tangent pass), else
  // by the caller.
  float* dq_accum = nullptr;
  // Deterministic mode only (else nullptr): [batch, dq_turn_slots] int32, zeroed before the launch; slot
  // m / 16 counts the key blocks that have added their share of the query block starting at row m
  // (DqTurn in dq_finish.cuh).
  int* dq_turns = nullptr;
  int64_t dq_turn_slots = 0;  // ceil(len_q / 16)
  // Grouped-query heads in the plain build (one CTA per query head): the dK, dV views (dK_dot, dV_dot in the
  // backward-JVP) are zeroed fp32 buffers of the key side's shape, and each CTA adds its share with atomics, so the
  // group is summed inside the kernels (write_key_rows).
  bool key_side_adds = false;
  // The warpgroup backward kernels' split last wave (tile_policy.h, plan_bwd_tail): fp32 scratch for the dK, dV (or
  // dK_dot, dV_dot) partial sums of the key blocks whose walks are split, allocated by the binding
  // (sdpa_bwd_tail_bytes) where a split may serve, else nullptr. The launcher sets the plan's fields below.
  float* tail_part = nullptr;
  size_t tail_part_bytes = 0;
  int64_t tail_first = -1;  // the first key block (linear over the grid) whose walk is split; -1: none
  int tail_parts = 1;       // parts a split walk takes
  int tail_chunk = 0;       // query steps per part (even: the buffers' and statistics' turns start at 0)
};

// Tensor-core kernels: 16-bit inputs, or float32 ones (plain build: no mask, no grouped heads) split into bfloat16
// parts (head dims 32 and 96 at "high", 32 and 64 at "highest") or as scaled float16 copies (64 and 128 at "high"),
// E == Ev in {32, 64, 96, 128}, 16-byte aligned rows.
// sdpa_fwd_tc with tangents set in the params is the JVP (fp32 lse and lse_dot).
bool tensor_core_head_dim(Dtype dtype, int64_t dim_qk, int64_t dim_v);
void sdpa_fwd_tc(Dtype dtype, const SdpaFwdParams& params, cudaStream_t stream);
// The bytes of params.scratch that sdpa_fwd_tc or sdpa_tangent_tc needs for these params (0: none): float32 at
// precision "high" on the warpgroup forward and tangent kernels, whose copies read q, k, v (and their tangents) as
// scaled float16 copies formed first (scaled_copies.cuh). Without the scratch those passes raise (they have no
// mma.sync form).
size_t sdpa_fwd_tc_scratch_bytes(Dtype dtype, const SdpaFwdParams& params);
// The tangent pass of the backward-JVP: params.out and params.lse are read (the saved forward), only
// out_dot and lse_dot are written.
void sdpa_tangent_tc(Dtype dtype, const SdpaFwdParams& params, cudaStream_t stream);
// params.delta: fp32 [batch, len_q] scratch.
void sdpa_bwd_tc(Dtype dtype, const SdpaBwdParams& params, const BwdWorkspace& ws, cudaStream_t stream);
// The bytes of params.scratch that sdpa_bwd_tc or sdpa_bwd_jvp_tc needs (0: none): float32 at "high" on the warpgroup
// backward and backward-JVP (head dims 64 and 128), whose copies read q, dout, k and v (and their tangents) as
// scaled float16 copies formed first. Without it those passes raise.
size_t sdpa_bwd_tc_scratch_bytes(Dtype dtype, const SdpaBwdParams& params);
// The backward-JVP: params carry the tangents (dout_dot may be absent: ptr == nullptr), out_dot and
// lse_dot (from sdpa_fwd_tc with tangents), fp32 scratch delta / delta_dot; ws as above, for dq_dot.
void sdpa_bwd_jvp_tc(Dtype dtype, const SdpaBwdParams& params, const BwdWorkspace& ws, cudaStream_t stream);
// The bytes of BwdWorkspace::tail_part that sdpa_bwd_tc and sdpa_bwd_jvp_tc can use for these params outside
// deterministic mode (0: their kernels never split a walk here), on the current device.
size_t sdpa_bwd_tail_bytes(Dtype dtype, const SdpaBwdParams& params);

// The tile map of a mask that varies by query (MaskView::tiles): mask's tile extents and strides set, `tiles` the
// caller's outer x heads x tile_rows x tile_cols bytes (outer, heads: the map's leading extents, 1 along the mask's
// broadcast dims), written on the stream before the attention kernels read it.
void sdpa_mask_tiles(Dtype dtype, const MaskView& mask, unsigned char* tiles, int64_t outer, int64_t heads,
                     int64_t len_q, int64_t len_kv, cudaStream_t stream);

// kFloat32Half: the operands' places in SdpaFwdParams::operand_amax (max |X| of each, 0 for an absent one).
enum OperandSlot : int {
  kSlotQ,
  kSlotK,
  kSlotV,
  kSlotDout,
  kSlotQDot,
  kSlotKDot,
  kSlotVDot,
  kSlotDoutDot,
  kOperandSlots
};

// kFloat32Half: max|X| of each operand into amax[slot] (operand_scales.cuh's kOperandSlots floats, zeroed here first:
// an operand not listed reads 0), on the stream before the passes that read SdpaFwdParams::operand_amax. rows 0: an
// absent operand. Every operand of one call: passes that share copies (the double backward's) share exponents.
struct AmaxOperand {
  MatrixView view;
  int64_t rows = 0;
  int slot = 0;
};
void sdpa_operand_amax(const AmaxOperand* ops, int count, int64_t batch, int cols, float* amax, cudaStream_t stream);

// SIMT kernels: float32 or float64, max(E, Ev) <= kSimtMaxHeadDim. With tangents set in the params
// they compute the JVP / backward-JVP.
constexpr int64_t kSimtMaxHeadDim = 256;
void sdpa_fwd_simt(Dtype dtype, const SdpaFwdParams& params, cudaStream_t stream);
void sdpa_bwd_simt(Dtype dtype, const SdpaBwdParams& params, cudaStream_t stream);

}  // namespace theria::kernels::cuda
