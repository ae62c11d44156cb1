#include "variants/attention_variants.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <cmath>

namespace theria::lab {
namespace {

using torch::autograd::variable_list;

at::Tensor exact(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& o) {
  return sdpa(q, k, v, o);
}

// The backward of first_order_only: exact first derivatives with no graph of their own.
struct FirstOrderOnlyBackward final : torch::autograd::Node {
  std::string name() const override { return "lab::FirstOrderOnlyBackward"; }

  variable_list apply(variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    at::AutoGradMode on(true);  // a graph local to this call, dropped with it
    variable_list in{q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_()};
    const at::Tensor out = attend(in[0], in[1], in[2], options);
    if (!out.requires_grad()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    auto g = torch::autograd::grad({out}, in, {grads[0].detach()}, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    for (auto& t : g) t = t.defined() ? t.detach() : t;  // the silent part: no graph, whatever the engine asked
    return g;
  }

  AttentionFn attend;
  SdpaOptions options;
  at::Tensor q, k, v;  // detached copies of the inputs
};

// Logits in at least float32 (as a careful hand-written attention computes them), with the causal mask.
at::Tensor logits(const at::Tensor& q, const at::Tensor& k, const SdpaOptions& o) {
  const auto acc = at::promote_types(q.scalar_type(), at::kFloat);
  const double scale = o.scale_.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  at::Tensor s = at::matmul(q.to(acc), k.to(acc).mT()) * scale;
  if (o.causal_) {
    const auto mask = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).triu(1);
    s = s.masked_fill(mask, -INFINITY);
  }
  return s;
}

at::Tensor stats_detach(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& o) {
  const at::Tensor s = logits(q, k, o);
  const at::Tensor p = at::exp(s - at::logsumexp(s, -1, /*keepdim=*/true).detach());
  return at::matmul(p, v.to(p.scalar_type())).to(v.scalar_type());
}

at::Tensor logits_detach(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& o) {
  const at::Tensor p = at::softmax(logits(q, k, o).detach(), -1);
  return at::matmul(p, v.to(p.scalar_type())).to(v.scalar_type());
}

std::vector<AttentionVariant> make_variants() {
  std::vector<AttentionVariant> v;
  v.push_back({"exact", "nothing", exact, true, Verdict::Safe});
  v.push_back({"detach_attention_output", "every derivative of the attention output (B and above)",
               [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& x, const SdpaOptions& o) {
                 return sdpa(q, k, x, o).detach();
               },
               true, Verdict::Unsafe});
  v.push_back({"no_grad_attention", "every derivative of the attention output; the call is not recorded",
               [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& x, const SdpaOptions& o) {
                 at::AutoGradMode off(false);
                 return sdpa(q, k, x, o);
               },
               true, Verdict::Unsafe});
  v.push_back({"once_differentiable", "the double backward through attention (BJ, DB); first order exact",
               first_order_only(exact), true, Verdict::Unsafe});
  v.push_back({"stats_detach", "the softmax-normaliser terms: -p*delta in ds (B), -p*lse_dot in p_dot (J, BJ)",
               stats_detach, true, Verdict::Conditional});
  v.push_back({"logits_detach", "every derivative through the logits: dq, dk and their derivatives",
               logits_detach, true, Verdict::Unsafe});
  v.push_back({"no_create_graph", "the inner loop's second-order terms: FULL computes FO's meta-gradient", exact,
               false, Verdict::Unsafe});
  return v;
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Safe: return "safe";
    case Verdict::Conditional: return "conditional";
    case Verdict::Unsafe: return "unsafe";
  }
  return "?";
}

const std::vector<AttentionVariant>& attention_variants() {
  static const std::vector<AttentionVariant> variants = make_variants();
  return variants;
}

const AttentionVariant& attention_variant(const std::string& name) {
  std::string names;
  for (const auto& v : attention_variants()) {
    if (v.name == name) return v;
    names += (names.empty() ? "" : ", ") + v.name;
  }
  TORCH_CHECK(false, "unknown attention variant '", name, "': expected one of ", names);
}

AttentionFn first_order_only(AttentionFn attend) {
  return [attend](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& o) {
    at::Tensor out;
    {
      at::AutoGradMode off(false);
      out = attend(q, k, v, o);
    }
    if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) {
      auto node = std::shared_ptr<FirstOrderOnlyBackward>(new FirstOrderOnlyBackward(), torch::autograd::deleteNode);
      node->set_next_edges(torch::autograd::collect_next_edges(q, k, v));
      node->attend = attend;
      node->options = o;
      node->q = q.detach();
      node->k = k.detach();
      node->v = v.detach();
      torch::autograd::set_history(out, node);
    }
    return out;
  };
}

void apply_variant(const AttentionVariant& variant, ModelConfig& model, MamlConfig& maml) {
  model.attend = variant.attend;
  maml.inner_create_graph = variant.inner_create_graph;
}

}  // namespace theria::lab
