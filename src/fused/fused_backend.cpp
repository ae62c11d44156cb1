#include "fused/fused_backend.h"

#include "core/backend.h"
#include "core/contract.h"
#include "explicit/binding_layout.h"
#include "explicit/mask_operand.h"
#include "explicit/row_kernel_binding.h"
#include "fused/launch.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

namespace theria::fused {
namespace {

namespace kc = kernels::cuda;
using kernels::MatrixView;

// The tensor-core kernels put the batch position in gridDim.y.
constexpr int64_t kMaxBatch = 65535;

kc::Dtype kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return kc::Dtype::kFloat16;
    case at::kBFloat16: return kc::Dtype::kBFloat16;
    case at::kFloat: return kc::Dtype::kFloat32;
    case at::kDouble: return kc::Dtype::kFloat64;
    default: TORCH_CHECK(false, "theria fused: unsupported dtype ", t);
  }
}

// The tensor-core kernels' dtype of q: float32 at "high" as scaled float16 copies at head dims 64 and 128 (TF32's
// mantissa at the 16-bit kernels' rate: operand_scales.cuh), two bfloat16 parts at the others; three parts at
// "highest" ("medium" runs bfloat16 copies: via_bfloat16).
kc::Dtype tc_dtype(const Tensor& q) {
  const at::ScalarType t = q.scalar_type();
  if (t != at::kFloat) return kernel_dtype(t);
  if (core::float32_products() == Float32Products::kFloat32) return kc::Dtype::kFloat32x3;
  return kc::tensor_core_head_dim(kc::Dtype::kFloat32Half, q.size(-1), q.size(-1)) ? kc::Dtype::kFloat32Half
                                                                                   : kc::Dtype::kFloat32;
}

