// Plain parameter structs shared by the explicit CPU kernels and the fused CUDA kernels.
// No torch types here: the torch bindings fill these, the kernels only read them.
//
// Every matrix is a view [batch, rows, cols] whose last dimension is contiguous; the flat
// "batch" index b runs over all leading positions and splits as (b / heads, b % heads), each part
// with its own stride, so (B, L, H, E) tensors seen as (B, H, L, E) need no copy. Row statistics (lse, delta, their
// tangents) are contiguous [batch, len_q] arrays in the accumulation type (float, or double for
// double inputs). Symbols follow docs/derivatives.md.
#pragma once

#include <cstdint>

namespace theria::kernels {

struct MatrixView {
  void* ptr = nullptr;
  int64_t batch_stride = 0;  // in elements, for b / heads
  int64_t row_stride = 0;    // in elements
  int64_t head_stride = 0;   // in elements, for (b % heads) / group
  int64_t heads = 1;         // size of the inner leading dimension of the query-side batch index b
  // Grouped-query attention: key-side matrices (k, v, their tangents and gradients) hold one head per
  // `group` consecutive query heads, so they are addressed by the query's batch index b without a copy.
  int64_t group = 1;
};

// attn_mask, broadcast over [batch, len_q, len_kv] by its strides (zero along broadcast dims), so a
// key-padding mask (B, 1, 1, S) is read as it is. kBool: false hides the pair (logit -inf). kBias*: an
// additive float term, stored in the kernel's 16-bit input type, float or double.
enum class MaskKind : int32_t { kNone, kBool, kBias16, kBias32, kBias64 };
struct MaskView {
  const void* ptr = nullptr;
  MaskKind kind = MaskKind::kNone;
  int64_t batch_stride = 0, head_stride = 0, heads = 1;  // elements, as MatrixView's
  int64_t row_stride = 0, col_stride = 0;                 // elements
  // The tensor-core kernels' tile map of a mask that varies by query (row_stride != 0), or nullptr: one byte per
  // kMaskTile x kMaskTile tile of [len_q, len_kv] (MaskTile), tile_rows x tile_cols per (outer, head) position of
  // the mask, laid out by the tile strides (zero along the mask's broadcast leading dims). The kernels skip a
  // block whose tiles are all hidden and fold nothing into one whose tiles are all plain.
  const unsigned char* tiles = nullptr;
  int64_t tiles_batch_stride = 0, tiles_head_stride = 0;
  int32_t tile_rows = 0, tile_cols = 0;
};
// A float mask's gradient, written only where the mask requires grad (ptr set): the backward writes dS there, the
// backward-JVP dS's tangent (docs/derivatives.md, M), over [batch, len_q, len_kv] by strides laid out as MaskView's.
// Elements are float (the tensor-core kernels) or the scalar kernels' compute type. `accumulate`: several pairs share
// an element (the mask is broadcast over heads, batch, rows or keys), so the kernels add with atomics into a zeroed
// buffer; else each pair has its own element and the kernels store (the binding zeroes it: skipped pairs are 0), in
// the tensor-core kernels' 16-bit input type where `narrow` (the gradient of a full-size 16-bit mask, written once).
struct MaskGradView {
  void* ptr = nullptr;
  int64_t batch_stride = 0, head_stride = 0, heads = 1;  // elements, as MatrixView's
  int64_t row_stride = 0, col_stride = 0;
  bool accumulate = false;
  bool narrow = false;
};

// A tile map's granularity (rows and keys) and its entries.
constexpr int kMaskTile = 32;
enum MaskTile : unsigned char { kTileHidden = 0, kTilePlain = 1, kTileTerms = 2 };

// Forward and JVP: out = softmax(scale * q k^T) v, lse = row log-sum-exp of the logits.
// With tangents set (q_dot.ptr != nullptr) the kernel also produces out_dot and lse_dot.
// An absent tangent of q, k or v is passed as a zero matrix.
struct SdpaFwdParams {
  int64_t batch = 0, len_q = 0, len_kv = 0, dim_qk = 0, dim_v = 0;
  double scale = 1.0;
  bool causal = false;  // key j is visible to query i iff j <= i (top-left aligned)
  // Grouped-query attention: batch = outer x heads_q query positions; `group` consecutive query heads
  // share one key/value head, so the key side has batch / group positions (MatrixView::group).
  int64_t heads_q = 1, group = 1;
  MaskView mask;
  // A float mask's tangent (kind kBias*, the mask's type and layout; ptr nullptr without one): the JVP and the
  // backward-JVP add it to the logits' tangent, as the mask is added to the logits.
  MaskView mask_dot;

  MatrixView q, k, v, out;
  void* lse = nullptr;

  MatrixView q_dot, k_dot, v_dot, out_dot;
  void* lse_dot = nullptr;

  // dout: the backward's output cotangent. The tangent pass of the tensor-core backward-JVP also writes
  // dout_out_dot = rowsum(dout * out_dot) (fp32, [batch, len_q]) when it is set, from out_dot before its
  // rounding to the input dtype; the row terms add dout_dot * out to make delta_dot. (From the rounded
  // out_dot, dP_dot - delta_dot cancelled to bf16 noise: 8e-2 in a double backward with one key.)
  MatrixView dout;
  void* dout_out_dot = nullptr;
  // The same tangent pass also writes, where these are set, dout_out = rowsum(dout * out) (the backward-JVP's delta,
  // from the saved out it reads anyway) and zeroes its query rows of zero_dq_accum (fp32 [batch, len_q, dim_qk]: the
  // backward-JVP's dQ-tangent buffer), so that neither takes a launch of its own (the row terms kernel zeroes the
  // backward's buffer the same way).
  void* dout_out = nullptr;
  float* zero_dq_accum = nullptr;

  // Scratch where sdpa_fwd_tc_scratch_bytes (src/fused/launch.h) asks for one: float32 at precision "high" on the
  // warpgroup forward and tangent kernels, their operands' scaled float16 copies (scaled_copies.cuh).
  void* scratch = nullptr;
  // float32 at "high" on float16 copies (src/fused/operand_scales.cuh): max|X| of q, k, v, dout and their tangents,
  // filled by sdpa_operand_amax before the passes; the copies' powers of two and the kernels' factors derive from it.
  const float* operand_amax = nullptr;

  bool with_tangent() const { return q_dot.ptr != nullptr; }
};

// Backward and backward-JVP: dq, dk, dv from (q, k, v, out, lse, dout); with tangents also their
// tangents dq_dot, dk_dot, dv_dot along (q_dot, k_dot, v_dot, dout_dot), which need the forward
// tangents out_dot and lse_dot (filled by a JVP pass first).
struct SdpaBwdParams : SdpaFwdParams {
  MatrixView dq, dk, dv;
  void* delta = nullptr;  // rowsum(dout * out), scratch filled by the kernel

  MatrixView dout_dot, dq_dot, dk_dot, dv_dot;
  void* delta_dot = nullptr;  // rowsum(dout_dot * out + dout * out_dot), scratch

  MaskGradView dmask;  // dS (backward) or dS_dot (backward-JVP) when the float mask requires grad

  // The backward-JVP at float32 "high" on the warpgroup kernel: the scratch already holds the float16 copies of q,
  // q_dot, k, v, k_dot, v_dot, formed there by the tangent pass that ran before it (scaled_copies.cuh, the scratch's
  // order), so only dout's [and dout_dot's] are formed.
  bool tangent_copies_formed = false;
};

}  // namespace theria::kernels
