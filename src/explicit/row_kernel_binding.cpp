#include "explicit/row_kernel_binding.h"

#include "explicit/binding_layout.h"
#include "explicit/mask_operand.h"

#include <ATen/ATen.h>

namespace theria::row_kernels {
namespace {

using kernels::MatrixView;

at::ScalarType compute_dtype(const Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// (Empty problems never reach a backend's kernels: core/backend.cpp; batch_of's rows and cols are >= 1 here.)

// An operand in the compute dtype, read in place where its strides allow (describe_rows: expanded and strided
// leading dims included), else laid out contiguously in its own shape. A key-side operand (k, v, their tangents and
// gradients) is addressed by the query's batch index under grouped-query attention.
struct Operand {
  Tensor t;
  MatrixView base;
  int64_t batch = 0, rows = 0, cols = 0;
  Heads heads;  // set on key-side operands only
  MatrixView view() const {
    MatrixView v = base;
    if (heads.group > 1) {
      v.heads = heads.q;
      v.group = heads.group;
    }
    return v;
  }
};

Operand laid_out(Tensor x, Heads heads) {
  Operand o{std::move(x), {}, 0, 0, 0, heads};
  o.batch = batch_of(o.t);
  o.rows = o.t.size(-2);
  o.cols = o.t.size(-1);
  if (!describe_rows(o.t, o.base)) {
    o.t = o.t.contiguous();
    describe_rows(o.t, o.base);
  }
  return o;
}

Operand operand(const Tensor& t, at::ScalarType dtype, Heads heads = {}) { return laid_out(t.to(dtype), heads); }

Operand tangent_operand(const OptTensor& t, const Tensor& primal, at::ScalarType dtype, Heads heads = {}) {
  if (t.has_value() && t->defined()) return operand(*t, dtype, heads);
  return laid_out(at::zeros(primal.sizes(), primal.options().dtype(dtype)), heads);
}

// A fresh contiguous output of `like`'s shape. (Not empty_like: for an input whose elements overlap,
// such as an expanded or as_strided tensor, it orders strides so the last dim need not be contiguous.)
Operand empty_like_operand(const Operand& like) { return laid_out(at::empty(like.t.sizes(), like.t.options()), like.heads); }

// A fresh contiguous output of shape `shape`.
Operand empty_operand(at::IntArrayRef shape, const at::TensorOptions& options) { return laid_out(at::empty(shape, options), {}); }

// Back to the caller's (..., rows, cols) shape and dtype.
Tensor result(const Operand& x, const Tensor& like_shape, at::ScalarType dtype) {
  return x.t.reshape(like_shape.sizes()).to(dtype);
}

Tensor stats_result(const Tensor& s, const Tensor& q) {
  auto shape = q.sizes().vec();
  shape.pop_back();
  return s.reshape(shape);
}

// The operands of one problem: q-side and key-side in the compute dtype, the mask and its tangent (a float mask's).
struct Problem {
  Operand q, k, v;
  MaskOperand mask, mask_dot;
  Heads heads;
};
Problem problem(const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& mask,
                const OptTensor& mask_dot = std::nullopt) {
  const auto dt = compute_dtype(q);
  const Heads h = heads_of(q, k);
  return {operand(q, dt), operand(k, dt, h), operand(v, dt, h), mask_operand(mask, q, k.size(-2), dt),
          mask_operand(mask_dot, q, k.size(-2), dt), h};
}

// A float mask's gradient (or its tangent), when asked: one element per pair (the scalar kernels store).
MaskGradOperand mask_grad(const OptTensor& mask, bool wanted, const Problem& in, kernels::SdpaBwdParams& p) {
  if (!wanted) return {};
  auto o = mask_grad_operand(*mask, in.q.t, in.k.rows, in.q.t.scalar_type(), /*may_accumulate=*/false);
  p.dmask = o.view;
  return o;
}


void fill_problem(kernels::SdpaFwdParams& p, const Problem& in, bool causal, double scale) {
  p.batch = in.q.batch;
  p.len_q = in.q.rows;
  p.len_kv = in.k.rows;
  p.dim_qk = in.q.cols;
  p.dim_v = in.v.cols;
  p.scale = scale;
  p.causal = causal;
  p.heads_q = in.heads.q;
  p.group = in.heads.group;
  p.mask = in.mask.view;
  p.mask_dot = in.mask_dot.view;
  p.q = in.q.view();
  p.k = in.k.view();
  p.v = in.v.view();
}

struct FwdOutputs {
  Operand out, lse, out_dot, lse_dot;
};

FwdOutputs run_fwd(const RowKernels& kernels, const Problem& in, const Operand* q_dot, const Operand* k_dot,
                   const Operand* v_dot, bool causal, double scale) {
  const auto& q = in.q.t;
  const auto dtype = q.scalar_type();
  FwdOutputs o;
  auto out_shape = q.sizes().vec();
  out_shape.back() = in.v.cols;
  o.out = empty_operand(out_shape, q.options());
  o.lse = empty_operand({in.q.batch, in.q.rows}, q.options());
  kernels::SdpaFwdParams p;
  fill_problem(p, in, causal, scale);
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

std::vector<int64_t> out_shape(const Tensor& q, const Tensor& v) {
  auto s = q.sizes().vec();
  s.back() = v.size(-1);
  return s;
}

}  // namespace

std::tuple<Tensor, Tensor> sdpa_fwd(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal, double scale, const OptTensor& mask) {
  const auto o = run_fwd(kernels, problem(q, k, v, mask), nullptr, nullptr, nullptr, causal, scale);
  return {o.out.t.reshape(out_shape(q, v)).to(q.scalar_type()), stats_result(o.lse.t, q)};
}

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale, const OptTensor& mask,
                                            const OptTensor& mask_dot) {
  const auto in = problem(q, k, v, mask, mask_dot);
  const auto dt = in.q.t.scalar_type();
  const auto qd = tangent_operand(q_dot, q, dt), kd = tangent_operand(k_dot, k, dt, in.heads),
             vd = tangent_operand(v_dot, v, dt, in.heads);
  const auto o = run_fwd(kernels, in, &qd, &kd, &vd, causal, scale);
  return {o.out.t.reshape(out_shape(q, v)).to(q.scalar_type()), stats_result(o.lse.t, q),
          o.out_dot.t.reshape(out_shape(q, v)).to(q.scalar_type())};
}

namespace {

struct BwdInputs {
  Problem in;
  Operand out, dout, lse;
};

kernels::SdpaBwdParams bwd_params(const BwdInputs& b, bool causal, double scale, Operand& dq, Operand& dk,
                                  Operand& dv, Tensor& delta) {
  kernels::SdpaBwdParams p;
  fill_problem(p, b.in, causal, scale);
  p.out = b.out.view();
  p.lse = b.lse.t.data_ptr();
  p.dout = b.dout.view();
  dq = empty_like_operand(b.in.q);
  dk = empty_like_operand(b.in.k);
  dv = empty_like_operand(b.in.v);
  delta = at::empty({b.in.q.batch, b.in.q.rows}, b.in.q.t.options());
  p.dq = dq.view();
  p.dk = dk.view();
  p.dv = dv.view();
  p.delta = delta.data_ptr();
  return p;
}

BwdInputs bwd_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& dout, const OptTensor& mask, const OptTensor& mask_dot = std::nullopt) {
  const auto dt = compute_dtype(q);
  return {problem(q, k, v, mask, mask_dot), operand(out, dt), operand(dout, dt),
          laid_out(lse.to(dt).reshape({batch_of(q), q.size(-2)}).contiguous(), {})};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const RowKernels& kernels, const Tensor& q, const Tensor& k,
                                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                                    const Tensor& dout, bool causal, double scale,
                                                    const OptTensor& mask, bool mask_grad_wanted) {
  const auto b = bwd_inputs(q, k, v, out, lse, dout, mask);
  Operand dq, dk, dv;
  Tensor delta;
  auto p = bwd_params(b, causal, scale, dq, dk, dv, delta);
  const auto dmask = mask_grad(mask, mask_grad_wanted, b.in, p);
  if (p.batch > 0) kernels.bwd(p, b.in.q.t.scalar_type());
  const auto dt = q.scalar_type();
  return {result(dq, q, dt), result(dk, k, dt), result(dv, v, dt), dmask.result(mask, q)};
}

Tensor5 sdpa_bwd_jvp(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                     const Tensor& lse, const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot,
                     const OptTensor& v_dot, const OptTensor& dout_dot, bool causal, double scale,
                     const OptTensor& mask, const OptTensor& mask_dot, bool mask_grad_wanted) {
  const auto b = bwd_inputs(q, k, v, out, lse, dout, mask, mask_dot);
  const auto dt = b.in.q.t.scalar_type();
  const auto qd = tangent_operand(q_dot, q, dt), kd = tangent_operand(k_dot, k, dt, b.in.heads),
             vd = tangent_operand(v_dot, v, dt, b.in.heads), dod = tangent_operand(dout_dot, dout, dt);
  // The forward tangents out_dot and lse_dot feed the row term delta_dot and P's tangent.
  const auto fwd = run_fwd(kernels, b.in, &qd, &kd, &vd, causal, scale);

  Operand dq, dk, dv;
  Tensor delta;
  auto p = bwd_params(b, causal, scale, dq, dk, dv, delta);
  Operand dq_dot = empty_like_operand(b.in.q), dk_dot = empty_like_operand(b.in.k), dv_dot = empty_like_operand(b.in.v);
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
  const auto dmask_dot = mask_grad(mask, mask_grad_wanted, b.in, p);
  if (p.batch > 0) kernels.bwd(p, dt);
  const auto out_dt = q.scalar_type();
  return {result(dq_dot, q, out_dt), result(dk_dot, k, out_dt), result(dv_dot, v, out_dt),
          result(fwd.out_dot, out, out_dt), dmask_dot.result(mask, q)};
}

}  // namespace theria::row_kernels
