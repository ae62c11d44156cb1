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

// (a_scale a) b. On the CPU a 16-bit product runs in float32 with one rounding at the end, which is what a 16-bit
// GEMM with float32 accumulation computes anyway, because oneDNN's AMX bfloat16 kernels spread a NaN of one row of
// `a` into a neighbouring row of the product (seen on a Xeon with AMX: a NaN in row 3 of q made row 2 of q k^T NaN),
// where PyTorch's math SDPA, which upcasts 16-bit inputs, keeps a NaN in its own row (tests/python/test_fuzz.py,
// seed 937). The scale goes on `a` (L x D), not on the product (L x S), as PyTorch's math SDPA puts it on q and k:
// an L x S multiply, and its derivative at every order, cost 5 % of a float32 HVP at 8·16·2048·128 on an H200
// (docs/performance.md, issue 19).
Tensor product(const Tensor& a, const Tensor& b, double a_scale = 1.0) {
  const auto t = a.scalar_type();
  if (a.is_cpu() && (t == at::kBFloat16 || t == at::kHalf)) {
    return at::matmul(a.to(at::kFloat) * a_scale, b.to(at::kFloat)).to(t);
  }
  return at::matmul(a_scale == 1.0 ? a : a * a_scale, b);
}

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

// From the logits s, and v with the query's heads.
Attention attention(const Tensor& s, const Tensor& v) {
  Attention a;
  a.p = safe_softmax(s);
  a.out = product(a.p, v);
  return a;
}

void add_tangents(Attention& a, const Tensor& q, const Tensor& k, const Tensor& q_dot, const Tensor& k_dot,
                  const Tensor& v, const Tensor& v_dot, double scale, const OptTensor& mask_dot) {
  Tensor s_dot = product(q_dot, k.mT(), scale) + product(q, k_dot.mT(), scale);
  if (mask_dot.has_value() && mask_dot->defined()) s_dot = s_dot + *mask_dot;
  a.lse_dot = row_sum(a.p * s_dot);
  a.p_dot = a.p * (s_dot - a.lse_dot);
  a.out_dot = product(a.p_dot, v) + product(a.p, v_dot);
}

// A float mask's gradient (or tangent) from dS (or dS_dot): summed over the dims the mask broadcasts over.
Tensor mask_grad_of(const Tensor& ds, const OptTensor& mask, bool wanted) {
  if (!wanted) return at::empty({0}, ds.options());
  return ds.sum_to_size(mask->sizes());
}

}  // namespace

Tensor logits(const Tensor& q, const Tensor& k, bool causal, double scale, const OptTensor& mask) {
  Tensor s = product(q, repeat_heads(k, group_of(q, k)).mT(), scale);
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
  return product(safe_softmax(logits(q, k, causal, scale, mask)), repeat_heads(v, group_of(q, v)));
}

std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                    const OptTensor& mask) {
  const Tensor s = logits(q, k, causal, scale, mask);
  const Tensor out = product(safe_softmax(s), repeat_heads(v, group_of(q, v)));
  const Tensor lse = at::logsumexp(s, -1).to(core::stats_dtype(q.scalar_type()));
  return {out, lse};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k_in, const Tensor& v_in,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale, const OptTensor& mask,
                                            const OptTensor& mask_dot) {
  const int64_t group = group_of(q, k_in);
  const Tensor k = repeat_heads(k_in, group), v = repeat_heads(v_in, group);
  const Tensor s = logits(q, k, causal, scale, mask);
  Attention a = attention(s, v);
  add_tangents(a, q, k, or_zeros(q_dot, q), repeat_heads(or_zeros(k_dot, k_in), group), v,
               repeat_heads(or_zeros(v_dot, v_in), group), scale, mask_dot);
  const Tensor lse = at::logsumexp(s, -1).to(core::stats_dtype(q.scalar_type()));
  return {a.out, lse, a.out_dot};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k_in, const Tensor& v_in,
                                                    const Tensor& dout, bool causal, double scale,
                                                    const OptTensor& mask, bool mask_grad) {
  const int64_t group = group_of(q, k_in);
  const Tensor k = repeat_heads(k_in, group), v = repeat_heads(v_in, group);
  const Attention a = attention(logits(q, k, causal, scale, mask), v);
  const Tensor dp = product(dout, v.mT());
  const Tensor ds = a.p * (dp - row_sum(dout * a.out));
  return {product(ds, k) * scale, sum_groups(product(ds.mT(), q) * scale, group),
          sum_groups(product(a.p.mT(), dout), group), mask_grad_of(ds, mask, mask_grad)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(
    const Tensor& q, const Tensor& k_in, const Tensor& v_in, const Tensor& dout, const OptTensor& q_dot,
    const OptTensor& k_dot, const OptTensor& v_dot, const OptTensor& dout_dot, bool causal, double scale,
    const OptTensor& mask, const OptTensor& mask_dot, bool mask_grad) {
  const int64_t group = group_of(q, k_in);
  const Tensor k = repeat_heads(k_in, group), v = repeat_heads(v_in, group);
  const Tensor qd = or_zeros(q_dot, q), kd = repeat_heads(or_zeros(k_dot, k_in), group),
               vd = repeat_heads(or_zeros(v_dot, v_in), group), dd = or_zeros(dout_dot, dout);
  Attention a = attention(logits(q, k, causal, scale, mask), v);
  add_tangents(a, q, k, qd, kd, v, vd, scale, mask_dot);
  const Tensor dp = product(dout, v.mT());
  const Tensor dp_dot = product(dd, v.mT()) + product(dout, vd.mT());
  const Tensor delta = row_sum(dout * a.out);
  const Tensor delta_dot = row_sum(dd * a.out + dout * a.out_dot);
  const Tensor ds = a.p * (dp - delta);
  const Tensor ds_dot = a.p_dot * (dp - delta) + a.p * (dp_dot - delta_dot);
  const Tensor dq_dot = (product(ds_dot, k) + product(ds, kd)) * scale;
  const Tensor dk_dot = (product(ds_dot.mT(), q) + product(ds.mT(), qd)) * scale;
  const Tensor dv_dot = product(a.p_dot.mT(), dout) + product(a.p.mT(), dd);
  return {dq_dot, sum_groups(dk_dot, group), sum_groups(dv_dot, group), a.out_dot,
          mask_grad_of(ds_dot, mask, mask_grad)};
}

}  // namespace theria::reference
