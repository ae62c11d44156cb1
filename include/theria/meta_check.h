// "Is my MAML really second order?" Two checks of a meta-loss, for a user's own code (docs/meta_check.md).
//
//   #include <theria/meta_check.h>
//   theria::GraphReport graph = theria::inspect_graph(meta_loss);       // what reaches the loss
//   std::cout << graph.describe();
//   theria::MetaGradientCheck check = theria::check_meta_gradient(meta_loss_of, params);   // is it its derivative
//   std::cout << check.describe();
//
// inspect_graph walks the autograd graph of the meta-loss and counts the nodes that carry attention's first
// derivative and those that differentiate attention's backward (the second-order terms of MAML), and says in
// words what is missing. It sees structure only: a detached softmax statistic inside a hand-written attention
// leaves a graph of the right shape. check_meta_gradient compares the autograd meta-gradient with central
// differences of the meta-loss along random directions: it catches every way of dropping a term, and is the
// verdict. The Python front has the same two functions and result types (theria.inspect_graph,
// theria.check_meta_gradient), with the same rules and words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace theria {

// ---- Structural check: the autograd graph of a meta-loss ----

// What the graph of a loss holds, each node counted once (a node reached along several paths is one node).
struct GraphReport {
  bool has_graph = false;                     // the loss has a grad_fn at all
  int64_t nodes = 0;                          // distinct nodes reachable from the loss's grad_fn
  int64_t sdpa_nodes = 0;                     // theria::SdpaBackward: a theria attention call (backends explicit,
                                              // fused) whose first derivative is in the graph
  int64_t sdpa_double_backward_nodes = 0;     // theria::SdpaBwdBackward: a differentiated theria attention backward,
                                              // i.e. second-order terms through attention (FULL MAML)
  int64_t softmax_nodes = 0;                  // SoftmaxBackward0, SafeSoftmaxBackward0: attention composed of ATen
                                              // ops (theria's reference backend, PyTorch's math SDPA, your own)
  int64_t softmax_double_backward_nodes = 0;  // SoftmaxBackwardDataBackward0: a differentiated softmax backward, the
                                              // second-order terms through such an attention
  int64_t torch_sdpa_nodes = 0;               // PyTorch's fused SDPA nodes (ScaledDotProduct...Backward0): they
                                              // have no double backward
  int64_t aten_double_backward_nodes = 0;     // every PyTorch node of a differentiated backward op, named
                                              // ...Backward...Backward0 (SoftmaxBackwardDataBackward0 included)
  std::vector<std::pair<std::string, int64_t>> node_names;  // every distinct node name and its count, by name
  std::vector<std::string> second_order_node_names;  // distinct names of the nodes that differentiate a backward
  std::vector<std::string> custom_function_names;    // custom autograd functions (C++ CppNode<...>, Python Function)
  std::vector<std::string> warnings;                 // plain words, one a problem; empty when nothing is amiss

  // A node that carries attention's first derivative (theria, ATen softmax, or PyTorch's SDPA) is in the graph.
  bool attention_in_graph() const;
  // A node that differentiates an attention backward (theria::SdpaBwdBackward, SoftmaxBackwardDataBackward0).
  bool second_order_through_attention() const;
  bool ok() const { return warnings.empty(); }
  // A readable report, several lines, to print or paste.
  std::string describe() const;
};

// Walks loss.grad_fn() over next_edges (iteratively: the graph of a 20-step inner loop is deep), each node once,
// and fills a GraphReport. Touches nothing: no backward runs, no buffer is freed.
GraphReport inspect_graph(const at::Tensor& loss);

// ---- Numerical check: is the autograd meta-gradient the derivative of the meta-loss? ----

// The meta-loss as a function of the meta-parameters. It must be a pure function of them: fixed tasks and
// batches, no dropout or other randomness, no state carried between calls (a running statistic, an optimizer),
// since it is evaluated 2K + 1 times and the evaluations are compared. It receives fresh leaf tensors that
// require grad (an inner loop may call torch::autograd::grad on them) and returns a scalar.
using MetaLossFn = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

struct MetaGradientCheckOptions {
  int64_t directions_ = 4;           // K random unit directions
  uint64_t seed_ = 0;                // of the directions (drawn in float64 on the CPU, as Python's torch.Generator)
  std::optional<double> eps_;        // relative step; default by dtype (float64: 1e-6, float32: 1e-3)
  std::optional<double> tolerance_;  // on the relative error; default by dtype (float64: 1e-5, float32: 5e-2)

  MetaGradientCheckOptions& directions(int64_t value) { directions_ = value; return *this; }
  MetaGradientCheckOptions& seed(uint64_t value) { seed_ = value; return *this; }
  MetaGradientCheckOptions& eps(double value) { eps_ = value; return *this; }
  MetaGradientCheckOptions& tolerance(double value) { tolerance_ = value; return *this; }
};

// One direction u: the autograd directional derivative <g, u> and the central difference.
struct DirectionalDerivative {
  double autograd = 0.0;           // <g, u>, g the autograd gradient of f at theta
  double finite_difference = 0.0;  // (f(theta + h u) - f(theta - h u)) / 2h
  double step = 0.0;               // the h this direction was compared at (see check_meta_gradient)
};

struct MetaGradientCheck {
  std::vector<DirectionalDerivative> directions;
  double relative_error = 0.0;  // ||autograd - finite_difference|| / ||finite_difference|| over the K directions
  double tolerance = 0.0;
  double eps = 0.0;             // relative step
  double step = 0.0;            // h = eps * max(||theta||, 1), the first step tried along each unit direction
  int64_t nonsmooth_directions = 0;  // directions left out: f is not smooth there at any step tried
  double loss = 0.0;            // f(theta)
  double gradient_norm = 0.0;   // ||g||
  c10::ScalarType dtype = c10::ScalarType::Double;  // the least precise of the parameters and the loss
  bool passed = false;          // relative_error <= tolerance (false when anything is non-finite)
  // A readable report, several lines, to print or paste.
  std::string describe() const;
};

// Computes g = d f / d theta by autograd at theta (parameters unused by the graph get a zero gradient), then for K
// seeded random unit directions u of the concatenated parameters compares <g, u> with the central difference.
// A MAML meta-loss through ReLU is only piecewise smooth, and not even continuous: the inner step moves the weights by
// the inner gradient, which jumps where a ReLU switches. A central difference across such a jump is meaningless
// (-9.6 against a derivative of 0.31 was measured on the lab's model), so each direction is accepted only where the
// differences at h and h/2 agree to the tolerance; otherwise h shrinks tenfold (three times at most), and a direction
// smooth at no step is left out and replaced by the next one (counted in nonsmooth_directions; at most 3K drawn).
// No direction smooth at all fails the check.
// float64 parameters give a trustworthy answer; float32 a coarse one (a dropped term smaller than a few per cent
// of the directional derivative goes unseen); float16 and bfloat16 need eps and tolerance given explicitly.
// The parameters are not modified and their .grad is not touched: f receives detached copies.
MetaGradientCheck check_meta_gradient(const MetaLossFn& meta_loss, const std::vector<at::Tensor>& params,
                                      const MetaGradientCheckOptions& options = {});

}  // namespace theria
