// Shared helpers of the C++ test suite: seeded inputs, the oracle, the derivative chains
// (reverse at orders 1-3, forward mode, forward-over-reverse) and the one comparison.
//
// The oracle is theria::reference::sdpa_math on float64 CPU copies of the very (rounded) inputs
// that theria saw, differentiated by PyTorch autograd; every comparison reads its bound from
// theria::tolerance, the single tolerance table.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <theria/sdpa.h>
#include <theria/tolerances.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "reference/reference.h"

namespace theria_test {

using at::Tensor;
using theria::Derivative;
using TensorList = std::vector<Tensor>;

// One attention problem: q (lead..., L, E), k (lead..., S, E), v (lead..., S, Ev).
struct Case {
  std::vector<int64_t> lead;
  int64_t L, S, E, Ev;
  bool causal;
  std::optional<double> scale;

  std::vector<int64_t> shape(int64_t rows, int64_t cols) const {
    auto s = lead;
    s.push_back(rows);
    s.push_back(cols);
    return s;
  }
  std::vector<int64_t> q_shape() const { return shape(L, E); }
  std::vector<int64_t> k_shape() const { return shape(S, E); }
  std::vector<int64_t> v_shape() const { return shape(S, Ev); }
  std::vector<int64_t> out_shape() const { return shape(L, Ev); }
  double resolved_scale() const { return scale.value_or(1.0 / std::sqrt(static_cast<double>(E))); }
  theria::SdpaOptions options(theria::Backend backend) const {
    theria::SdpaOptions o;
    o.causal(causal).backend(backend);
    if (scale) o.scale(*scale);
    return o;
  }
};

inline std::string describe(const Case& c) {
  std::ostringstream s;
  s << "lead=" << at::IntArrayRef(c.lead) << " L=" << c.L << " S=" << c.S << " E=" << c.E << " Ev=" << c.Ev
    << (c.causal ? " causal" : " full");
  if (c.scale) s << " scale=" << *c.scale;
  return s.str();
}

inline void PrintTo(const Case& c, std::ostream* os) { *os << describe(c); }

// Standard normal values drawn in float64 from a private generator (so each tensor is fixed by
// its seed alone, whatever ran before), then rounded to `dtype` and moved to `device`.
inline Tensor randn(at::IntArrayRef shape, uint64_t seed, at::ScalarType dtype = at::kDouble,
                    at::Device device = at::kCPU) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kDouble)).to(device, dtype);
}

// A float64 CPU leaf holding the same values as `t` (the oracle's copy of an input).
inline Tensor f64_leaf(const Tensor& t, bool requires_grad) {
  return t.detach().to(at::kCPU, at::kDouble).clone().requires_grad_(requires_grad);
}

inline ::testing::AssertionResult close(const Tensor& x, const Tensor& ref, at::ScalarType dtype, Derivative order) {
  if (!x.defined() || !ref.defined()) {
    return ::testing::AssertionFailure() << "undefined tensor (x " << x.defined() << ", ref " << ref.defined() << ")";
  }
  if (x.sizes() != ref.sizes()) {
    return ::testing::AssertionFailure() << "shape " << x.sizes() << " vs reference " << ref.sizes();
  }
  const double tol = theria::tolerance(dtype, order).max_rel_error;
  const double err = theria::max_relative_error(x, ref);
  // THERIA_TEST_VERBOSE=1 prints every comparison's error next to its bound.
  static const bool verbose = std::getenv("THERIA_TEST_VERBOSE") != nullptr;
  if (verbose) {
    std::printf("    [close] %-9s order %d  error %.3e  tolerance %.1e\n", c10::toString(dtype),
                static_cast<int>(order), err, tol);
  }
  if (err <= tol) return ::testing::AssertionSuccess() << "max relative error " << err;
  return ::testing::AssertionFailure() << "max relative error " << err << " > tolerance " << tol << " (" << dtype
                                       << ", derivative order " << static_cast<int>(order) << ")";
}

#define EXPECT_CLOSE(x, ref, dtype, order) \
  EXPECT_TRUE(::theria_test::close((x), (ref), (dtype), (order))) << #x << " vs " << #ref

// An attention function of (q, k, v): theria::sdpa with some options, or the oracle.
using SdpaFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

inline SdpaFn theria_fn(const Case& c, theria::Backend backend) {
  const auto options = c.options(backend);
  return [options](const Tensor& q, const Tensor& k, const Tensor& v) { return theria::sdpa(q, k, v, options); };
}

inline SdpaFn oracle_fn(const Case& c) {
  const bool causal = c.causal;
  const double scale = c.resolved_scale();
  return [causal, scale](const Tensor& q, const Tensor& k, const Tensor& v) {
    return theria::reference::sdpa_math(q, k, v, causal, scale);
  };
}

inline Tensor zeros_if_undefined(const Tensor& t, const Tensor& like) { return t.defined() ? t : at::zeros_like(like); }

