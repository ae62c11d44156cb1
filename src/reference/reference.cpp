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

// Everything the derivative formulas share: P, out, and (when asked) the tangents of S, lse, P, out.
struct Attention {
  Tensor p, out;
  Tensor lse_dot, p_dot, out_dot;
};

Attention attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  Attention a;
  a.p = at::softmax(logits(q, k, causal, scale), -1);
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

Tensor logits(const Tensor& q, const Tensor& k, bool causal, double scale) {
  Tensor s = at::matmul(q, k.mT()) * scale;
  if (causal) {
    const auto visible = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril();
    s = s.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
  }
  return s;
}

Tensor sdpa_math(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  return at::matmul(at::softmax(logits(q, k, causal, scale), -1), v);
}

std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  const Tensor s = logits(q, k, causal, scale);
  const Tensor out = at::matmul(at::softmax(s, -1), v);
  const Tensor lse = at::logsumexp(s, -1).to(core::stats_dtype(q.scalar_type()));
  return {out, lse};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale) {
  Attention a = attention(q, k, v, causal, scale);
  add_tangents(a, q, k, or_zeros(q_dot, q), or_zeros(k_dot, k), v, or_zeros(v_dot, v), scale);
  const Tensor lse = at::logsumexp(logits(q, k, causal, scale), -1).to(core::stats_dtype(q.scalar_type()));
  return {a.out, lse, a.out_dot};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
                                            bool causal, double scale) {
  const Attention a = attention(q, k, v, causal, scale);
  const Tensor dp = at::matmul(dout, v.mT());
  const Tensor ds = a.p * (dp - row_sum(dout * a.out));
  return {at::matmul(ds, k) * scale, at::matmul(ds.mT(), q) * scale, at::matmul(a.p.mT(), dout)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                                        const Tensor& dout, const OptTensor& q_dot,
                                                        const OptTensor& k_dot, const OptTensor& v_dot,
                                                        const OptTensor& dout_dot, bool causal, double scale) {
  const Tensor qd = or_zeros(q_dot, q), kd = or_zeros(k_dot, k), vd = or_zeros(v_dot, v),
               dd = or_zeros(dout_dot, dout);
  Attention a = attention(q, k, v, causal, scale);
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
  return {dq_dot, dk_dot, dv_dot, a.out_dot};
}

}  // namespace theria::reference
