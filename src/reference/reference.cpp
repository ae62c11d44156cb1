#include "reference/reference.h"

#include "core/contract.h"

#include <ATen/ATen.h>

#include <limits>

namespace theria::reference {
namespace {

Tensor or_zeros(const OptTensor& t, const Tensor& primal) {
  return t.has_value() && t->defined() ? *t : at::zeros_like(primal);
}

Tensor row_sum(const Tensor& x) { return x.sum(-1, /*keepdim=*/true); }

// Grouped-query attention: key-side heads repeated to the query's (PyTorch's math SDPA does the same), and a
// gradient of the repeated tensor summed back over each group of `heads_q / heads_kv` query heads.
int64_t group_of(const Tensor& q, const Tensor& k) {
  return q.dim() >= 3 && k.size(-3) > 0 ? q.size(-3) / k.size(-3) : 1;
}
Tensor repeat_heads(const Tensor& t, int64_t group) { return group == 1 ? t : t.repeat_interleave(group, -3); }
Tensor sum_groups(const Tensor& g, int64_t group) {
  if (group == 1) return g;
  auto grouped = g.sizes().vec();
  grouped[grouped.size() - 3] /= group;
  grouped.insert(grouped.end() - 2, group);
  return g.reshape(grouped).sum(-3);
}

Tensor safe_softmax(const Tensor& s) { return at::_safe_softmax(s, -1); }

// Everything the derivative formulas share: P, out, and (when asked) the tangents of S, lse, P, out.
struct Attention {
  Tensor p, out;
  Tensor lse_dot, p_dot, out_dot;
};

// k and v with the query's heads.
Attention attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                    const OptTensor& mask) {
  Attention a;
  a.p = safe_softmax(logits(q, k, causal, scale, mask));
  a.out = at::matmul(a.p, v);
  return a;
}

void add_tangents(Attention& a, const Tensor& q, const Tensor& k, const Tensor& q_dot, const Tensor& k_dot,
                  const Tensor& v, const Tensor& v_dot, double scale) {
  const Tensor s_dot = (at::matmul(q_dot, k.mT()) + at::matmul(q, k_dot.mT())) * scale;
  a.lse_dot = row_sum(a.p * s_dot);
  a.p_dot = a.p * (s_dot - a.lse_dot);
  a.out_dot = at::matmul(a.p_dot, v) + at::matmul(a.p, v_dot);
}

}  // namespace

Tensor logits(const Tensor& q, const Tensor& k, bool causal, double scale, const OptTensor& mask) {
  Tensor s = at::matmul(q, repeat_heads(k, group_of(q, k)).mT()) * scale;
  if (causal) {
    const auto visible = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril();
    s = s.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (mask.has_value() && mask->defined()) {
    s = mask->scalar_type() == at::kBool ? s.masked_fill(mask->logical_not(), -std::numeric_limits<double>::infinity())
                                         : s + *mask;
  }
  return s;
}

Tensor sdpa_math(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, const OptTensor& mask) {
  return at::matmul(safe_softmax(logits(q, k, causal, scale, mask)), repeat_heads(v, group_of(q, v)));
}

std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    const OptTensor& mask) {
  const Tensor s = logits(q, k, causal, scale, mask);
  const Tensor out = at::matmul(safe_softmax(s), repeat_heads(v, group_of(q, v)));
  const Tensor lse = at::logsumexp(s, -1).to(core::stats_dtype(q.scalar_type()));
  return {out, lse};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k_in, const Tensor& v_in,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale, const OptTensor& mask) {
  const int64_t group = group_of(q, k_in);
  const Tensor k = repeat_heads(k_in, group), v = repeat_heads(v_in, group);
  Attention a = attention(q, k, v, causal, scale, mask);
  add_tangents(a, q, k, or_zeros(q_dot, q), repeat_heads(or_zeros(k_dot, k_in), group), v,
               repeat_heads(or_zeros(v_dot, v_in), group), scale);
  const Tensor lse = at::logsumexp(logits(q, k, causal, scale, mask), -1).to(core::stats_dtype(q.scalar_type()));
  return {a.out, lse, a.out_dot};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k_in, const Tensor& v_in,
                                            const Tensor& dout, bool causal, double scale, const OptTensor& mask) {
  const int64_t group = group_of(q, k_in);
  const Tensor k = repeat_heads(k_in, group), v = repeat_heads(v_in, group);
  const Attention a = attention(q, k, v, causal, scale, mask);
  const Tensor dp = at::matmul(dout, v.mT());
  const Tensor ds = a.p * (dp - row_sum(dout * a.out));
  return {at::matmul(ds, k) * scale, sum_groups(at::matmul(ds.mT(), q) * scale, group),
          sum_groups(at::matmul(a.p.mT(), dout), group)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(const Tensor& q, const Tensor& k_in, const Tensor& v_in,
                                                        const Tensor& dout, const OptTensor& q_dot,
                                                        const OptTensor& k_dot, const OptTensor& v_dot,
                                                        const OptTensor& dout_dot, bool causal, double scale,
                                                        const OptTensor& mask) {
  const int64_t group = group_of(q, k_in);
  const Tensor k = repeat_heads(k_in, group), v = repeat_heads(v_in, group);
  const Tensor qd = or_zeros(q_dot, q), kd = repeat_heads(or_zeros(k_dot, k_in), group),
               vd = repeat_heads(or_zeros(v_dot, v_in), group), dd = or_zeros(dout_dot, dout);
  Attention a = attention(q, k, v, causal, scale, mask);
  add_tangents(a, q, k, qd, kd, v, vd, scale);
  const Tensor dp = at::matmul(dout, v.mT());
  const Tensor dp_dot = at::matmul(dd, v.mT()) + at::matmul(dout, vd.mT());
  const Tensor delta = row_sum(dout * a.out);
  const Tensor delta_dot = row_sum(dd * a.out + dout * a.out_dot);
  const Tensor ds = a.p * (dp - delta);
  const Tensor ds_dot = a.p_dot * (dp - delta) + a.p * (dp_dot - delta_dot);
  const Tensor dq_dot = (at::matmul(ds_dot, k) + at::matmul(ds, kd)) * scale;
  const Tensor dk_dot = (at::matmul(ds_dot.mT(), q) + at::matmul(ds.mT(), qd)) * scale;
  const Tensor dv_dot = at::matmul(a.p_dot.mT(), dout) + at::matmul(a.p.mT(), dd);
  return {dq_dot, sum_groups(dk_dot, group), sum_groups(dv_dot, group), a.out_dot};
}

}  // namespace theria::reference
