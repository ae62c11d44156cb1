#include "core/broadcast.h"

#include "core/contract.h"

#include <ATen/ExpandUtils.h>
#include <c10/util/Exception.h>

#include <tuple>

namespace theria::core {
namespace {

std::vector<int64_t> with(std::vector<int64_t> lead, std::initializer_list<int64_t> tail) {
  lead.insert(lead.end(), tail);
  return lead;
}

}  // namespace

SdpaCall broadcast_call(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const std::optional<at::Tensor>& attn_mask, bool is_causal, std::optional<double> scale,
                        bool enable_gqa, const char* op) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined(), op, ": query, key and value must be defined tensors");
  for (const auto& [t, name, form] : {std::tuple{&q, "query", "(..., L, E)"}, std::tuple{&k, "key", "(..., S, E)"},
                                      std::tuple{&v, "value", "(..., S, Ev)"}}) {
    TORCH_CHECK(t->dim() >= 2, op, ": ", name, " must have shape ", form, " with at least 2 dimensions, got a ",
                t->dim(), "-D tensor of shape ", shape_str(t->sizes()));
  }
  // Grouped-query attention (PyTorch's rule): heads at dim -3, key and value heads equal and dividing query's.
  const auto lead = [](const at::Tensor& t, int64_t drop) {
    return std::vector<int64_t>(t.sizes().begin(), t.sizes().end() - drop);
  };
  std::vector<int64_t> outer;  // the broadcast leading sizes, without the heads under enable_gqa
  int64_t heads_q = 0, heads_kv = 0;
  if (enable_gqa) {
    TORCH_CHECK(q.dim() >= 3 && k.dim() >= 3 && v.dim() >= 3, op,
                ": enable_gqa needs query, key and value with a heads dim (..., H, L, E), got query ",
                shape_str(q.sizes()), ", key ", shape_str(k.sizes()), ", value ", shape_str(v.sizes()));
    heads_q = q.size(-3);
    heads_kv = k.size(-3);
    TORCH_CHECK(v.size(-3) == heads_kv && heads_kv > 0 && heads_q % heads_kv == 0, op,
                ": with enable_gqa the number of heads (dim -3) of key and value must be equal and divide "
                "query's, got query ", heads_q, ", key ", heads_kv, ", value ", v.size(-3));
    outer = lead(q, 3);
    for (const auto* t : {&k, &v}) outer = at::infer_size(outer, lead(*t, 3));
  } else {
    try {
      outer = at::infer_size(at::infer_size(lead(q, 2), lead(k, 2)), lead(v, 2));
    } catch (const c10::Error&) {
      TORCH_CHECK(false, op, ": the leading (batch/head) sizes of query ", shape_str(q.sizes()), ", key ",
                  shape_str(k.sizes()), " and value ", shape_str(v.sizes()),
                  " do not broadcast (for fewer key/value heads pass enable_gqa=True)");
    }
    // A single key/value head (or one broadcast to all) serves every query head: multi-query attention.
    if (!outer.empty()) {
      heads_q = outer.back();
      const bool single_kv = k.dim() >= 3 && v.dim() >= 3 && k.size(-3) == 1 && v.size(-3) == 1 && heads_q > 1;
      heads_kv = single_kv ? 1 : heads_q;
      outer.pop_back();
    }
  }
  TORCH_CHECK(k.size(-1) == q.size(-1), op, ": key must have the feature size E of query (", q.size(-1),
              ") in its last dim, got key of shape ", shape_str(k.sizes()));
  TORCH_CHECK(v.size(-2) == k.size(-2), op, ": value must have the length S of key (", k.size(-2),
              ") in dim -2, got value of shape ", shape_str(v.sizes()));
  SdpaCall call;
  const bool has_heads = enable_gqa || q.dim() >= 3 || k.dim() >= 3 || v.dim() >= 3;
  const auto q_lead = has_heads ? with(outer, {heads_q}) : outer;
  const auto kv_lead = has_heads ? with(outer, {heads_kv}) : outer;
  // An operand already of its broadcast shape is passed as it is (no view, so no ExpandBackward in its graph).
  const auto broadcast = [](const at::Tensor& t, const std::vector<int64_t>& lead) {
    const auto shape = with(lead, {t.size(-2), t.size(-1)});
    return t.sizes() == at::IntArrayRef(shape) ? t : t.expand(shape);
  };
  call.q = broadcast(q, q_lead);
  call.k = broadcast(k, kv_lead);
  call.v = broadcast(v, kv_lead);
  const auto shape = check_qkv(call.q, call.k, call.v, op);
  call.scale = resolve_scale(scale, shape.dim_qk, op);
  check_mask(attn_mask, shape, call.q, is_causal, op);
  call.mask = attn_mask;
  return call;
}

}  // namespace theria::core
