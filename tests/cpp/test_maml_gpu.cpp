// The lab on CUDA: the FULL meta-gradient through the fused backend agrees with the reference
// backend within the dtype's second-order tolerance (both against float64 on the same weights).
#include "diagnostics/second_order.h"
#include "train/trainer.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace theria::lab {
namespace {

TEST(MamlGpu, FusedMetaGradientAgreesWithReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    ModelConfig model;
    model.dim = 128;  // head dim 64: the tensor-core kernels for 16-bit inputs
    model.heads = 2;
    TaskConfig tasks_config;
    const PositionRecallTasks family(tasks_config, 5);
    std::vector<Task> tasks{family.task(0, at::kCUDA), family.task(1, at::kCUDA)};
    const MamlConfig full{MamlMode::Full, 2, 0.2};
    auto make = [&](Backend backend, at::ScalarType dt) {
      ModelConfig m = model;
      m.attention.backend(backend);
      auto w = init_weights(m, 11, at::TensorOptions().dtype(at::kDouble).device(at::kCUDA));
      for (auto& t : w) t = t.detach().to(dtype).to(dt).requires_grad_();  // same rounded weights
      return meta_gradient(m, full, w, tasks).grads;
    };
    const auto fused = make(Backend::Fused, dtype);
    const auto oracle = make(Backend::Reference, at::kDouble);
    const double err = max_relative_error(fused, oracle);
    EXPECT_LE(err, tolerance(dtype, Derivative::SecondOrder).max_rel_error) << dtype;
  }
}

}  // namespace
}  // namespace theria::lab