inline Tensor dot(const TensorList& a, const TensorList& b) {
  Tensor s;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].defined()) continue;
    const Tensor term = (a[i] * b[i]).sum();
    s = s.defined() ? s + term : term;
  }
  return s;
}

// The reverse-mode chain, each order through torch::autograd::grad with create_graph=true:
//   first  = (dq, dk, dv)                     = J^T dout                        (vjp)
//   second = d<first, u>/d(q, k, v, dout)                                       (double backward, HVP)
//   third  = d<second, w>/d(q, k, v, dout)                                      (third order)
// q, k, v and dout must be leaves that require grad (or views of such leaves: `wrt` names the
// tensors differentiated against, defaulting to {q, k, v, dout}).
// The last order asked for runs with create_graph=false, so with max_order = 2 the second order
// goes through theria's explicit sdpa_bwd_jvp kernel, and with max_order = 3 through its exact
// path (the reference composition, differentiable again).
struct ReverseChain {
  Tensor out;
  TensorList first, second, third;
};

inline ReverseChain reverse_chain(const SdpaFn& fn, const TensorList& qkv, const Tensor& dout, const TensorList& u,
                                  const TensorList& w, int max_order, const TensorList& wrt = {}) {
  namespace ag = torch::autograd;
  const TensorList inputs = wrt.empty() ? TensorList{qkv[0], qkv[1], qkv[2], dout} : wrt;
  const TensorList inputs3(inputs.begin(), inputs.begin() + 3);
  ReverseChain r;
  r.out = fn(qkv[0], qkv[1], qkv[2]);
  r.first = ag::grad({r.out}, inputs3, {dout}, /*retain_graph=*/true, /*create_graph=*/max_order > 1);
  if (max_order < 2) return r;
  const Tensor s = dot(r.first, u);
  r.second = ag::grad({s}, inputs, {}, /*retain_graph=*/true, /*create_graph=*/max_order > 2,
                      /*allow_unused=*/true);
  for (size_t i = 0; i < inputs.size(); ++i) r.second[i] = zeros_if_undefined(r.second[i], inputs[i]);
  if (max_order < 3) return r;
  const Tensor t = dot(r.second, w);
  r.third = ag::grad({t}, inputs, {}, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
  for (size_t i = 0; i < inputs.size(); ++i) r.third[i] = zeros_if_undefined(r.third[i], inputs[i]);
  return r;
}

// Enters a forward-AD dual level and leaves it when destroyed (also when a test throws).
class DualLevel {
 public:
  DualLevel() : level_(torch::autograd::forward_ad::enter_dual_level()) {}
  ~DualLevel() { torch::autograd::forward_ad::exit_dual_level(level_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  int64_t level() const { return static_cast<int64_t>(level_); }

 private:
  uint64_t level_;
};

inline Tensor make_dual(const Tensor& primal, const Tensor& tangent, const DualLevel& level) {
  return tangent.defined() ? at::_make_dual(primal, tangent, level.level()) : primal;
}

inline Tensor tangent_of(const Tensor& dual, const DualLevel& level) {
  const Tensor t = std::get<1>(at::_unpack_dual(dual, level.level()));
  return t.defined() ? t.clone() : t;
}

// Forward mode: the output tangent J (tq, tk, tv) through dual tensors (undefined = no tangent).
inline Tensor jvp(const SdpaFn& fn, const TensorList& qkv, const TensorList& tangents) {
  DualLevel level;
  const Tensor out = fn(make_dual(qkv[0], tangents[0], level), make_dual(qkv[1], tangents[1], level),
                        make_dual(qkv[2], tangents[2], level));
  return tangent_of(out, level);
}

// Forward-over-reverse: the tangent of (dq, dk, dv) = J^T dout along (tq, tk, tv, tdout),
// i.e. H (tq, tk, tv) + J^T tdout. qkv and dout must be leaves that require grad.
// create_graph=false runs the backward with grad mode off (theria then uses its explicit
// sdpa_bwd_jvp kernel for the tangent); true keeps the result differentiable (theria's exact path).
inline TensorList forward_over_reverse(const SdpaFn& fn, const TensorList& qkv, const Tensor& dout,
                                       const TensorList& tangents, const Tensor& dout_tangent, bool create_graph) {
  DualLevel level;
  const Tensor out = fn(make_dual(qkv[0], tangents[0], level), make_dual(qkv[1], tangents[1], level),
                        make_dual(qkv[2], tangents[2], level));
  const Tensor dout_dual = make_dual(dout, dout_tangent, level);
  const TensorList g = torch::autograd::grad({out}, qkv, {dout_dual}, /*retain_graph=*/true, create_graph);
  TensorList t;
  for (size_t i = 0; i < g.size(); ++i) t.push_back(zeros_if_undefined(tangent_of(g[i], level), qkv[i]));
  return t;
}

}  // namespace theria_test
