#include "explicit/row_kernel_binding.h"

#include <ATen/ATen.h>

namespace theria::row_kernels {
namespace {

using kernels::MatrixView;

at::ScalarType compute_dtype(const Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// [batch, rows, cols] in the compute dtype with a contiguous last dimension.
struct Operand {
  Tensor t;
  MatrixView view() const { return {t.data_ptr(), t.stride(0), t.stride(1)}; }
};

// Product of the leading (batch/head) sizes; rows and cols are >= 1 here (empty problems never reach a
// backend's kernels: core/backend.cpp).
int64_t batch_of(const Tensor& t) { return t.numel() / (t.size(-2) * t.size(-1)); }

Operand operand(const Tensor& t, at::ScalarType dtype) {
  Tensor x = t.to(dtype).reshape({batch_of(t), t.size(-2), t.size(-1)});
  if (x.stride(-1) != 1) x = x.contiguous();
  return {x};
}

Operand tangent_operand(const OptTensor& t, const Tensor& primal, at::ScalarType dtype) {
  if (t.has_value() && t->defined()) return operand(*t, dtype);
  return {at::zeros({batch_of(primal), primal.size(-2), primal.size(-1)}, primal.options().dtype(dtype))};
}

// A fresh contiguous output of `like`'s shape. (Not empty_like: for an input whose elements overlap,
// such as an expanded or as_strided tensor, it orders strides so the last dim need not be contiguous.)
Operand empty_like_operand(const Operand& like) { return {at::empty(like.t.sizes(), like.t.options())}; }

// Back to the caller's (..., rows, cols) shape and dtype.
Tensor result(const Operand& x, const Tensor& like_shape, at::ScalarType dtype) {
  return x.t.reshape(like_shape.sizes()).to(dtype);
}

Tensor stats_result(const Tensor& s, const Tensor& q) {
  auto shape = q.sizes().vec();
  shape.pop_back();
  return s.reshape(shape);
}

void fill_problem(kernels::SdpaFwdParams& p, const Operand& q, const Operand& k, const Operand& v, bool causal,
                  double scale) {
  p.batch = q.t.size(0);
  p.len_q = q.t.size(1);
  p.len_kv = k.t.size(1);
  p.dim_qk = q.t.size(2);
  p.dim_v = v.t.size(2);
  p.scale = scale;
  p.causal = causal;
  p.q = q.view();
  p.k = k.view();
  p.v = v.view();
}

struct FwdOutputs {
  Operand out, lse, out_dot, lse_dot;
};

FwdOutputs run_fwd(const RowKernels& kernels, const Operand& q, const Operand& k, const Operand& v, const Operand* q_dot,
                   const Operand* k_dot, const Operand* v_dot, bool causal, double scale) {
  const auto dtype = q.t.scalar_type();
  FwdOutputs o;
  o.out = {at::empty({q.t.size(0), q.t.size(1), v.t.size(2)}, q.t.options())};
  o.lse = {at::empty({q.t.size(0), q.t.size(1)}, q.t.options())};
  kernels::SdpaFwdParams p;
  fill_problem(p, q, k, v, causal, scale);
  p.out = o.out.view();
  p.lse = o.lse.t.data_ptr();
  if (q_dot != nullptr) {
    o.out_dot = empty_like_operand(o.out);
    o.lse_dot = empty_like_operand(o.lse);
    p.q_dot = q_dot->view();
    p.k_dot = k_dot->view();
    p.v_dot = v_dot->view();
    p.out_dot = o.out_dot.view();
    p.lse_dot = o.lse_dot.t.data_ptr();
  }
  if (p.batch > 0) kernels.fwd(p, dtype);
  return o;
}

}  // namespace

std::tuple<Tensor, Tensor> sdpa_fwd(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  const auto dt = compute_dtype(q);
  const auto o =
      run_fwd(kernels, operand(q, dt), operand(k, dt), operand(v, dt), nullptr, nullptr, nullptr, causal, scale);
  auto out_shape = q.sizes().vec();
  out_shape.back() = v.size(-1);
  return {o.out.t.reshape(out_shape).to(q.scalar_type()), stats_result(o.lse.t, q)};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale) {
  const auto dt = compute_dtype(q);
  const auto qd = tangent_operand(q_dot, q, dt), kd = tangent_operand(k_dot, k, dt),
             vd = tangent_operand(v_dot, v, dt);
  const auto o = run_fwd(kernels, operand(q, dt), operand(k, dt), operand(v, dt), &qd, &kd, &vd, causal, scale);
  auto out_shape = q.sizes().vec();
  out_shape.back() = v.size(-1);
  return {o.out.t.reshape(out_shape).to(q.scalar_type()), stats_result(o.lse.t, q),
          o.out_dot.t.reshape(out_shape).to(q.scalar_type())};
}

namespace {

struct BwdInputs {
  Operand q, k, v, out, dout, lse;
};

kernels::SdpaBwdParams bwd_params(const BwdInputs& in, bool causal, double scale, Operand& dq, Operand& dk,
                                  Operand& dv, Tensor& delta) {
  kernels::SdpaBwdParams p;
  fill_problem(p, in.q, in.k, in.v, causal, scale);
  p.out = in.out.view();
  p.lse = in.lse.t.data_ptr();
  p.dout = in.dout.view();
  dq = empty_like_operand(in.q);
  dk = empty_like_operand(in.k);
  dv = empty_like_operand(in.v);
  delta = at::empty({in.q.t.size(0), in.q.t.size(1)}, in.q.t.options());
  p.dq = dq.view();
  p.dk = dk.view();
  p.dv = dv.view();
  p.delta = delta.data_ptr();
  return p;
}

BwdInputs bwd_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& dout) {
  const auto dt = compute_dtype(q);
  return {operand(q, dt), operand(k, dt), operand(v, dt), operand(out, dt), operand(dout, dt),
          {lse.to(dt).reshape({batch_of(q), q.size(-2)}).contiguous()}};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> sdpa_bwd(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                            const Tensor& lse, const Tensor& dout, bool causal, double scale) {
  const auto in = bwd_inputs(q, k, v, out, lse, dout);
  Operand dq, dk, dv;
  Tensor delta;
  const auto p = bwd_params(in, causal, scale, dq, dk, dv, delta);
  if (p.batch > 0) kernels.bwd(p, in.q.t.scalar_type());
  const auto dt = q.scalar_type();
  return {result(dq, q, dt), result(dk, k, dt), result(dv, v, dt)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v,
                                                        const Tensor& out, const Tensor& lse, const Tensor& dout,
                                                        const OptTensor& q_dot, const OptTensor& k_dot,
                                                        const OptTensor& v_dot, const OptTensor& dout_dot,
                                                        bool causal, double scale) {
  const auto in = bwd_inputs(q, k, v, out, lse, dout);
  const auto dt = in.q.t.scalar_type();
  const auto qd = tangent_operand(q_dot, q, dt), kd = tangent_operand(k_dot, k, dt),
             vd = tangent_operand(v_dot, v, dt), dod = tangent_operand(dout_dot, dout, dt);
  // The forward tangents out_dot and lse_dot feed the row term delta_dot and P's tangent.
  const auto fwd = run_fwd(kernels, in.q, in.k, in.v, &qd, &kd, &vd, causal, scale);

  Operand dq, dk, dv;
  Tensor delta;
  auto p = bwd_params(in, causal, scale, dq, dk, dv, delta);
  Operand dq_dot = empty_like_operand(in.q), dk_dot = empty_like_operand(in.k), dv_dot = empty_like_operand(in.v);
  Tensor delta_dot = at::empty_like(delta);
  p.q_dot = qd.view();
  p.k_dot = kd.view();
  p.v_dot = vd.view();
  p.out_dot = fwd.out_dot.view();
  p.lse_dot = fwd.lse_dot.t.data_ptr();
  p.dout_dot = dod.view();
  p.dq_dot = dq_dot.view();
  p.dk_dot = dk_dot.view();
  p.dv_dot = dv_dot.view();
  p.delta_dot = delta_dot.data_ptr();
  if (p.batch > 0) kernels.bwd(p, dt);
  const auto out_dt = q.scalar_type();
  return {result(dq_dot, q, out_dt), result(dk_dot, k, out_dt), result(dv_dot, v, out_dt),
          result(fwd.out_dot, out, out_dt)};
}

}  // namespace theria::row_kernels