// The SIMT family over the row-kernel binding, launched on the current stream.
const row_kernels::RowKernels& simt_kernels() {
  static const row_kernels::RowKernels kernels{
      [](const kernels::SdpaFwdParams& p, at::ScalarType dtype) {
        kc::sdpa_fwd_simt(kernel_dtype(dtype), p, at::cuda::getCurrentCUDAStream());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      [](const kernels::SdpaBwdParams& p, at::ScalarType dtype) {
        kc::sdpa_bwd_simt(kernel_dtype(dtype), p, at::cuda::getCurrentCUDAStream());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
  };
  return kernels;
}

// Describes a strided (..., rows, cols) tensor as a MatrixView without copying when its leading
// dims collapse to (outer, heads) strides and, for the tensor-core kernels, every row starts on a
// 16-byte boundary (cp.async copies 16 bytes).
bool describe(const Tensor& t, bool aligned_rows, MatrixView& v) {
  if (!row_kernels::describe_rows(t, v)) return false;
  if (aligned_rows) {
    const bool aligned = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && v.row_stride % 8 == 0 &&
                         v.head_stride % 8 == 0 && v.batch_stride % 8 == 0;
    if (!aligned) return false;
  }
  return true;
}

// The tensor itself when describable, else a fresh contiguous copy (documented: odd layouts copy).
struct Operand {
  Tensor t;
  MatrixView view;
};
Operand tc_operand(const Tensor& x) {
  Operand o{x, {}};
  if (describe(o.t, true, o.view)) return o;
  o.t = x.clone(at::MemoryFormat::Contiguous);
  TORCH_CHECK(describe(o.t, true, o.view), "theria fused: cannot lay out a tensor of shape ", x.sizes());
  return o;
}

// An absent tangent is a zero operand of its primal's shape.
Operand tc_tangent(const OptTensor& t, const Tensor& primal) {
  return tc_operand(t.has_value() && t->defined() ? *t : at::zeros_like(primal, at::MemoryFormat::Contiguous));
}

using row_kernels::batch_of;

// Grouped-query attention: the key-side views (described with their own Hkv heads) are re-addressed by the
// query's batch index (MatrixView::group).
using row_kernels::Heads;
using row_kernels::heads_of;
MatrixView key_side(MatrixView v, Heads h) {
  if (h.group > 1) {
    v.heads = h.q;
    v.group = h.group;
  }
  return v;
}

void fill_problem(kernels::SdpaFwdParams& p, const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                  double scale) {
  const Heads h = heads_of(q, k);
  p.heads_q = h.q;
  p.group = h.group;
  p.batch = batch_of(q);
  p.len_q = q.size(-2);
  p.len_kv = k.size(-2);
  p.dim_qk = q.size(-1);
  p.dim_v = v.size(-1);
  p.scale = scale;
  p.causal = causal;
  TORCH_CHECK(p.batch <= kMaxBatch, "theria fused: at most ", kMaxBatch, " batch x head positions per call, got ",
              p.batch);
}

// The tensor-core kernels fold the scale into the running max and mask with -inf before scaling, which
// holds for scale > 0 only (-inf * 0 is NaN, and a negative scale turns the mask into +inf); a zero or
// negative scale runs the SIMT kernels, which scale each logit first.
bool use_tensor_cores(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const OptTensor& mask) {
  const bool plain = !(mask.has_value() && mask->defined()) && heads_of(q, k).group == 1;
  return scale > 0.0 && uses_tensor_cores(q.scalar_type(), q.size(-1), v.size(-1), plain);
}

// Asked once use_tensor_cores has said yes: float32 at "medium" (bfloat16 products) has the entry points call
// themselves on bfloat16 copies and return float32 (a cast is exact where the value came from a bfloat16 pass: the
// saved out); at "high" float32 goes to the kernels as it is, which form scaled float16 copies of it (head dims 64
// and 128) or split it into bfloat16 parts (32 and 96).
bool via_bfloat16(const Tensor& q) {
  return q.scalar_type() == at::kFloat && core::float32_products() == Float32Products::kBFloat16;
}
Tensor bf16(const Tensor& t) { return t.to(at::kBFloat16); }
OptTensor bf16(const OptTensor& t) { return t.has_value() && t->defined() ? OptTensor(bf16(*t)) : t; }
Tensor f32(const Tensor& t) { return t.to(at::kFloat); }

std::vector<int64_t> out_shape(const Tensor& q, const Tensor& v) {
  auto s = q.sizes().vec();
  s.back() = v.size(-1);
  return s;
}

std::vector<int64_t> stats_shape(const Tensor& q) {
  auto s = q.sizes().vec();
  s.pop_back();
  return s;
}

}  // namespace

bool uses_tensor_cores(at::ScalarType dtype, int64_t dim_qk, int64_t dim_v, bool plain) {
  const bool sixteen_bit = dtype == at::kHalf || dtype == at::kBFloat16;
  if (dtype != at::kFloat) return sixteen_bit && kc::tensor_core_head_dim(kc::Dtype::kBFloat16, dim_qk, dim_v);
  switch (core::float32_products()) {
    case Float32Products::kBFloat16: return kc::tensor_core_head_dim(kc::Dtype::kBFloat16, dim_qk, dim_v);
    case Float32Products::kTF32:  // float16 copies at head dims 64 and 128, the bfloat16 split at 32 and 96
      return plain && (kc::tensor_core_head_dim(kc::Dtype::kFloat32Half, dim_qk, dim_v) ||
                       kc::tensor_core_head_dim(kc::Dtype::kFloat32, dim_qk, dim_v));
    case Float32Products::kFloat32: return plain && kc::tensor_core_head_dim(kc::Dtype::kFloat32x3, dim_qk, dim_v);
  }
  return false;
}

int64_t device_memory_bytes(c10::DeviceIndex device) {
  return static_cast<int64_t>(at::cuda::getDeviceProperties(device)->totalGlobalMem);
}

bool supports(int64_t batch, int64_t dim_qk, int64_t dim_v, std::string* why_not) {
  std::string gap;
  if (dim_qk > kc::kSimtMaxHeadDim || dim_v > kc::kSimtMaxHeadDim) {
    gap = "the fused kernels take head dims up to " + std::to_string(kc::kSimtMaxHeadDim) + ", got E=" +
          std::to_string(dim_qk) + ", Ev=" + std::to_string(dim_v);
  } else if (batch > kMaxBatch) {
    gap = "the fused kernels take at most " + std::to_string(kMaxBatch) + " batch x head positions per call, got " +
          std::to_string(batch);
  }
  if (!gap.empty() && why_not != nullptr) *why_not = gap;
  return gap.empty();
}

namespace {

// The tile map of a mask that varies by query (row stride != 0: a full, causal or document mask passed as a
// tensor), built on the stream before the kernels that classify blocks by it (MaskView::tiles): tile_rows x
// tile_cols bytes per (outer, head) position the mask itself has, so a (1, 1, L, S) mask gets one map. None for a
// per-key mask (the kernels classify its key blocks from the terms) or no mask. The returned bytes must outlive
// the launches.
Tensor attach_mask_tiles(kernels::MaskView& m, const Tensor& q, int64_t len_kv) {
  const int64_t batch = batch_of(q), len_q = q.size(-2);
  if (m.ptr == nullptr || m.row_stride == 0 || batch == 0) return {};
  m.tile_rows = static_cast<int32_t>((len_q + kernels::kMaskTile - 1) / kernels::kMaskTile);
  m.tile_cols = static_cast<int32_t>((len_kv + kernels::kMaskTile - 1) / kernels::kMaskTile);
  const int64_t outer = m.batch_stride != 0 ? batch / m.heads : 1, heads = m.head_stride != 0 ? m.heads : 1;
  const int64_t per_head = static_cast<int64_t>(m.tile_rows) * m.tile_cols;
  m.tiles_head_stride = m.head_stride != 0 ? per_head : 0;
  m.tiles_batch_stride = m.batch_stride != 0 ? heads * per_head : 0;
  Tensor tiles = at::empty({outer * heads * per_head}, q.options().dtype(at::kByte));
  m.tiles = tiles.data_ptr<uint8_t>();
  kc::sdpa_mask_tiles(tc_dtype(q), m, tiles.data_ptr<uint8_t>(), outer, heads, len_q, len_kv,
                      at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return tiles;
}

// What sdpa_fwd and sdpa_jvp share: the operands, the new out and lse, held until the launch, and the
// params that point at them.
struct FwdLaunch {
  Operand q, k, v, out;
  Tensor lse;
  row_kernels::MaskOperand mask, mask_dot;
  Tensor mask_tiles;
  kernels::SdpaFwdParams p;
};
void prepare_fwd(FwdLaunch& f, const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                 const OptTensor& mask, const OptTensor& mask_dot = std::nullopt) {
  f.q = tc_operand(q);
  f.k = tc_operand(k);
  f.v = tc_operand(v);
  f.out = tc_operand(at::empty(out_shape(q, v), q.options()));
  f.lse = at::empty(stats_shape(q), q.options().dtype(at::kFloat));
  f.mask = row_kernels::mask_operand(mask, q, k.size(-2), std::nullopt);
  f.mask_tiles = attach_mask_tiles(f.mask.view, q, k.size(-2));
  f.mask_dot = row_kernels::mask_operand(mask_dot, q, k.size(-2), std::nullopt);
  fill_problem(f.p, q, k, v, causal, scale);
  const Heads h = heads_of(q, k);
  f.p.mask = f.mask.view;
  f.p.mask_dot = f.mask_dot.view;
  f.p.q = f.q.view;
  f.p.k = key_side(f.k.view, h);
  f.p.v = key_side(f.v.view, h);
  f.p.out = f.out.view;
  f.p.lse = f.lse.data_ptr();
}

// The scratch a pass asks for (float32 at precision "high": its operands' float16 copies for the warpgroup kernels;
// kc::sdpa_fwd_tc_scratch_bytes, kc::sdpa_bwd_tc_scratch_bytes), set in p; undefined where it asks for none. The
// caller holds it until the launch.
Tensor attach_scratch(kernels::SdpaFwdParams& p, size_t bytes, const Tensor& q) {
  if (bytes == 0) return {};
  Tensor scratch = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
  p.scratch = scratch.data_ptr();
  return scratch;
}

// Float32Half: the largest magnitude of every operand set in p (q, k, v, dout and their tangents; dout_dot where
// given), from which the passes' copies and kernels take their powers of two (kc::sdpa_operand_amax), set in p;
// undefined for other dtypes. Every operand of a call at once: passes that share copies share exponents. The caller
// holds it until the launches.
Tensor attach_operand_amax(kernels::SdpaFwdParams& p, const Tensor& q, const MatrixView* dout_dot = nullptr) {
  if (tc_dtype(q) != kc::Dtype::kFloat32Half || p.batch == 0) return {};
  const MatrixView* views[kc::kOperandSlots] = {&p.q, &p.k, &p.v, &p.dout, &p.q_dot, &p.k_dot, &p.v_dot, dout_dot};
  kc::AmaxOperand ops[kc::kOperandSlots];
  for (int slot = 0; slot < kc::kOperandSlots; ++slot) {
    const MatrixView* m = views[slot];
    if (m == nullptr || m->ptr == nullptr) continue;
    const bool query_side =
        slot == kc::kSlotQ || slot == kc::kSlotDout || slot == kc::kSlotQDot || slot == kc::kSlotDoutDot;
    ops[slot] = {*m, query_side ? p.len_q : p.len_kv, slot};
  }
  Tensor amax = at::empty({kc::kOperandSlots}, q.options().dtype(at::kFloat));
  kc::sdpa_operand_amax(ops, kc::kOperandSlots, p.batch, static_cast<int>(p.dim_qk), amax.data_ptr<float>(),
                        at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  p.operand_amax = amax.data_ptr<float>();
  return amax;
}

// The tangents of a pass, an absent one as zeros of its primal's shape.
struct TangentOperands {
  Operand q_dot, k_dot, v_dot;
};
TangentOperands tc_tangents(const OptTensor& q_dot, const OptTensor& k_dot, const OptTensor& v_dot, const Tensor& q,
                            const Tensor& k, const Tensor& v) {
  TangentOperands t{tc_tangent(q_dot, q), tc_tangent(k_dot, k), tc_tangent(v_dot, v)};
  const Heads h = heads_of(q, k);
  t.k_dot.view = key_side(t.k_dot.view, h);
  t.v_dot.view = key_side(t.v_dot.view, h);
  return t;
}

// The tensor-core passes with tangents, on params whose problem and q, k, v, out, lse are set: the JVP
// of sdpa_jvp (writes out and lse too), or, with given_stats, the tangent pass that starts sdpa_bwd_jvp
// (reads the saved out and lse). Returns the new out_dot and lse_dot.
struct TangentOutputs {
  Tensor out_dot, lse_dot;
};
// A scratch already in p (the backward-JVP's, shared with this pass) is used as it is.
TangentOutputs run_tangent_pass(kernels::SdpaFwdParams p, const TangentOperands& t, const Tensor& q, const Tensor& v,
                                bool given_stats) {
  TangentOutputs o{at::empty(out_shape(q, v), q.options()), at::empty(stats_shape(q), q.options().dtype(at::kFloat))};
  p.q_dot = t.q_dot.view;
  p.k_dot = t.k_dot.view;
  p.v_dot = t.v_dot.view;
  p.out_dot = tc_operand(o.out_dot).view;
  p.lse_dot = o.lse_dot.data_ptr();
  if (p.batch > 0) {
    const Tensor scratch =
        p.scratch != nullptr ? Tensor() : attach_scratch(p, kc::sdpa_fwd_tc_scratch_bytes(tc_dtype(q), p), q);
    const Tensor amax = p.operand_amax != nullptr ? Tensor() : attach_operand_amax(p, q);
    const auto stream = at::cuda::getCurrentCUDAStream();
    if (given_stats) kc::sdpa_tangent_tc(tc_dtype(q), p, stream);
    else kc::sdpa_fwd_tc(tc_dtype(q), p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return o;
}

}  // namespace

std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    const OptTensor& mask) {
  c10::cuda::CUDAGuard guard(q.device());
  if (!use_tensor_cores(q, k, v, scale, mask)) return row_kernels::sdpa_fwd(simt_kernels(), q, k, v, causal, scale, mask);
  if (via_bfloat16(q)) {
    const auto [out, lse] = sdpa_fwd(bf16(q), bf16(k), bf16(v), causal, scale, mask);
    return {f32(out), lse};
  }
  FwdLaunch f;
  prepare_fwd(f, q, k, v, causal, scale, mask);
  if (f.p.batch > 0) {
    const Tensor scratch = attach_scratch(f.p, kc::sdpa_fwd_tc_scratch_bytes(tc_dtype(q), f.p), q);
    const Tensor amax = attach_operand_amax(f.p, q);
    kc::sdpa_fwd_tc(tc_dtype(q), f.p, at::cuda::getCurrentCUDAStream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {f.out.t, f.lse};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale,
                                            const OptTensor& mask, const OptTensor& mask_dot) {
  c10::cuda::CUDAGuard guard(q.device());
  if (!use_tensor_cores(q, k, v, scale, mask)) {
    return row_kernels::sdpa_jvp(simt_kernels(), q, k, v, q_dot, k_dot, v_dot, causal, scale, mask, mask_dot);
  }
  if (via_bfloat16(q)) {  // (a float32 mask and its tangent are read as float32: MaskKind::kBias32)
    const auto [out, lse, out_dot] =
        sdpa_jvp(bf16(q), bf16(k), bf16(v), bf16(q_dot), bf16(k_dot), bf16(v_dot), causal, scale, mask, mask_dot);
    return {f32(out), lse, f32(out_dot)};
  }
  FwdLaunch f;
  prepare_fwd(f, q, k, v, causal, scale, mask, mask_dot);
  const auto o = run_tangent_pass(f.p, tc_tangents(q_dot, k_dot, v_dot, q, k, v), q, v, /*given_stats=*/false);
  return {f.out.t, f.lse, o.out_dot};
}

namespace {

// What sdpa_bwd and sdpa_bwd_jvp share: the primal operands, the saved statistics, the fp32 row terms
// and the dQ (or dQ tangent) accumulation buffer, held until the launch, and the params that point at
// them. The buffer is zeroed by the first kernel on the stream: the row terms, or the backward-JVP's tangent pass
// (SdpaFwdParams::zero_dq_accum).
struct BwdLaunch {
  Operand q, k, v, out, dout;
  Tensor lse, delta, dq_accum, dq_turns, tail_part;
  row_kernels::MaskOperand mask, mask_dot;
  row_kernels::MaskGradOperand dmask;
  Tensor mask_tiles;
  Heads heads;
  kernels::SdpaBwdParams p;
  kc::BwdWorkspace ws;
};
void prepare_bwd(BwdLaunch& b, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 const Tensor& lse, const Tensor& dout, bool causal, double scale, const OptTensor& mask,
                 const OptTensor& mask_dot, bool mask_grad) {
  const auto stats = [&] { return at::empty(stats_shape(q), q.options().dtype(at::kFloat)); };
  b.q = tc_operand(q);
  b.k = tc_operand(k);
  b.v = tc_operand(v);
  b.out = tc_operand(out);
  b.dout = tc_operand(dout);
  b.lse = lse.contiguous();
  b.delta = stats();
  b.dq_accum = at::empty(q.sizes(), q.options().dtype(at::kFloat));
  b.ws.dq_accum = b.p.zero_dq_accum = b.dq_accum.data_ptr<float>();
  // PyTorch's determinism contract: under torch.use_deterministic_algorithms(True) the key blocks add
  // their dQ shares in a fixed order (docs/contract.md, "Determinism"), so dQ is bit-wise reproducible.
  if (at::globalContext().deterministicAlgorithms()) {
    b.ws.dq_turn_slots = (q.size(-2) + 15) / 16;
    b.dq_turns = at::zeros({batch_of(q) * b.ws.dq_turn_slots}, q.options().dtype(at::kInt));
    b.ws.dq_turns = b.dq_turns.data_ptr<int>();
  }
  fill_problem(b.p, q, k, v, causal, scale);
  b.heads = heads_of(q, k);
  b.mask = row_kernels::mask_operand(mask, q, k.size(-2), std::nullopt);
  b.mask_tiles = attach_mask_tiles(b.mask.view, q, k.size(-2));
  b.p.mask = b.mask.view;
  b.mask_dot = row_kernels::mask_operand(mask_dot, q, k.size(-2), std::nullopt);
  b.p.mask_dot = b.mask_dot.view;
  // A float mask's gradient (or tangent) in fp32 (a full-size 16-bit mask's in its dtype), added with atomics where
  // the mask is broadcast, except in deterministic mode, where each pair stores its own element and the sum over the
  // broadcast dims follows.
  if (mask_grad) {
    b.dmask = row_kernels::mask_grad_operand(*mask, q, k.size(-2), at::kFloat,
                                             !at::globalContext().deterministicAlgorithms(), /*may_narrow=*/true);
    b.p.dmask = b.dmask.view;
  }
  b.p.q = b.q.view;
  b.p.k = key_side(b.k.view, b.heads);
  b.p.v = key_side(b.v.view, b.heads);
  b.p.out = b.out.view;
  b.p.lse = b.lse.data_ptr();
  b.p.dout = b.dout.view;
  b.p.delta = b.delta.data_ptr();
  // The warpgroup kernels' split last wave (tile_policy.h, plan_bwd_tail): fp32 scratch for the partial dK, dV of
  // the key blocks whose walks are split; not in deterministic mode, where no walk is split.
  if (!at::globalContext().deterministicAlgorithms()) {
    const size_t bytes = kc::sdpa_bwd_tail_bytes(tc_dtype(q), b.p);
    if (bytes > 0) {
      b.tail_part = at::empty({static_cast<int64_t>(bytes / sizeof(float))}, q.options().dtype(at::kFloat));
      b.ws.tail_part = b.tail_part.data_ptr<float>();
      b.ws.tail_part_bytes = bytes;
    }
  }
}

// Grouped-query heads without a mask take the backward's plain build, one CTA per query head, as FlashAttention
// does: key-side operands are read where they lie with the group's addressing (kReadKeysByGroup, tile_io.cuh), and
// each CTA adds its dK, dV (or their tangents) to zeroed fp32 buffers of the key side's shape with atomics
// (BwdWorkspace::key_side_adds), so the group is summed inside the kernels, in fp32, and rounded once. The grouped
// build (one CTA per key/value head streaming the group's heads, summing in registers) ran a quarter of the CTAs
// with 52 bytes of spills a thread at D = 64: 1.4x the plain backward's time on the same work (Nsight Compute on
// the H200, docs/performance.md). It stays for deterministic mode (its sums have one order) and under a mask (the
// masked build is grouped).
struct KeySideGradients {
  Tensor dk, dv;  // what the kernels write: in k's and v's dtype, or the fp32 sums
  Heads heads;
  bool adds = false;

  KeySideGradients(const Tensor& k, const Tensor& v, Heads h, bool masked) : heads(h) {
    adds = h.group > 1 && !masked && !at::globalContext().deterministicAlgorithms();
    const auto options = [&](const Tensor& t) { return adds ? t.options().dtype(at::kFloat) : t.options(); };
    dk = adds ? at::zeros(k.sizes(), options(k)) : at::empty_like(k, at::MemoryFormat::Contiguous);
    dv = adds ? at::zeros(v.sizes(), options(v)) : at::empty_like(v, at::MemoryFormat::Contiguous);
  }
  // Points the params (p.*dk_view, p.*dv_view) and workspace at the buffers; with adds the launch takes the plain
  // build (group 1: a CTA per query head).
  void set(kernels::SdpaBwdParams& p, kc::BwdWorkspace& ws, MatrixView kernels::SdpaBwdParams::*dk_view,
           MatrixView kernels::SdpaBwdParams::*dv_view) const {
    if (adds) p.group = 1;
    ws.key_side_adds = adds;
    p.*dk_view = key_side(tc_operand(dk).view, heads);
    p.*dv_view = key_side(tc_operand(dv).view, heads);
  }
  // k's and v's gradients (or tangents) in their dtypes.
  std::pair<Tensor, Tensor> result(const Tensor& k, const Tensor& v) const {
    if (!adds) return {dk, dv};
    return {dk.to(k.scalar_type()), dv.to(v.scalar_type())};
  }
};

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v,
                                                    const Tensor& out, const Tensor& lse, const Tensor& dout,
                                                    bool causal, double scale, const OptTensor& mask, bool mask_grad) {
  c10::cuda::CUDAGuard guard(q.device());
  if (!use_tensor_cores(q, k, v, scale, mask)) {
    return row_kernels::sdpa_bwd(simt_kernels(), q, k, v, out, lse, dout, causal, scale, mask, mask_grad);
  }
  if (via_bfloat16(q)) {
    const auto [dq, dk, dv, dmask] =
        sdpa_bwd(bf16(q), bf16(k), bf16(v), bf16(out), lse, bf16(dout), causal, scale, mask, mask_grad);
    return {f32(dq), f32(dk), f32(dv), dmask};
  }
  BwdLaunch b;
  prepare_bwd(b, q, k, v, out, lse, dout, causal, scale, mask, std::nullopt, mask_grad);
  Tensor dq = at::empty_like(q, at::MemoryFormat::Contiguous);
  const KeySideGradients grads(k, v, b.heads, b.p.mask.ptr != nullptr);
  b.p.dq = tc_operand(dq).view;
  grads.set(b.p, b.ws, &kernels::SdpaBwdParams::dk, &kernels::SdpaBwdParams::dv);
  if (b.p.batch > 0) {
    const Tensor scratch = attach_scratch(b.p, kc::sdpa_bwd_tc_scratch_bytes(tc_dtype(q), b.p), q);
    const Tensor amax = attach_operand_amax(b.p, q);
    kc::sdpa_bwd_tc(tc_dtype(q), b.p, b.ws, at::cuda::getCurrentCUDAStream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const auto [dk, dv] = grads.result(k, v);
  return {dq, dk, dv, b.dmask.result(mask, q)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
    const OptTensor& q_dot, const OptTensor& k_dot, const OptTensor& v_dot, const OptTensor& dout_dot, bool causal,
    double scale, const OptTensor& mask, const OptTensor& mask_dot, bool mask_grad) {
  c10::cuda::CUDAGuard guard(q.device());
  if (!use_tensor_cores(q, k, v, scale, mask)) {
    return row_kernels::sdpa_bwd_jvp(simt_kernels(), q, k, v, out, lse, dout, q_dot, k_dot, v_dot, dout_dot, causal,
                                     scale, mask, mask_dot, mask_grad);
  }
  if (via_bfloat16(q)) {
    const auto [dq_dot, dk_dot, dv_dot, out_dot, dmask_dot] =
        sdpa_bwd_jvp(bf16(q), bf16(k), bf16(v), bf16(out), lse, bf16(dout), bf16(q_dot), bf16(k_dot), bf16(v_dot),
                     bf16(dout_dot), causal, scale, mask, mask_dot, mask_grad);
    return {f32(dq_dot), f32(dk_dot), f32(dv_dot), f32(out_dot), dmask_dot};
  }
  BwdLaunch b;
  prepare_bwd(b, q, k, v, out, lse, dout, causal, scale, mask, mask_dot, mask_grad);
  // The tangent pass gives out_dot and lse_dot from the saved out and lse, rowsum(dout * out_dot) into delta_dot
  // and rowsum(dout * out) into delta (the row terms, run only with a dout tangent, add dout_dot * out); it zeroes
  // the dQ-tangent buffer; its operands serve the backward-JVP too.
  Tensor delta_dot = at::empty(stats_shape(q), q.options().dtype(at::kFloat));
  b.p.delta_dot = b.p.dout_out_dot = delta_dot.data_ptr();
  b.p.dout_out = b.p.delta;
  const TangentOperands t = tc_tangents(q_dot, k_dot, v_dot, q, k, v);
  // Without a dout tangent (the double backward) the kernels skip its terms instead of reading zeros.
  const bool has_dout_dot = dout_dot.has_value() && dout_dot->defined();
  const Operand dod = has_dout_dot ? tc_operand(*dout_dot) : Operand{};
  b.p.q_dot = t.q_dot.view;
  b.p.k_dot = t.k_dot.view;
  b.p.v_dot = t.v_dot.view;
  if (has_dout_dot) b.p.dout_dot = dod.view;
  // float32 at "high": one scratch for both passes, where the backward-JVP finds the copies of the six operands it
  // shares with the tangent pass as that pass formed them (SdpaBwdParams::tangent_copies_formed).
  // Float32Half: both passes' exponents from every operand, dout's tangent included (attach_operand_amax).
  Tensor scratch, amax;
  if (b.p.batch > 0) {
    const kc::Dtype dtype = tc_dtype(q);
    const size_t tangent_bytes = kc::sdpa_fwd_tc_scratch_bytes(dtype, b.p);
    const size_t bwd_jvp_bytes = kc::sdpa_bwd_tc_scratch_bytes(dtype, b.p);
    scratch = attach_scratch(b.p, std::max(tangent_bytes, bwd_jvp_bytes), q);
    b.p.tangent_copies_formed = tangent_bytes > 0 && bwd_jvp_bytes > 0;
    amax = attach_operand_amax(b.p, q, has_dout_dot ? &b.p.dout_dot : nullptr);
  }
  const auto tangents = run_tangent_pass(b.p, t, q, v, /*given_stats=*/true);
  Tensor dq_dot = at::empty_like(q, at::MemoryFormat::Contiguous);
  const KeySideGradients grads(k, v, b.heads, b.p.mask.ptr != nullptr);
  b.p.out_dot = tc_operand(tangents.out_dot).view;
  b.p.lse_dot = tangents.lse_dot.data_ptr();
  b.p.dq_dot = tc_operand(dq_dot).view;
  grads.set(b.p, b.ws, &kernels::SdpaBwdParams::dk_dot, &kernels::SdpaBwdParams::dv_dot);  // after the tangent pass
  if (b.p.batch > 0) {
    kc::sdpa_bwd_jvp_tc(tc_dtype(q), b.p, b.ws, at::cuda::getCurrentCUDAStream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const auto [dk_dot, dv_dot] = grads.result(k, v);
  return {dq_dot, dk_dot, dv_dot, tangents.out_dot, b.dmask.result(mask, q)};
}

}  // namespace theria::fused
