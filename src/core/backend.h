// Which backend serves a request. The one place where "auto" is decided and where a backend
// that cannot serve the inputs says so.
#pragma once

#include <theria/sdpa.h>
#include <theria/tolerances.h>

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <string_view>

namespace theria::core {

struct ResolvedBackend {
  Backend backend;
  std::string reason;
};

// What the choice needs to know of attn_mask: none, a constant, or a float mask that requires grad or carries a
// tangent (every backend serves it; the reason says the kernels write its L x S gradient).
enum class MaskUse { kNone, kConstant, kDifferentiable };
MaskUse mask_of(const std::optional<at::Tensor>& mask);

// Resolves `requested` for query q and value v (their device and head dims) and the mask; throws a clear error
// when the requested backend cannot serve them.
ResolvedBackend resolve_backend(Backend requested, const at::Tensor& q, const at::Tensor& v, const char* op,
                                MaskUse mask = MaskUse::kNone);
ResolvedBackend resolve_backend(std::string_view requested, const at::Tensor& q, const at::Tensor& v,
                                const char* op, MaskUse mask = MaskUse::kNone);

// What PyTorch's float32 matmul precision lets float32 products run in (torch.set_float32_matmul_precision):
// "medium" ("float32 matrix multiplications use bfloat16 datatype for internal computations"): the fused
// tensor-core kernels on bfloat16 copies, held to the tolerance table's bfloat16 row; "high" (TF32, or "treat
// each float32 number as the sum of two bfloat16 numbers"): the fused tensor-core kernels on float16 copies scaled
// by powers of two (TF32's mantissa) or bfloat16-split operands, held to TF32's row; "highest", or the newer
// per-backend API's "ieee" for CUDA matmuls: float32.
Float32Products float32_products();

// Where `auto` sends CUDA inputs that only the fused SIMT kernels serve (float32, float64, head dims without a
// tensor-core kernel): the reference composition is faster at every measured size (docs/performance.md,
// "float32 on CUDA": 12-77x), so it is taken unless its L x S buffers would crowd the GPU: about twelve L x S
// matrices per batch position at the peak of a double backward (PyTorch math's fp32 HVP measured 11.1-11.6),
// allowed up to a quarter of the device's memory. Pure, so that a test pins the table.
int64_t reference_hvp_bytes(int64_t batch, int64_t len_q, int64_t len_kv, int64_t element_size);
bool reference_beats_simt(int64_t batch, int64_t len_q, int64_t len_kv, int64_t element_size, int64_t device_bytes);

}  // namespace theria::core
