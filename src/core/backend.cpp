#include "core/backend.h"

#include "core/contract.h"
#include "fused/fused_backend.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>

namespace theria {

Backend parse_backend(std::string_view name) {
  if (name == "auto") return Backend::Auto;
  if (name == "reference") return Backend::Reference;
  if (name == "explicit") return Backend::Explicit;
  if (name == "fused") return Backend::Fused;
  TORCH_CHECK(false, "theria: unknown backend '", std::string(name),
              "': expected one of 'auto', 'reference', 'explicit', 'fused'");
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::Auto: return "auto";
    case Backend::Reference: return "reference";
    case Backend::Explicit: return "explicit";
    case Backend::Fused: return "fused";
  }
  return "?";
}

bool fused_kernels_built() {
#ifdef THERIA_WITH_FUSED
  return true;
#else
  return false;
#endif
}

}  // namespace theria

namespace theria::core {

Float32Products float32_products() {
  auto& ctx = at::globalContext();
  // The new API (torch.backends.cuda.matmul.fp32_precision) has no bf16 for CUDA and maps both "medium" and
  // "high" to "tf32"; only the legacy setting tells them apart, and its getter raises when the two APIs were
  // mixed: then the new API's "tf32" (reduced precision allowed, never bfloat16 alone) takes "high"'s products.
  if (ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) != at::Float32Precision::TF32) {
    return Float32Products::kFloat32;
  }
  try {
    switch (ctx.float32MatmulPrecision()) {
      case at::Float32MatmulPrecision::MEDIUM: return Float32Products::kBFloat16;
      case at::Float32MatmulPrecision::HIGH: return Float32Products::kTF32;
      default: return Float32Products::kFloat32;
    }
  } catch (const c10::Error&) {
    return Float32Products::kTF32;
  }
}

int64_t reference_hvp_bytes(int64_t batch, int64_t len_q, int64_t len_kv, int64_t element_size) {
  constexpr int64_t kMatrices = 12;
  return kMatrices * batch * len_q * len_kv * element_size;
}

bool reference_beats_simt(int64_t batch, int64_t len_q, int64_t len_kv, int64_t element_size, int64_t device_bytes) {
  return reference_hvp_bytes(batch, len_q, len_kv, element_size) <= device_bytes / 4;
}

