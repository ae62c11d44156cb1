// theria::sdpa on CPU against the oracle (reference::sdpa_math differentiated by PyTorch autograd):
// forward in float64/float32 (and float16/bfloat16 through the explicit kernels' upcast), the
// reverse chain at orders 1, 2 and 3 through torch::autograd::grad(create_graph=true), forward
// mode through dual tensors, forward-over-reverse, odd layouts, and the low-level ops.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <array>

#include "ops/ops.h"
#include "test_util.h"

namespace theria_test {
namespace {

using theria::Backend;

constexpr Backend kAllBackends[] = {Backend::Explicit, Backend::Reference, Backend::Auto};

// Odd shapes: L = 1, L < S and L > S, E != Ev, 2-D, 3-D and 4-D, both masks, several tiles of
// the explicit kernels (16 query rows x 64 keys), an explicit scale and a large one (peaked softmax).
const Case kCases[] = {
    {{2}, 1, 7, 5, 3, false, std::nullopt},
    {{2}, 1, 7, 5, 3, true, std::nullopt},
    {{2, 3}, 5, 9, 4, 6, true, std::nullopt},
    {{2, 3}, 9, 5, 6, 3, true, std::nullopt},
    {{2, 3}, 9, 5, 6, 3, false, 0.3},
    {{3}, 11, 13, 8, 8, false, 0.3},
    {{}, 4, 4, 3, 2, true, std::nullopt},
    {{2}, 37, 130, 5, 7, true, std::nullopt},
    {{2}, 37, 130, 5, 7, false, std::nullopt},
    {{1, 2}, 70, 20, 3, 4, true, 2.5},
    {{2}, 6, 10, 4, 5, false, 8.0},
};

// Inputs of one problem; every tensor gets its own seed, so none is ever equal to another.
struct Inputs {
  Tensor q, k, v, dout;
  TensorList u, w;  // cotangents of (dq, dk, dv) and of (q, k, v, dout)-gradients
  TensorList tangents;
  Tensor dout_tangent;
};

Inputs make_inputs(const Case& c, at::ScalarType dtype, uint64_t seed, bool requires_grad) {
  Inputs in;
  in.q = randn(c.q_shape(), seed + 1, dtype).requires_grad_(requires_grad);
  in.k = randn(c.k_shape(), seed + 2, dtype).requires_grad_(requires_grad);
  in.v = randn(c.v_shape(), seed + 3, dtype).requires_grad_(requires_grad);
  in.dout = randn(c.out_shape(), seed + 4, dtype).requires_grad_(requires_grad);
  in.u = {randn(c.q_shape(), seed + 5, dtype), randn(c.k_shape(), seed + 6, dtype),
          randn(c.v_shape(), seed + 7, dtype)};
  in.w = {randn(c.q_shape(), seed + 8, dtype), randn(c.k_shape(), seed + 9, dtype),
          randn(c.v_shape(), seed + 10, dtype), randn(c.out_shape(), seed + 11, dtype)};
  in.tangents = {randn(c.q_shape(), seed + 12, dtype), randn(c.k_shape(), seed + 13, dtype),
                 randn(c.v_shape(), seed + 14, dtype)};
  in.dout_tangent = randn(c.out_shape(), seed + 15, dtype);
  return in;
}

// The same values as float64 leaves, for the oracle.
Inputs oracle_inputs(const Inputs& in) {
  Inputs o;
  o.q = f64_leaf(in.q, true);
  o.k = f64_leaf(in.k, true);
  o.v = f64_leaf(in.v, true);
  o.dout = f64_leaf(in.dout, true);
  for (const auto& t : in.u) o.u.push_back(f64_leaf(t, false));
  for (const auto& t : in.w) o.w.push_back(f64_leaf(t, false));
  for (const auto& t : in.tangents) o.tangents.push_back(f64_leaf(t, false));
  o.dout_tangent = f64_leaf(in.dout_tangent, false);
  return o;
}

std::string grad_fn_name(const Tensor& t) { return t.grad_fn() ? t.grad_fn()->name() : "<none>"; }

// Runs `check` on every shape of kCases; a failure names its case. (One ctest entry per check,
// not per shape: each entry is a process, and loading libtorch costs about 0.3 s.)
template <typename Check>
void for_each_case(Check&& check) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(describe(c));
    check(c);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

TEST(SdpaShapes, ForwardMatchesOracle) {
  for_each_case([](const Case& c) {
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      const Inputs in = make_inputs(c, dtype, 100, /*requires_grad=*/false);
      const Tensor ref = oracle_fn(c)(f64_leaf(in.q, false), f64_leaf(in.k, false), f64_leaf(in.v, false));
      for (const auto backend : kAllBackends) {
        SCOPED_TRACE(std::string(theria::backend_name(backend)) + " " + c10::toString(dtype));
        const Tensor out = theria::sdpa(in.q, in.k, in.v, c.options(backend));
        EXPECT_EQ(out.sizes(), at::IntArrayRef(c.out_shape()));
        EXPECT_EQ(out.scalar_type(), dtype);
        EXPECT_TRUE(out.is_contiguous());
        EXPECT_CLOSE(out, ref, dtype, Derivative::Forward);
      }
    }
  });
}

// The explicit kernels compute half-precision inputs in float and round the result once.
TEST(SdpaShapes, ForwardHalfPrecisionExplicit) {
  for_each_case([](const Case& c) {
    for (const auto dtype : {at::kHalf, at::kBFloat16}) {
      SCOPED_TRACE(c10::toString(dtype));
      const Inputs in = make_inputs(c, dtype, 200, false);
      const Tensor ref = oracle_fn(c)(f64_leaf(in.q, false), f64_leaf(in.k, false), f64_leaf(in.v, false));
      const Tensor out = theria::sdpa(in.q, in.k, in.v, c.options(Backend::Explicit));
      EXPECT_EQ(out.scalar_type(), dtype);
      EXPECT_CLOSE(out, ref, dtype, Derivative::Forward);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Reverse mode: torch::autograd::grad with create_graph=true, twice (and a third time).

TEST(SdpaShapes, ReverseChainFloat64MatchesOracle) {
  for_each_case([](const Case& c) {
    const Inputs in = make_inputs(c, at::kDouble, 300, true);
    const Inputs o = oracle_inputs(in);
    const ReverseChain ref = reverse_chain(oracle_fn(c), {o.q, o.k, o.v}, o.dout, o.u, o.w, 3);
    const char* names[] = {"q", "k", "v", "dout"};
    for (const auto backend : kAllBackends) {
      // max_order 2: the HVP from theria's explicit kernels; 3: up to third order (exact path).
      for (const int max_order : {2, 3}) {
        SCOPED_TRACE(std::string(theria::backend_name(backend)) + " max_order " + std::to_string(max_order));
        const ReverseChain r = reverse_chain(theria_fn(c, backend), {in.q, in.k, in.v}, in.dout, in.u, in.w, max_order);
        EXPECT_CLOSE(r.out, ref.out, at::kDouble, Derivative::Forward);
        for (size_t i = 0; i < 3; ++i) {
          SCOPED_TRACE(std::string("first-order gradient of ") + names[i]);
          EXPECT_CLOSE(r.first[i], ref.first[i], at::kDouble, Derivative::FirstOrder);
        }
        for (size_t i = 0; i < 4; ++i) {
          SCOPED_TRACE(std::string("second-order gradient of ") + names[i]);
          EXPECT_CLOSE(r.second[i], ref.second[i], at::kDouble, Derivative::SecondOrder);
        }
        for (size_t i = 0; i < r.third.size(); ++i) {
          SCOPED_TRACE(std::string("third-order gradient of ") + names[i]);
          EXPECT_CLOSE(r.third[i], ref.third[i], at::kDouble, Derivative::ThirdOrder);
        }
        if (backend != Backend::Reference) {
          // Auto on CPU is the explicit path: theria's own nodes, not PyTorch's.
          EXPECT_EQ(grad_fn_name(r.out), "theria::SdpaBackward");
          for (size_t i = 0; i < 3; ++i) EXPECT_EQ(grad_fn_name(r.first[i]), "theria::SdpaBwdBackward");
        } else {
          EXPECT_EQ(grad_fn_name(r.out).rfind("theria::", 0), std::string::npos) << grad_fn_name(r.out);
        }
      }
    }
  });
}

// float32 through the explicit kernels against the float64 oracle on the same rounded values.
TEST(SdpaShapes, ReverseChainFloat32Explicit) {
  for_each_case([](const Case& c) {
    const Inputs in = make_inputs(c, at::kFloat, 400, true);
    const Inputs o = oracle_inputs(in);
    const ReverseChain ref = reverse_chain(oracle_fn(c), {o.q, o.k, o.v}, o.dout, o.u, o.w, 3);
    for (const int max_order : {2, 3}) {
      SCOPED_TRACE("max_order " + std::to_string(max_order));
      const ReverseChain r =
          reverse_chain(theria_fn(c, Backend::Explicit), {in.q, in.k, in.v}, in.dout, in.u, in.w, max_order);
      EXPECT_CLOSE(r.out, ref.out, at::kFloat, Derivative::Forward);
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(r.first[i].scalar_type(), at::kFloat);
        EXPECT_CLOSE(r.first[i], ref.first[i], at::kFloat, Derivative::FirstOrder) << " input " << i;
      }
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(r.second[i].scalar_type(), at::kFloat);
        EXPECT_CLOSE(r.second[i], ref.second[i], at::kFloat, Derivative::SecondOrder) << " input " << i;
      }
      for (size_t i = 0; i < r.third.size(); ++i) {
        EXPECT_CLOSE(r.third[i], ref.third[i], at::kFloat, Derivative::ThirdOrder) << " input " << i;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Forward mode from C++: dual tensors at a forward-AD level (torch::autograd::forward_ad).

TEST(SdpaShapes, ForwardModeJvpMatchesOracle) {
  for_each_case([](const Case& c) {
    const Inputs in = make_inputs(c, at::kDouble, 500, false);
    const Inputs o = oracle_inputs(in);
    const TensorList qkv{in.q.detach(), in.k.detach(), in.v.detach()};
    const TensorList oqkv{o.q.detach(), o.k.detach(), o.v.detach()};
    // All three tangents, then each alone (the others absent, i.e. zero).
    const std::vector<std::array<bool, 3>> which{
        {true, true, true}, {true, false, false}, {false, true, false}, {false, false, true}};
    for (const auto& mask : which) {
      TensorList t, ot;
      for (size_t i = 0; i < 3; ++i) {
        t.push_back(mask[i] ? in.tangents[i] : Tensor());
        ot.push_back(mask[i] ? o.tangents[i] : Tensor());
      }
      const Tensor ref = jvp(oracle_fn(c), oqkv, ot);
      for (const auto backend : kAllBackends) {
        SCOPED_TRACE(std::string(theria::backend_name(backend)) + " tangents q,k,v = " + std::to_string(mask[0]) +
                     std::to_string(mask[1]) + std::to_string(mask[2]));
        EXPECT_CLOSE(jvp(theria_fn(c, backend), qkv, t), ref, at::kDouble, Derivative::FirstOrder);
      }
    }
  });
}

// Forward-over-reverse: the tangent of (dq, dk, dv) = H t + J^T t_dout, computed by theria with
// dual tensors through torch::autograd::grad. The oracle cannot run that way from C++: PyTorch's
// forward AD of _softmax_backward_data is a JIT decomposition that only the Python frontend
// registers ("Trying to use forward AD with _softmax_backward_data that does not support it").
// So the oracle computes the same vector in reverse mode: H t is the second-order gradient
// d<J^T dout, t>/d(q, k, v) (the Hessian of <dout, f> is symmetric) and J^T t_dout is a vjp.
// The Reference backend is PyTorch's own softmax, so it hits the same limitation from C++.
TEST(SdpaShapes, ForwardOverReverseMatchesOracle) {
  for_each_case([](const Case& c) {
    const Inputs in = make_inputs(c, at::kDouble, 600, true);
    const Inputs o = oracle_inputs(in);
    const ReverseChain hvp = reverse_chain(oracle_fn(c), {o.q, o.k, o.v}, o.dout, o.tangents, {}, 2);
    const TensorList vjp = torch::autograd::grad({hvp.out}, {o.q, o.k, o.v}, {o.dout_tangent}, true, false);
    for (const auto backend : {Backend::Explicit, Backend::Auto}) {
      for (const bool create_graph : {false, true}) {
        SCOPED_TRACE(std::string(theria::backend_name(backend)) + " create_graph " + std::to_string(create_graph));
        const TensorList t = forward_over_reverse(theria_fn(c, backend), {in.q, in.k, in.v}, in.dout, in.tangents,
                                                  in.dout_tangent, create_graph);
        for (size_t i = 0; i < 3; ++i) {
          EXPECT_CLOSE(t[i], hvp.second[i] + vjp[i], at::kDouble, Derivative::SecondOrder) << " gradient " << i;
        }
      }
    }
  });
}

// The low-level ops with backend "explicit" against the reference formulas (with "reference").
TEST(SdpaShapes, LowLevelOpsExplicitMatchReference) {
  for_each_case([](const Case& c) {
    const double s = c.resolved_scale();
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      SCOPED_TRACE(c10::toString(dtype));
      const Inputs in = make_inputs(c, dtype, 700, false);
      const Inputs o = oracle_inputs(in);
      const Tensor oq = o.q.detach(), ok = o.k.detach(), ov = o.v.detach(), odout = o.dout.detach();

      const auto [out, lse] = theria::ops::sdpa_fwd(in.q, in.k, in.v, c.causal, s, "explicit");
      const auto [ref_out, ref_lse] = theria::ops::sdpa_fwd(oq, ok, ov, c.causal, s, "reference");
      EXPECT_EQ(lse.scalar_type(), dtype == at::kDouble ? at::kDouble : at::kFloat);
      std::vector<int64_t> lse_shape = c.lead;
      lse_shape.push_back(c.L);
      EXPECT_EQ(lse.sizes(), at::IntArrayRef(lse_shape));
      EXPECT_CLOSE(out, ref_out, dtype, Derivative::Forward);
      EXPECT_CLOSE(lse, ref_lse, dtype, Derivative::Forward);
      EXPECT_CLOSE(ref_lse, at::logsumexp(theria::reference::logits(oq, ok, c.causal, s), -1), at::kDouble,
                   Derivative::Forward);

      // JVP with one tangent absent.
      const auto [jout, jlse, jdot] = theria::ops::sdpa_jvp(in.q, in.k, in.v, in.tangents[0], std::nullopt,
                                                            in.tangents[2], c.causal, s, "explicit");
      const auto ref_jvp =
          theria::reference::sdpa_jvp(oq, ok, ov, o.tangents[0], std::nullopt, o.tangents[2], c.causal, s);
      EXPECT_CLOSE(jout, std::get<0>(ref_jvp), dtype, Derivative::Forward);
      EXPECT_CLOSE(jdot, std::get<2>(ref_jvp), dtype, Derivative::FirstOrder);

      const auto [dq, dk, dv, dmask] =
          theria::ops::sdpa_bwd(in.q, in.k, in.v, out, lse, in.dout, c.causal, s, "explicit");
      const auto ref_bwd = theria::reference::sdpa_bwd(oq, ok, ov, odout, c.causal, s);
      EXPECT_CLOSE(dq, std::get<0>(ref_bwd), dtype, Derivative::FirstOrder);
      EXPECT_CLOSE(dk, std::get<1>(ref_bwd), dtype, Derivative::FirstOrder);
      EXPECT_CLOSE(dv, std::get<2>(ref_bwd), dtype, Derivative::FirstOrder);

      // Backward's tangent, with the key tangent absent and a cotangent tangent present.
      const auto [dq_dot, dk_dot, dv_dot, out_dot, dmask_dot] =
          theria::ops::sdpa_bwd_jvp(in.q, in.k, in.v, out, lse, in.dout, in.tangents[0], std::nullopt, in.tangents[2],
                                    in.dout_tangent, c.causal, s, "explicit");
      const auto ref_bj = theria::reference::sdpa_bwd_jvp(oq, ok, ov, odout, o.tangents[0], std::nullopt, o.tangents[2],
                                                          o.dout_tangent, c.causal, s);
      EXPECT_CLOSE(dq_dot, std::get<0>(ref_bj), dtype, Derivative::SecondOrder);
      EXPECT_CLOSE(dk_dot, std::get<1>(ref_bj), dtype, Derivative::SecondOrder);
      EXPECT_CLOSE(dv_dot, std::get<2>(ref_bj), dtype, Derivative::SecondOrder);
      EXPECT_CLOSE(out_dot, std::get<3>(ref_bj), dtype, Derivative::FirstOrder);
    }
  });
}

// The HVP of a scalar loss whose cotangent depends on the output itself (dout = out * a, from
// loss = sum(out^2 a)/2), so the double backward also flows back through dout into a second use
// of SdpaBackward. Up to third order.
TEST(SdpaShapes, ScalarLossHvpMatchesOracle) {
  for_each_case([](const Case& c) {
    const Inputs in = make_inputs(c, at::kDouble, 800, true);
    const Inputs o = oracle_inputs(in);
    const Tensor a = randn(c.out_shape(), 820).exp();  // positive weights
    auto chain = [&](const SdpaFn& fn, const TensorList& qkv, const TensorList& u, const TensorList& w, int order) {
      const Tensor out = fn(qkv[0], qkv[1], qkv[2]);
      const Tensor loss = (out * out * a).sum() * 0.5;
      TensorList r = torch::autograd::grad({loss}, qkv, {}, true, true);
      TensorList h = torch::autograd::grad({dot(r, u)}, qkv, {}, true, order > 2);
      r.insert(r.end(), h.begin(), h.end());
      if (order > 2) {
        const TensorList t = torch::autograd::grad({dot(h, w)}, qkv, {}, true, false);
        r.insert(r.end(), t.begin(), t.end());
      }
      return r;
    };
    const TensorList w3(in.w.begin(), in.w.begin() + 3), ow3(o.w.begin(), o.w.begin() + 3);
    const TensorList ref = chain(oracle_fn(c), {o.q, o.k, o.v}, o.u, ow3, 3);
    for (const auto backend : {Backend::Explicit, Backend::Auto}) {
      for (const int order : {2, 3}) {
        SCOPED_TRACE(std::string(theria::backend_name(backend)) + " order " + std::to_string(order));
        const TensorList r = chain(theria_fn(c, backend), {in.q, in.k, in.v}, in.u, w3, order);
        for (size_t i = 0; i < r.size(); ++i) {
          EXPECT_CLOSE(r[i], ref[i], at::kDouble, static_cast<Derivative>(1 + i / 3)) << " result " << i;
        }
      }
    }
  });
}

// Reverse-over-forward: d<J t, w>/d(q, k, v) through theria's forward mode (the JVP carries
// reverse history), against the oracle's reverse-mode equivalent H_w t (the Hessian of <w, f>).
TEST(SdpaShapes, ReverseOverForwardMatchesOracle) {
  for_each_case([](const Case& c) {
    const Inputs in = make_inputs(c, at::kDouble, 900, true);
    const Inputs o = oracle_inputs(in);
    const Tensor w = in.w[3].detach();
    const ReverseChain ref = reverse_chain(oracle_fn(c), {o.q, o.k, o.v}, f64_leaf(w, true), o.tangents, {}, 2);
    for (const auto backend : {Backend::Explicit, Backend::Auto}) {
      SCOPED_TRACE(theria::backend_name(backend));
      TensorList g;
      {
        DualLevel level;
        const Tensor out =
            theria_fn(c, backend)(make_dual(in.q, in.tangents[0], level), make_dual(in.k, in.tangents[1], level),
                                  make_dual(in.v, in.tangents[2], level));
        const Tensor t = std::get<1>(at::_unpack_dual(out, level.level()));
        ASSERT_TRUE(t.defined());
        ASSERT_TRUE(t.requires_grad());
        g = torch::autograd::grad({(t * w).sum()}, {in.q, in.k, in.v});
      }
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_CLOSE(g[i], ref.second[i], at::kDouble, Derivative::SecondOrder) << " input " << i;
      }
    }
  });
}

// float16 and bfloat16 through the explicit kernels (computed in float): gradient and HVP.
TEST(SdpaShapes, ReverseHalfPrecisionExplicit) {
  for_each_case([](const Case& c) {
    for (const auto dtype : {at::kHalf, at::kBFloat16}) {
      SCOPED_TRACE(c10::toString(dtype));
      const Inputs in = make_inputs(c, dtype, 1000, true);
      const Inputs o = oracle_inputs(in);
      const ReverseChain ref = reverse_chain(oracle_fn(c), {o.q, o.k, o.v}, o.dout, o.u, o.w, 2);
      const ReverseChain r = reverse_chain(theria_fn(c, Backend::Explicit), {in.q, in.k, in.v}, in.dout, in.u, in.w, 2);
      EXPECT_CLOSE(r.out, ref.out, dtype, Derivative::Forward);
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(r.first[i].scalar_type(), dtype);
        EXPECT_CLOSE(r.first[i], ref.first[i], dtype, Derivative::FirstOrder) << " input " << i;
      }
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(r.second[i].scalar_type(), dtype);
        EXPECT_CLOSE(r.second[i], ref.second[i], dtype, Derivative::SecondOrder) << " input " << i;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Layouts: views that are not contiguous, expanded (stride 0) inputs, a stride-0 cotangent.

TEST(SdpaLayout, NonContiguousInputs) {
  const Case c{{2, 3}, 6, 10, 4, 5, true, std::nullopt};
  // (B, L, H, 2E) -> transpose to (B, H, L, 2E) -> every other feature: strides everywhere.
  const Tensor qb = randn({2, 6, 3, 8}, 11).requires_grad_();
  const Tensor kb = randn({2, 10, 3, 4}, 12).requires_grad_();
  const Tensor vb = randn({2, 3, 5, 10}, 13).requires_grad_();  // (B, H, Ev, S) -> mT
  const Tensor dout_base = randn({2, 3, 5, 6}, 14).requires_grad_();
  const Tensor q = qb.transpose(1, 2).slice(-1, 0, 8, 2);
  const Tensor k = kb.transpose(1, 2);
  const Tensor v = vb.mT();
  const Tensor dout = dout_base.mT();
  ASSERT_FALSE(q.is_contiguous());
  ASSERT_FALSE(k.is_contiguous());
  ASSERT_NE(v.stride(-1), 1);
  ASSERT_EQ(q.sizes(), at::IntArrayRef(c.q_shape()));
  ASSERT_EQ(v.sizes(), at::IntArrayRef(c.v_shape()));

  const Tensor oqb = f64_leaf(qb, true), okb = f64_leaf(kb, true), ovb = f64_leaf(vb, true),
               odb = f64_leaf(dout_base, true);
  const Tensor oq = oqb.transpose(1, 2).slice(-1, 0, 8, 2), ok = okb.transpose(1, 2), ov = ovb.mT(), od = odb.mT();
  // u pairs with the first-order gradients, taken with respect to the base tensors.
  const TensorList u{randn(qb.sizes(), 15), randn(kb.sizes(), 16), randn(vb.sizes(), 17)};
  const TensorList w{randn(qb.sizes(), 18), randn(kb.sizes(), 19), randn(vb.sizes(), 20), randn(dout_base.sizes(), 21)};
  const ReverseChain ref = reverse_chain(oracle_fn(c), {oq, ok, ov}, od, u, w, 3, {oqb, okb, ovb, odb});
  for (const auto backend : kAllBackends) {
    SCOPED_TRACE(theria::backend_name(backend));
    for (const int max_order : {2, 3}) {
      SCOPED_TRACE("max_order " + std::to_string(max_order));
      const ReverseChain r =
          reverse_chain(theria_fn(c, backend), {q, k, v}, dout, u, w, max_order, {qb, kb, vb, dout_base});
      EXPECT_CLOSE(r.out, ref.out, at::kDouble, Derivative::Forward);
      for (size_t i = 0; i < 3; ++i) EXPECT_CLOSE(r.first[i], ref.first[i], at::kDouble, Derivative::FirstOrder);
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_CLOSE(r.second[i], ref.second[i], at::kDouble, Derivative::SecondOrder) << " input " << i;
      }
      for (size_t i = 0; i < r.third.size(); ++i) {
        EXPECT_CLOSE(r.third[i], ref.third[i], at::kDouble, Derivative::ThirdOrder) << " input " << i;
      }
    }
    // Forward mode on the same views.
    const TensorList t{randn(c.q_shape(), 22).mT().contiguous().mT(), randn(c.k_shape(), 23),
                       randn({2, 3, 5, 10}, 24).mT()};
    EXPECT_CLOSE(jvp(theria_fn(c, backend), {q.detach(), k.detach(), v.detach()}, t),
                 jvp(oracle_fn(c), {oq.detach(), ok.detach(), ov.detach()}, t), at::kDouble, Derivative::FirstOrder);
  }
}

TEST(SdpaLayout, ExpandedInputs) {
  const Case c{{2, 3}, 5, 7, 4, 6, false, std::nullopt};
  // Key shared by every batch and head (stride 0 in both leading dims), value shared by heads
  // only, query with one row repeated L times (stride 0 in dim -2).
  const Tensor kb = randn({1, 1, 7, 4}, 31).requires_grad_();
  const Tensor vb = randn({2, 1, 7, 6}, 32).requires_grad_();
  const Tensor qb = randn({2, 3, 1, 4}, 33).requires_grad_();
  const Tensor k = kb.expand(c.k_shape()), v = vb.expand(c.v_shape()), q = qb.expand(c.q_shape());
  const Tensor dout = randn(c.out_shape(), 34).requires_grad_();

  const Tensor okb = f64_leaf(kb, true), ovb = f64_leaf(vb, true), oqb = f64_leaf(qb, true), od = f64_leaf(dout, true);
  const TensorList u{randn(qb.sizes(), 35), randn(kb.sizes(), 36), randn(vb.sizes(), 37)};
  const TensorList w{randn(qb.sizes(), 38), randn(kb.sizes(), 39), randn(vb.sizes(), 40), randn(c.out_shape(), 41)};
  const ReverseChain ref =
      reverse_chain(oracle_fn(c), {oqb.expand(c.q_shape()), okb.expand(c.k_shape()), ovb.expand(c.v_shape())}, od, u, w,
                    3, {oqb, okb, ovb, od});
  for (const auto backend : kAllBackends) {
    SCOPED_TRACE(theria::backend_name(backend));
    for (const int max_order : {2, 3}) {
      SCOPED_TRACE("max_order " + std::to_string(max_order));
      const ReverseChain r = reverse_chain(theria_fn(c, backend), {q, k, v}, dout, u, w, max_order, {qb, kb, vb, dout});
      EXPECT_CLOSE(r.out, ref.out, at::kDouble, Derivative::Forward);
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(r.first[i].sizes(), ref.first[i].sizes());
        EXPECT_CLOSE(r.first[i], ref.first[i], at::kDouble, Derivative::FirstOrder) << " input " << i;
      }
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_CLOSE(r.second[i], ref.second[i], at::kDouble, Derivative::SecondOrder) << " input " << i;
      }
      for (size_t i = 0; i < r.third.size(); ++i) {
        EXPECT_CLOSE(r.third[i], ref.third[i], at::kDouble, Derivative::ThirdOrder) << " input " << i;
      }
    }
  }
}

// out.sum() hands the backward a cotangent of ones with every stride 0.
TEST(SdpaLayout, StrideZeroCotangentFromSum) {
  const Case c{{2}, 9, 12, 4, 3, true, std::nullopt};
  const Tensor q = randn(c.q_shape(), 51).requires_grad_(), k = randn(c.k_shape(), 52).requires_grad_(),
               v = randn(c.v_shape(), 53).requires_grad_();
  const Tensor oq = f64_leaf(q, true), ok = f64_leaf(k, true), ov = f64_leaf(v, true);
  const TensorList ref = torch::autograd::grad({oracle_fn(c)(oq, ok, ov).sum()}, {oq, ok, ov});
  const TensorList g =
      torch::autograd::grad({theria_fn(c, Backend::Explicit)(q, k, v).sum()}, {q, k, v}, {}, true, true);
  for (size_t i = 0; i < 3; ++i) EXPECT_CLOSE(g[i], ref[i], at::kDouble, Derivative::FirstOrder) << " input " << i;
}

// ---------------------------------------------------------------------------------------------
// Autograd bookkeeping.

// Only the query requires grad: gradients and the HVP with respect to it alone.
TEST(SdpaAutograd, PartialRequiresGrad) {
  const Case c{{2, 2}, 7, 9, 5, 3, true, std::nullopt};
  const Tensor q = randn(c.q_shape(), 61).requires_grad_(), k = randn(c.k_shape(), 62), v = randn(c.v_shape(), 63);
  const Tensor dout = randn(c.out_shape(), 64), uq = randn(c.q_shape(), 65);
  auto hvp_q = [&](const SdpaFn& fn, const Tensor& qq, const Tensor& kk, const Tensor& vv) {
    const Tensor out = fn(qq, kk, vv);
    const Tensor dq = torch::autograd::grad({out}, {qq}, {dout}, true, true)[0];
    return std::make_pair(dq, torch::autograd::grad({(dq * uq).sum()}, {qq}, {}, true, true)[0]);
  };
  const Tensor oq = f64_leaf(q, true);
  const auto ref = hvp_q(oracle_fn(c), oq, k, v);
  const auto got = hvp_q(theria_fn(c, Backend::Explicit), q, k, v);
  EXPECT_CLOSE(got.first, ref.first, at::kDouble, Derivative::FirstOrder);
  EXPECT_CLOSE(got.second, ref.second, at::kDouble, Derivative::SecondOrder);
  EXPECT_FALSE(k.requires_grad());
}

TEST(SdpaAutograd, NoGraphWithoutGrad) {
  const Case c{{2}, 3, 4, 2, 2, false, std::nullopt};
  const Tensor q = randn(c.q_shape(), 71).requires_grad_(), k = randn(c.k_shape(), 72), v = randn(c.v_shape(), 73);
  {
    at::NoGradGuard no_grad;
    const Tensor out = theria::sdpa(q, k, v);
    EXPECT_FALSE(out.requires_grad());
    EXPECT_EQ(out.grad_fn(), nullptr);
  }
  const Tensor out = theria::sdpa(q.detach(), k, v);
  EXPECT_FALSE(out.requires_grad());
  const Tensor out2 = theria::sdpa(q, k, v);
  EXPECT_TRUE(out2.requires_grad());
  EXPECT_EQ(grad_fn_name(out2), "theria::SdpaBackward");
  EXPECT_TRUE(at::equal(out, out2.detach()));
}

// Like F.scaled_dot_product_attention, theria::sdpa is on autocast's lower-precision list.
TEST(SdpaAutograd, AutocastCpuCastsToBFloat16) {
  const Case c{{2}, 5, 6, 4, 3, true, std::nullopt};
  const Tensor q = randn(c.q_shape(), 75, at::kFloat), k = randn(c.k_shape(), 76, at::kFloat),
               v = randn(c.v_shape(), 77, at::kFloat);
  const bool was_enabled = at::autocast::is_autocast_enabled(at::kCPU);
  const auto was_dtype = at::autocast::get_autocast_dtype(at::kCPU);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  Tensor out;
  try {
    out = theria::sdpa(q, k, v, c.options(Backend::Explicit));
  } catch (...) {
    at::autocast::set_autocast_enabled(at::kCPU, was_enabled);
    throw;
  }
  at::autocast::set_autocast_enabled(at::kCPU, was_enabled);
  at::autocast::set_autocast_dtype(at::kCPU, was_dtype);
  at::autocast::clear_cache();
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  const Tensor ref = oracle_fn(c)(q.to(at::kBFloat16).to(at::kDouble), k.to(at::kBFloat16).to(at::kDouble),
                                  v.to(at::kBFloat16).to(at::kDouble));
  EXPECT_CLOSE(out, ref, at::kBFloat16, Derivative::Forward);
  // Outside autocast, float32 stays float32.
  EXPECT_EQ(theria::sdpa(q, k, v).scalar_type(), at::kFloat);
}

// An in-place change to the output after the forward: theria's backward uses the saved output,
// so it must refuse (as PyTorch does for saved tensors) rather than return a wrong gradient.
TEST(SdpaAutograd, InPlaceChangeOfOutputIsDetected) {
  const Case c{{2}, 4, 5, 3, 2, false, std::nullopt};
  const Tensor q = randn(c.q_shape(), 78).requires_grad_(), k = randn(c.k_shape(), 79).requires_grad_(),
               v = randn(c.v_shape(), 80).requires_grad_();
  const Tensor out = theria::sdpa(q, k, v, c.options(Backend::Explicit));
  out.mul_(2.0);
  bool threw = false;
  TensorList g;
  try {
    g = torch::autograd::grad({out.sum()}, {q, k, v});
  } catch (const c10::Error& e) {
    threw = true;
    EXPECT_NE(std::string(e.what_without_backtrace()).find("inplace"), std::string::npos) << e.what();
  }
  if (!threw) {
    // No error: then the gradient must still be the right one, of 2 * sdpa.
    const Tensor oq = f64_leaf(q, true), ok = f64_leaf(k, true), ov = f64_leaf(v, true);
    const TensorList ref = torch::autograd::grad({(oracle_fn(c)(oq, ok, ov) * 2.0).sum()}, {oq, ok, ov});
    for (size_t i = 0; i < 3; ++i) EXPECT_CLOSE(g[i], ref[i], at::kDouble, Derivative::FirstOrder) << " input " << i;
  }
}

// The explicit kernels split work by rows and by key blocks: results must not depend on timing.
TEST(SdpaAutograd, ExplicitIsDeterministic) {
  const Case c{{2, 2}, 40, 150, 8, 8, true, std::nullopt};
  const Tensor q = randn(c.q_shape(), 81).requires_grad_(), k = randn(c.k_shape(), 82).requires_grad_(),
               v = randn(c.v_shape(), 83).requires_grad_(), dout = randn(c.out_shape(), 84);
  auto run = [&] {
    const Tensor out = theria::sdpa(q, k, v, c.options(Backend::Explicit));
    auto g = torch::autograd::grad({out}, {q, k, v}, {dout});
    g.push_back(out.detach());
    return g;
  };
  const TensorList a = run(), b = run();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << " tensor " << i;
}

// Negative control: the comparisons above would see a wrong answer. A relative change of 1e-7 in
// the scale, or the other mask, must fail the float64 tolerances of the forward and the gradients.
TEST(SdpaAutograd, ComparisonDetectsSmallErrors) {
  const Case c{{2}, 7, 9, 5, 3, true, 0.4};
  Case off = c;
  off.scale = 0.4 * (1 + 1e-7);
  Case unmasked = c;
  unmasked.causal = false;
  const Tensor q = randn(c.q_shape(), 85).requires_grad_(), k = randn(c.k_shape(), 86).requires_grad_(),
               v = randn(c.v_shape(), 87).requires_grad_(), dout = randn(c.out_shape(), 88);
  const Tensor ref = oracle_fn(c)(q, k, v);
  const TensorList gref = torch::autograd::grad({ref}, {q, k, v}, {dout});
  for (const Case& wrong : {off, unmasked}) {
    SCOPED_TRACE(describe(wrong));
    const Tensor out = theria_fn(wrong, Backend::Explicit)(q, k, v);
    EXPECT_FALSE(close(out, ref, at::kDouble, Derivative::Forward));
    const TensorList g = torch::autograd::grad({out}, {q, k, v}, {dout});
    EXPECT_FALSE(close(g[0], gref[0], at::kDouble, Derivative::FirstOrder));
  }
  EXPECT_TRUE(close(theria_fn(c, Backend::Explicit)(q, k, v), ref, at::kDouble, Derivative::Forward));
}

// ---------------------------------------------------------------------------------------------
// Backend selection and names.

TEST(SdpaBackend, ParseAndNameRoundTrip) {
  for (const auto b : {Backend::Auto, Backend::Reference, Backend::Explicit, Backend::Fused}) {
    EXPECT_EQ(theria::parse_backend(theria::backend_name(b)), b);
  }
  EXPECT_STREQ(theria::backend_name(Backend::Explicit), "explicit");
}

TEST(SdpaBackend, SelectOnCpu) {
  const Tensor q = randn({2, 3, 4}, 91), k = randn({2, 5, 4}, 92), v = randn({2, 5, 6}, 93);
  auto choice = [&](Backend b) { return theria::select_backend(q, k, v, theria::SdpaOptions().backend(b)); };
  EXPECT_EQ(choice(Backend::Auto).backend, Backend::Explicit);
  EXPECT_FALSE(choice(Backend::Auto).reason.empty());
  EXPECT_EQ(choice(Backend::Explicit).backend, Backend::Explicit);
  EXPECT_EQ(choice(Backend::Reference).backend, Backend::Reference);
  // Fused serves CUDA tensors only, whether or not this build carries the kernels.
  EXPECT_THROW(choice(Backend::Fused), c10::Error);
}

// Same numbers through the dispatcher entry point as through the public function.
TEST(SdpaBackend, OpsSdpaMatchesPublicApi) {
  const Case c{{2}, 5, 6, 3, 4, true, 0.7};
  const Tensor q = randn(c.q_shape(), 95), k = randn(c.k_shape(), 96), v = randn(c.v_shape(), 97);
  for (const auto backend : kAllBackends) {
    EXPECT_TRUE(at::equal(theria::ops::sdpa(q, k, v, true, 0.7, theria::backend_name(backend)),
                          theria::sdpa(q, k, v, c.options(backend))));
  }
}

}  // namespace
}  // namespace theria_test
