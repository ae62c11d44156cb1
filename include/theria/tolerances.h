// The one table of accuracy tolerances used by every test and by `theria verify`.
//
// An error is measured as max|x - ref| / max(max|ref|, tiny), where ref is the float64 reference
// computed by PyTorch autograd through the plain ATen composition on the same (rounded) inputs.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

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

// max|x - ref| / max(max|ref|, tiny), computed in float64. NaN in x or ref gives +inf.
double max_relative_error(const at::Tensor& x, const at::Tensor& ref);

}  // namespace theria