namespace {

std::string mib(int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Auto's choice for CUDA inputs the fused kernels serve (see reference_beats_simt). `plain`: no attn_mask and no
// grouped heads (the float32 split kernels have no other build).
ResolvedBackend auto_on_cuda(const at::Tensor& q, const at::Tensor& v, int64_t batch, bool plain) {
  const bool is_float32 = q.scalar_type() == at::kFloat;
  const Float32Products products = is_float32 ? float32_products() : Float32Products::kFloat32;
  if (fused::uses_tensor_cores(q.scalar_type(), q.size(-1), v.size(-1), plain)) {
    if (products == Float32Products::kBFloat16) {
      return {Backend::Fused,
              "auto: float32 at matmul precision \"medium\" (PyTorch lets float32 products use bfloat16) goes to "
              "the fused tensor-core kernels on bfloat16 copies, float32 results (the tolerance table's bfloat16 row)"};
    }
    if (is_float32 && products == Float32Products::kFloat32) {
      return {Backend::Fused,
              "auto: float32 at matmul precision \"highest\" goes to the fused tensor-core kernels on three "
              "bfloat16 parts per operand, six products for each (float32 accuracy: the tolerance table's float32 "
              "row), float32 results"};
    }
    if (products == Float32Products::kTF32) {
      const bool half_copies = q.size(-1) == 64 || q.size(-1) == 128;
      return {Backend::Fused,
              half_copies
                  ? "auto: float32 at matmul precision \"high\" (PyTorch allows TF32 products) goes to the fused "
                    "tensor-core kernels on float16 copies scaled by powers of two (TF32's 10-bit mantissa, rounded "
                    "to nearest), float32 results (the tolerance table's TF32 row)"
                  : "auto: float32 at matmul precision \"high\" (PyTorch allows TF32 products) goes to the fused "
                    "tensor-core kernels on bfloat16-split operands, three products for each (16 bits of "
                    "mantissa), float32 results (the tolerance table's TF32 row)"};
    }
    return {Backend::Fused, "auto: CUDA tensors go to the fused tensor-core kernels"};
  }
  const int64_t len_q = q.sym_size(-2).guard_int(__FILE__, __LINE__), len_kv = v.sym_size(-2).guard_int(__FILE__, __LINE__);
  const int64_t need = reference_hvp_bytes(batch, len_q, len_kv, q.element_size());
  const int64_t device = fused::device_memory_bytes(q.device().index());
  std::string precision;
  if (products == Float32Products::kFloat32 && is_float32) {
    precision = " at float32 matmul precision \"highest\" (its three-part kernels take head dims 32 and 64 with no "
                "attn_mask and no grouped heads; \"high\" and \"medium\" allow more)";
  } else if (products == Float32Products::kTF32 && !plain) {
    precision = " with an attn_mask or grouped heads at float32 matmul precision \"high\" (its kernels have no "
                "such build; \"medium\" has)";
  }
  const std::string what = std::string("auto: ") + c10::toString(q.scalar_type()) + " with E=" + std::to_string(q.size(-1)) +
                           ", Ev=" + std::to_string(v.size(-1)) + " has no tensor-core kernel" + precision +
                           ", and the fused SIMT kernels lose to the reference composition "
                           "at every measured size (docs/performance.md, \"float32 on CUDA\"); ";
  if (reference_beats_simt(batch, len_q, len_kv, q.element_size(), device)) {
    return {Backend::Reference, what + "its L x S buffers (about " + mib(need) +
                                    " in a double backward) fit in a quarter of this GPU's memory, so the reference"};
  }
  return {Backend::Fused, what + "but its L x S buffers (about " + mib(need) +
                              " in a double backward) would take more than a quarter of this GPU's memory, so the "
                              "fused SIMT kernels (no L x S buffer)"};
}

}  // namespace

MaskUse mask_of(const std::optional<at::Tensor>& mask) {
  if (!mask.has_value() || !mask->defined()) return MaskUse::kNone;
  return mask_is_differentiable(mask) ? MaskUse::kDifferentiable : MaskUse::kConstant;
}

namespace {

ResolvedBackend resolve(Backend requested, const at::Tensor& q, const at::Tensor& v, const char* op, MaskUse mask) {
  const bool on_cpu = q.device().is_cpu();
  const bool on_cuda = q.device().is_cuda();
  // Sizes as SymInts: under torch.compile's dynamic shapes they are symbolic, and a comparison becomes a
  // guard. The batch only matters where the fused kernels could run.
  std::string fused_gap;
  bool fused_fits = false;
  int64_t batch = 0;
  if (on_cuda && fused_kernels_built()) {
    batch = q.sym_numel() == 0 ? 0 : (q.sym_numel() / (q.sym_size(-2) * q.sym_size(-1))).guard_int(__FILE__, __LINE__);
    fused_fits = fused::supports(batch, q.size(-1), v.size(-1), &fused_gap);
  }
  // A problem with no work is answered by the reference composition on every backend (its empty
  // products and sums are exactly PyTorch's math SDPA); a requested backend's device rules still apply.
  const bool empty = empty_problem(q, v);
  const ResolvedBackend empty_answer{
      Backend::Reference, "empty problem (a zero size): the reference composition answers it, no kernel runs"};
  switch (requested) {
    case Backend::Reference:
      return {Backend::Reference, "requested: plain ATen composition, differentiated by PyTorch"};
    case Backend::Explicit:
      TORCH_CHECK(on_cpu, op, ": backend 'explicit' runs on CPU tensors only, got query on ", q.device(),
                  "; use 'fused' or 'reference' for CUDA tensors, or 'auto'");
      if (empty) return empty_answer;
      return {Backend::Explicit, "requested: explicit CPU kernels"};
    case Backend::Fused:
      TORCH_CHECK(on_cuda, op, ": backend 'fused' runs on CUDA tensors only, got query on ", q.device(),
                  "; use 'explicit' or 'reference' for CPU tensors, or 'auto'");
      TORCH_CHECK(fused_kernels_built(), op,
                  ": backend 'fused' is not available: this build of theria has no fused CUDA kernels; "
                  "use 'reference' or 'auto'");
      if (empty) return empty_answer;
      TORCH_CHECK(fused_fits, op, ": backend 'fused' cannot serve these inputs: ", fused_gap,
                  "; use 'reference' or 'auto'");
      return {Backend::Fused, "requested: fused CUDA kernels"};
    case Backend::Auto:
      if (empty) return empty_answer;
      if (on_cpu) {
        return {Backend::Explicit, "auto: CPU tensors go to the explicit kernels (no T x T buffer)"};
      }
      if (on_cuda && fused_fits) {
        const bool grouped = q.dim() >= 3 && v.dim() >= 3 && q.size(-3) != v.size(-3);
        return auto_on_cuda(q, v, batch, mask == MaskUse::kNone && !grouped);
      }
      if (on_cuda && fused_kernels_built()) {
        return {Backend::Reference, "auto: " + fused_gap + ", so the reference composition"};
      }
      if (on_cuda) {
        return {Backend::Reference,
                "auto: CUDA tensors, and this build has no fused CUDA kernels, so the reference composition"};
      }
      return {Backend::Reference, "auto: only the reference composition runs on this device"};
  }
  TORCH_CHECK(false, op, ": unhandled backend");
}

}  // namespace

ResolvedBackend resolve_backend(Backend requested, const at::Tensor& q, const at::Tensor& v, const char* op,
                                MaskUse mask) {
  ResolvedBackend r = resolve(requested, q, v, op, mask);
  if (mask == MaskUse::kDifferentiable && r.backend != Backend::Reference) {
    r.reason += "; attn_mask requires grad: the kernels write its gradient dS (L x S by nature, summed over the "
                "dims the mask broadcasts over) and take its tangent";
  }
  return r;
}

ResolvedBackend resolve_backend(std::string_view requested, const at::Tensor& q, const at::Tensor& v,
                                const char* op, MaskUse mask) {
  return resolve_backend(parse_backend(requested), q, v, op, mask);
}

}  // namespace theria::core
