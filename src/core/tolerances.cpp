// The single tolerance table (include/theria/tolerances.h). Each entry is a bound on
// max|x - ref| / max|ref| against the float64 reference on the same inputs. They are a few
// hundred units of roundoff for the dtype (float64 2.2e-16, float32 1.2e-7, float16 9.8e-4,
// bfloat16 7.8e-3), growing with the derivative order because each order chains more products.
#include <theria/tolerances.h>

#include <ATen/ATen.h>

#include <array>
#include <limits>

namespace theria {

Tolerance tolerance(c10::ScalarType dtype, Derivative order) {
  //                                 forward  1st     2nd     3rd
  static constexpr std::array<double, 4> f64{1e-12, 1e-11, 1e-10, 1e-9};
  static constexpr std::array<double, 4> f32{2e-6, 1e-5, 5e-5, 2e-4};
  static constexpr std::array<double, 4> f16{5e-3, 1e-2, 2e-2, 5e-2};
  static constexpr std::array<double, 4> bf16{2e-2, 4e-2, 8e-2, 1.6e-1};
  const auto i = static_cast<size_t>(order);
  switch (dtype) {
    case at::kDouble: return {f64[i]};
    case at::kFloat: return {f32[i]};
    case at::kHalf: return {f16[i]};
    case at::kBFloat16: return {bf16[i]};
    default: TORCH_CHECK(false, "theria.tolerance: no tolerance for dtype ", dtype);
  }
}

Tolerance float32_tolerance(Float32Products products, Derivative order) {
  // "high" allows TF32 products: 10 explicit mantissa bits, float16's, so the row is float16's. The fused kernels'
  // scaled float16 copies (head dims 64 and 128) are TF32 products rounded to nearest: the emulation
  // (scripts/numerics/float32_products_emulation.py) measured them equal to cuBLAS-style TF32 (round to nearest) to
  // three digits, 4e-4 to 1.4e-3 on standard normal inputs up to the HVP, where the earlier bfloat16 split, still
  // run at head dims 32 and 96, measures 1e-5. A third order leaves the fused kernels for the reference composition
  // (src/autograd/exact_path.cpp), whose cuBLAS products are TF32 at "high" too.
  switch (products) {
    case Float32Products::kFloat32: return tolerance(at::kFloat, order);
    case Float32Products::kBFloat16: return tolerance(at::kBFloat16, order);
    case Float32Products::kTF32: return tolerance(at::kHalf, order);
  }
  TORCH_CHECK(false, "theria.tolerance: unknown float32 products");
}

Float32Products float32_products_named(std::string_view matmul_precision) {
  if (matmul_precision == "highest") return Float32Products::kFloat32;
  if (matmul_precision == "high") return Float32Products::kTF32;
  if (matmul_precision == "medium") return Float32Products::kBFloat16;
  TORCH_CHECK(false, "theria: a float32 matmul precision is 'highest', 'high' or 'medium', got '",
              std::string(matmul_precision), "'");
}

const char* dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return "float64";
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return c10::toString(dtype);
  }
}

double max_relative_error(const std::vector<at::Tensor>& x, const std::vector<at::Tensor>& ref) {
  TORCH_CHECK(x.size() == ref.size(), "max_relative_error: ", x.size(), " tensors vs ", ref.size());
  double err = 0.0, mag = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    TORCH_CHECK(x[i].sizes() == ref[i].sizes(), "max_relative_error: shapes differ, ", x[i].sizes(), " vs ",
                ref[i].sizes());
    if (ref[i].numel() == 0) continue;
    const auto xd = x[i].detach().to(at::kCPU, at::kDouble);
    const auto rd = ref[i].detach().to(at::kCPU, at::kDouble);
    err = std::max(err, (xd - rd).abs().max().item<double>());
    mag = std::max(mag, rd.abs().max().item<double>());
    if (err != err || mag != mag) return std::numeric_limits<double>::infinity();
  }
  return err / std::max(mag, 1.0);
}

double max_relative_error(const at::Tensor& x, const at::Tensor& ref) {
  return max_relative_error(std::vector<at::Tensor>{x}, std::vector<at::Tensor>{ref});
}

}  // namespace theria
