// Torch binding of the fused CUDA kernels (same contract as explicit_backend.h): checks what the
// kernels support, allocates outputs, fills the params structs and launches on the current stream.
//   fp16/bf16 with E == Ev in {32, 64, 96, 128}: tensor-core forward, JVP, backward, backward-JVP;
//   fp32 with those head dims under torch.set_float32_matmul_precision("medium"), which lets float32
//   products use bfloat16 internally: the same kernels on bfloat16 copies, float32 results;
//   fp32 with those head dims at "high", with no mask and no grouped heads: the same kernels on float16 copies
//   scaled by powers of two (head dims 64 and 128: TF32's mantissa, one product for one) or on float32 split into
//   two bfloat16 parts (32 and 96: three products for one), float32 results;
//   fp32 at "highest" with E == Ev in {32, 64}, no mask and no grouped heads: the same kernels on three bfloat16
//   parts (six products for one), float32 accuracy;
//   everything else up to head dim 256 (other fp32, fp64, other head dims, a scale <= 0): the SIMT kernels, in
//   full float32 (16-bit inputs upcast) or float64 precision. fp32 is never run as TF32.
// Every path but the float32 split kernels takes attn_mask (a constant: bool or additive, read where it lies) and
// grouped-query key/value heads (summed over each group inside the kernels).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

namespace theria::fused {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Whether the fused kernels serve `batch` (product of the leading sizes) problems of head dims (E, Ev);
// the reason when not.
bool supports(int64_t batch, int64_t dim_qk, int64_t dim_v, std::string* why_not = nullptr);

// Whether inputs of this dtype and these head dims run on the tensor-core kernels (else the SIMT ones); float32
// does where core::float32_products() allows bfloat16 products: on bfloat16 copies ("medium"), or on split operands
// ("high"), which have a plain build only: `plain` says there is no attn_mask and no grouped heads.
bool uses_tensor_cores(at::ScalarType dtype, int64_t dim_qk, int64_t dim_v, bool plain);

// Total memory of a CUDA device, in bytes.
int64_t device_memory_bytes(c10::DeviceIndex device);

std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    const OptTensor& mask);

// mask_dot: a float mask's tangent; mask_grad: also return the float mask's gradient (the backward-JVP: its
// tangent), else an empty tensor in its place.
std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale,
                                            const OptTensor& mask, const OptTensor& mask_dot);

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v,
                                                    const Tensor& out, const Tensor& lse, const Tensor& dout,
                                                    bool causal, double scale, const OptTensor& mask, bool mask_grad);

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
    const OptTensor& q_dot, const OptTensor& k_dot, const OptTensor& v_dot, const OptTensor& dout_dot, bool causal,
    double scale, const OptTensor& mask, const OptTensor& mask_dot, bool mask_grad);

}  // namespace theria::fused
