// The public C++ API with the rest of F.scaled_dot_product_attention's signature (issue 16): SdpaOptions'
// attn_mask and enable_gqa, against the oracle (reference::sdpa_math, PyTorch's math composition) in float64 at
// orders 0-2, the explicit backend's grouped-query gradient with the key's own heads, select_backend's reasons,
// and the errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <theria/sdpa.h>
#include <torch/csrc/autograd/autograd.h>

#include "reference/reference.h"

namespace {

using at::Tensor;

Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn(shape, at::kDouble);
}

// Forward, VJP and the double backward along u of f at (q, k, v), as one list.
std::vector<Tensor> orders(const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f,
                           const std::vector<Tensor>& qkv) {
  std::vector<Tensor> x;
  for (const auto& t : qkv) x.push_back(t.detach().clone().requires_grad_());
  const Tensor out = f(x[0], x[1], x[2]);
  const Tensor dout = randn(out.sizes(), 40);
  const auto g = torch::autograd::grad({out}, x, {dout}, /*retain_graph=*/true, /*create_graph=*/true);
  Tensor gu = (g[0] * randn(g[0].sizes(), 41)).sum() + (g[1] * randn(g[1].sizes(), 42)).sum() +
              (g[2] * randn(g[2].sizes(), 43)).sum();
  const auto h = torch::autograd::grad({gu}, x);
  return {out.detach(), g[0].detach(), g[1].detach(), g[2].detach(), h[0], h[1], h[2]};
}

void expect_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].sizes(), want[i].sizes()) << "result " << i;
    EXPECT_TRUE(at::allclose(got[i], want[i], 1e-10, 1e-12))
        << "result " << i << ": max error " << (got[i] - want[i]).abs().max().item<double>();
  }
}

TEST(MasksGqa, KeyPaddingMaskWithGroupedHeadsEqualsTheOracleAtEveryOrder) {
  const std::vector<Tensor> qkv{randn({2, 6, 5, 8}, 1), randn({2, 3, 7, 8}, 2), randn({2, 3, 7, 4}, 3)};
  Tensor mask = at::ones({2, 1, 1, 7}, at::kBool);
  mask.narrow(0, 1, 1).narrow(3, 4, 3).fill_(false);
  for (const auto backend : {theria::Backend::Explicit, theria::Backend::Reference}) {
    const auto options = theria::SdpaOptions().attn_mask(mask).enable_gqa(true).backend(backend);
    const auto got = orders([&](const Tensor& q, const Tensor& k, const Tensor& v) { return theria::sdpa(q, k, v, options); }, qkv);
    const auto want = orders(
        [&](const Tensor& q, const Tensor& k, const Tensor& v) {
          return theria::reference::sdpa_math(q, k, v, false, 1.0 / std::sqrt(8.0), mask);
        },
        qkv);
    expect_close(got, want);
    EXPECT_EQ(got[2].size(1), 3) << "dK keeps the key's own heads";
  }
}

TEST(MasksGqa, AdditiveMaskAndBroadcastLeadingSizes) {
  const std::vector<Tensor> qkv{randn({2, 4, 5, 8}, 4), randn({1, 4, 6, 8}, 5), randn({2, 1, 6, 8}, 6)};
  const Tensor bias = randn({5, 6}, 7);
  const auto options = theria::SdpaOptions().attn_mask(bias).scale(-0.4).backend(theria::Backend::Explicit);
  const auto got = orders([&](const Tensor& q, const Tensor& k, const Tensor& v) { return theria::sdpa(q, k, v, options); }, qkv);
  const auto want = orders(
      [&](const Tensor& q, const Tensor& k, const Tensor& v) {
        return theria::reference::sdpa_math(q, k.expand({2, 4, 6, 8}), v.expand({2, 4, 6, 8}), false, -0.4, bias);
      },
      qkv);
  expect_close(got, want);
}

TEST(MasksGqa, AFloatMaskThatRequiresGradIsDifferentiatedByTheKernels) {
  const Tensor q = randn({1, 2, 3, 4}, 8), k = randn({1, 2, 5, 4}, 9), v = randn({1, 2, 5, 4}, 10);
  const Tensor bias = randn({3, 5}, 11).requires_grad_();
  const auto choice = theria::select_backend(q, k, v, theria::SdpaOptions().attn_mask(bias));
  EXPECT_EQ(choice.backend, theria::Backend::Explicit);
  EXPECT_NE(choice.reason.find("attn_mask requires grad: the kernels write its gradient"), std::string::npos)
      << choice.reason;
  const Tensor out =
      theria::sdpa(q, k, v, theria::SdpaOptions().attn_mask(bias).backend(theria::Backend::Explicit));
  const Tensor want = theria::reference::sdpa_math(q, k, v, false, 0.5, bias);
  const Tensor got_grad = torch::autograd::grad({out.sin().sum()}, {bias})[0];
  const Tensor want_grad = torch::autograd::grad({want.sin().sum()}, {bias})[0];
  EXPECT_EQ(got_grad.sizes(), bias.sizes());
  EXPECT_TRUE(at::allclose(got_grad, want_grad, 1e-10, 1e-12)) << (got_grad - want_grad).abs().max();
}

TEST(MasksGqa, ErrorsNameTheArgument) {
  const Tensor q = randn({1, 6, 3, 4}, 12), k = randn({1, 4, 5, 4}, 13), v = randn({1, 4, 5, 4}, 14);
  const auto message = [&](const theria::SdpaOptions& o, const Tensor& kk) {
    try {
      theria::sdpa(q, kk, kk, o);
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(theria::SdpaOptions().enable_gqa(true), k).find("must be equal and divide query's"),
            std::string::npos);
  EXPECT_NE(message(theria::SdpaOptions(), k).find("do not broadcast"), std::string::npos);
  const Tensor k2 = randn({1, 2, 5, 4}, 15);
  EXPECT_NE(message(theria::SdpaOptions().enable_gqa(true).causal(true).attn_mask(at::ones({3, 5}, at::kBool)), k2)
                .find("attn_mask must not be set when is_causal=True"),
            std::string::npos);
  EXPECT_NE(message(theria::SdpaOptions().enable_gqa(true).attn_mask(at::ones({3, 4}, at::kBool)), k2)
                .find("attn_mask must be broadcastable to (..., L, S)"),
            std::string::npos);
}

}  // namespace
