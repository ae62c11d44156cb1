// A program built against an installed theria (find_package(theria)): forward, backward and a double backward
// through theria::sdpa from C++, each checked against PyTorch's own attention composed of ATen ops, float64.
#include <theria/sdpa.h>

#include <torch/torch.h>

#include <cstdio>

namespace {

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return at::softmax(at::matmul(q, k.transpose(-2, -1)) * scale, -1).matmul(v);
}

// The output, the gradient of a loss and the Hessian-vector product along `direction` with respect to q.
std::vector<at::Tensor> orders(bool use_theria, const at::Tensor& q0, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& direction) {
  const auto q = q0.detach().requires_grad_();
  const auto out = use_theria ? theria::sdpa(q, k, v, theria::SdpaOptions().backend(theria::Backend::Explicit))
                              : attention(q, k, v);
  const auto g = torch::autograd::grad({out.pow(2).sum()}, {q}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
  const auto hv = torch::autograd::grad({(g * direction).sum()}, {q})[0];
  return {out.detach(), g.detach(), hv};
}

}  // namespace

int main() {
  torch::manual_seed(0);
  const auto opts = torch::dtype(torch::kDouble);
  const auto q = torch::randn({2, 3, 5, 8}, opts), k = torch::randn({2, 3, 7, 8}, opts),
             v = torch::randn({2, 3, 7, 8}, opts), d = torch::randn({2, 3, 5, 8}, opts);
  const auto got = orders(true, q, k, v, d), want = orders(false, q, k, v, d);
  const char* names[] = {"forward", "backward", "double backward"};
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = ((got[i] - want[i]).norm() / want[i].norm()).item<double>();
    const bool ok = err < 1e-12;
    failures += !ok;
    std::printf("%-16s relative error %.2e %s\n", names[i], err, ok ? "ok" : "FAILED");
  }
  return failures;
}
