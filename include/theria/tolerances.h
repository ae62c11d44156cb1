// The one table of accuracy tolerances used by every test and by `theria verify`.
//
// An error is measured as max|x - ref| / max(max|ref|, 1), where ref is the float64 reference
// computed by PyTorch autograd through the plain ATen composition on the same (rounded) inputs:
// relative to the largest reference magnitude, and absolute where that is below 1. The floor
// matters where a derivative is exactly zero (a causal row that sees one key has a constant
// softmax, so its second derivatives vanish and rounding noise of 1e-17 must not count as
// infinitely wrong). Test inputs are standard normal, so derivatives are O(1).
//
// The row is that of the products: float32 under torch.set_float32_matmul_precision("medium") runs the fused
// bfloat16 tensor-core kernels (docs/contract.md), so its results are held to the bfloat16 row; at "high" PyTorch
// allows TF32 products (10 explicit mantissa bits), and the fused kernels run float32 operands as float16 copies
// scaled by powers of two (TF32's mantissa, rounded to nearest) at head dims 64 and 128, as two bfloat16 parts at
// the others (16 bits): their results are held to TF32's row (Float32Products::kTF32), which is float16's.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <string_view>
#include <vector>

namespace theria {

// What is being compared: the forward output, or a derivative of order 1..3.
enum class Derivative {
  Forward = 0,      // out
  FirstOrder = 1,   // backward (dQ, dK, dV) and JVP (out tangent)
  SecondOrder = 2,  // double backward / HVP, forward-over-reverse
  ThirdOrder = 3,
};

struct Tolerance {
  double max_rel_error;
};

Tolerance tolerance(c10::ScalarType dtype, Derivative order);

// What float32 products run in on the fused tensor-core kernels, after PyTorch's float32 matmul precision:
// "highest" float32 (three bfloat16 parts, SIMT kernels or cuBLAS), "high" TF32's mantissa or better (scaled float16
// copies at head dims 64 and 128; bfloat16 pairs x = hi + lo, 16 significant bits, at the others; cuBLAS TF32 in the
// reference composition), "medium" bfloat16.
enum class Float32Products { kFloat32, kTF32, kBFloat16 };

// The row of float32 results computed with `products` (kFloat32: the float32 row).
Tolerance float32_tolerance(Float32Products products, Derivative order);

// The products of a torch.set_float32_matmul_precision setting by its name ("highest", "high", "medium"); an error
// naming the choices otherwise.
Float32Products float32_products_named(std::string_view matmul_precision);

// A dtype as Python prints torch dtypes, without "torch." ("float32", "bfloat16"); c10's name for the others.
const char* dtype_name(c10::ScalarType dtype);

// max|x - ref| / max(max|ref|, 1), computed in float64. NaN in x or ref gives +inf.
double max_relative_error(const at::Tensor& x, const at::Tensor& ref);

// The same over a derivative with several parts (dQ, dK, dV): the largest error of any part over
// the largest magnitude of any part, so that a part which is exactly zero in the reference (dQ of
// a row that sees a single key) is judged on the scale of the whole derivative.
double max_relative_error(const std::vector<at::Tensor>& x, const std::vector<at::Tensor>& ref);

}  // namespace theria
