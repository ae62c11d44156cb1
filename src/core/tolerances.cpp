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

double max_relative_error(const at::Tensor& x, const at::Tensor& ref) {
  TORCH_CHECK(x.sizes() == ref.sizes(), "max_relative_error: shapes differ, ", x.sizes(), " vs ", ref.sizes());
  if (ref.numel() == 0) return 0.0;
  const auto xd = x.detach().to(at::kCPU, at::kDouble);
  const auto rd = ref.detach().to(at::kCPU, at::kDouble);
  const double err = (xd - rd).abs().max().item<double>();
  const double mag = rd.abs().max().item<double>();
  if (err != err || mag != mag) return std::numeric_limits<double>::infinity();
  return err / std::max(mag, 1e-300);
}

}  // namespace theria
