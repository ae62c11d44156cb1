// Attention variants for the failure taxonomy (docs/taxonomy.md): `exact` is theria::sdpa as it is; every
// other one reproduces a way that real meta-learning code loses part of the derivative without any error.
// They live in the lab only and wrap the public API; the operator core never sees them.
//
// Which term of the exact derivative each one drops, in the notation of docs/derivatives.md:
//   exact                    nothing: (F), (B), (J), (BJ) and the double backward (DB) as theria computes them
//   detach_attention_output  every derivative of out: the attention output is a constant, (B) and all above it
//   no_grad_attention        the same terms, by another pattern: attention runs under no-grad, so the call is not
//                            even recorded (nothing in the graph shows an attention was there)
//   once_differentiable      (BJ)/(DB) only: the backward (B) is exact, but it is computed under no-grad, so the
//                            double backward through attention is silently zero (PyTorch's own
//                            @once_differentiable is silent too under torch.autograd.grad and raises only under
//                            .backward(): tests/python/test_meta_check.py)
//   stats_detach             the softmax-normaliser terms: lse treated as a constant, p = exp(s - lse) with no
//                            derivative through lse, so (B) loses -p_ij delta_i in ds_ij, (J) loses -p_ij lse_dot_i
//                            in p_dot_ij, and (BJ) both (the research plan's "frozen statistics" compromise)
//   logits_detach            every derivative through the logits s = q k^T scale: ds, hence dq and dk, are zero;
//                            only the value path dv = p^T dout (and its derivatives) survives
//   no_create_graph          nothing in attention: the inner loop takes its gradients without create_graph, so
//                            FULL silently becomes FO (MamlConfig::inner_create_graph)
#pragma once

#include "meta/maml.h"
#include "model/transformer.h"

#include <string>
#include <vector>

namespace theria::lab {

// The research plan's expectation for a pattern (Phase 11): the hypothesis the taxonomy tests, never its result.
enum class Verdict { Safe, Conditional, Unsafe };
const char* verdict_name(Verdict v);  // "safe", "conditional", "unsafe"

struct AttentionVariant {
  std::string name;
  std::string drops;              // which term of the exact derivative is lost (the list above)
  AttentionFn attend;             // the model's attention call
  bool inner_create_graph = true;  // false: no_create_graph's inner loop
  Verdict expected = Verdict::Safe;
};

// Every variant, `exact` first.
const std::vector<AttentionVariant>& attention_variants();
// The variant called `name`; an error naming the choices otherwise.
const AttentionVariant& attention_variant(const std::string& name);

// `attend` with a first derivative and nothing above it: a custom autograd node whose backward
// recomputes attend's gradient on detached inputs under its own small graph and returns it without one.
// once_differentiable is first_order_only(theria::sdpa); the diagnostics wrap any variant with it to
// measure how much of the meta-gradient comes through attention's second derivative.
AttentionFn first_order_only(AttentionFn attend);

// The model and MAML settings of `variant` on top of a study's own.
void apply_variant(const AttentionVariant& variant, ModelConfig& model, MamlConfig& maml);

}  // namespace theria::lab
