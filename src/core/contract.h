// Input contract of every theria op: shapes, dtypes and devices, checked with messages that
// name the argument and the expected form. Knows nothing of autograd or of any backend.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace theria::core {

// Sizes of one attention problem: q (..., Hq, L, E), k (..., Hkv, S, E), v (..., Hkv, S, Ev): the leading
// sizes are shared, except that grouped-query attention gives key and value Hkv heads, a divisor of Hq.
struct SdpaShape {
  std::vector<int64_t> leading;  // the query's batch/head sizes "..."
  int64_t batch = 1;             // product of `leading`
  int64_t heads_q = 1;           // Hq: the query's last leading size (1 for 2-D inputs)
  int64_t group = 1;             // Hq / Hkv: query heads per key/value head (1 without grouped-query attention)
  int64_t len_q = 0;             // L
  int64_t len_kv = 0;            // S
  int64_t dim_qk = 0;            // E
  int64_t dim_v = 0;             // Ev

  std::vector<int64_t> q_shape() const { return with_tail(len_q, dim_qk); }
  std::vector<int64_t> k_shape() const { return with_tail(len_kv, dim_qk); }
  std::vector<int64_t> v_shape() const { return with_tail(len_kv, dim_v); }
  std::vector<int64_t> out_shape() const { return with_tail(len_q, dim_v); }
  std::vector<int64_t> lse_shape() const;
  std::vector<int64_t> with_tail(int64_t rows, int64_t cols) const;

  // A problem with no work: some size is zero. Every backend answers it as PyTorch's math SDPA
  // does (empty outputs, or zeros where a sum over keys is empty) through the reference
  // composition, without launching a kernel (docs/contract.md).
  bool empty() const { return batch == 0 || len_q == 0 || len_kv == 0 || dim_qk == 0 || dim_v == 0; }
};

// The same test on the operands alone: q holds batch x L x E elements and v batch x S x Ev.
// (SymInt sizes: symbolic under torch.compile's dynamic shapes, where the test becomes a guard.)
inline bool empty_problem(const at::Tensor& q, const at::Tensor& v) {
  return q.sym_numel() == 0 || v.sym_numel() == 0;
}

// "[2, 3, 4]": a shape as the messages print it.
std::string shape_str(at::IntArrayRef sizes);

// Checks query/key/value and returns the problem sizes. `op` names the caller in messages. The primitive ops
// take grouped-query shapes as they come (key/value heads dividing the query's); theria.sdpa asks for
// enable_gqa first, as PyTorch does.
SdpaShape check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* op);

// attn_mask: absent, or a boolean (true = take part) or additive float tensor of query's dtype, broadcastable to
// (..., L, S) over query's leading sizes, on query's device.
void check_mask(const std::optional<at::Tensor>& mask, const SdpaShape& shape, const at::Tensor& q, bool is_causal,
                const char* op);
// A float mask's derivatives asked of a primitive op: its tangent mask_dot (absent, or of the mask's shape, dtype
// and device) and its gradient (mask_grad); both need a float attn_mask.
void check_mask_derivatives(const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& mask_dot,
                            bool mask_grad, const char* op);
// True when attn_mask is a float tensor that requires grad or has a forward-mode tangent.
bool mask_is_differentiable(const std::optional<at::Tensor>& mask);

// Checks that `t` (argument `name`) has `shape` and the dtype/device of `like`.
void check_same_as(const at::Tensor& t, const char* name, const std::vector<int64_t>& shape,
                   const at::Tensor& like, const char* like_name, const char* op);

// Checks an optional tangent: absent, or shaped and typed like its primal.
void check_tangent(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& primal,
                   const char* primal_name, const char* op);

// Row statistics (lse and its tangent): (..., L), float64 for float64 inputs, float32 otherwise.
c10::ScalarType stats_dtype(c10::ScalarType input_dtype);
void check_stats(const at::Tensor& lse, const char* name, const SdpaShape& shape,
                 const at::Tensor& q, const char* op);

// 1/sqrt(E) unless given; a given scale must be finite. With E = 0 every logit is 0 whatever the
// scale (PyTorch's math SDPA computes 1/sqrt(0) = inf and multiplies it into empty operands), so 1.
double resolve_scale(std::optional<double> scale, int64_t dim_qk, const char* op);

// The whole argument contract of each primitive op, checked by its autograd kernel and by its
// device kernels alike, so every path (explicit, reference, exact) refuses the same inputs.
using OptTensor = std::optional<at::Tensor>;
SdpaShape check_fwd_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                         const OptTensor& mask, const char* op);
SdpaShape check_jvp_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& q_dot,
                         const OptTensor& k_dot, const OptTensor& v_dot, double scale, const OptTensor& mask,
                         const char* op);
SdpaShape check_bwd_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                         const at::Tensor& lse, const at::Tensor& dout, double scale, const OptTensor& mask,
                         const char* op);
SdpaShape check_bwd_jvp_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                             const at::Tensor& lse, const at::Tensor& dout, const OptTensor& q_dot,
                             const OptTensor& k_dot, const OptTensor& v_dot, const OptTensor& dout_dot,
                             double scale, const OptTensor& mask, const char* op);

}  // namespace theria::core
