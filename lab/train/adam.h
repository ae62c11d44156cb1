// Adam on a list of leaves (kept here to stay on the narrow ATen headers), the meta-optimizer of meta_train; its
// state (moments and step count) is part of a checkpoint (train/checkpoint.h).
#pragma once

#include "model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <vector>

namespace theria::lab {

struct Adam {
  double lr = 3e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t t = 0;
  std::vector<at::Tensor> m, v;

  void step(Weights& w, const std::vector<at::Tensor>& g) {
    at::AutoGradMode no_grad(false);
    if (m.empty()) {
      for (const auto& x : w) {
        m.push_back(at::zeros_like(x));
        v.push_back(at::zeros_like(x));
      }
    }
    ++t;
    const double c1 = 1.0 - std::pow(beta1, t), c2 = 1.0 - std::pow(beta2, t);
    for (size_t i = 0; i < w.size(); ++i) {
      m[i].mul_(beta1).add_(g[i], 1.0 - beta1);
      v[i].mul_(beta2).addcmul_(g[i], g[i], 1.0 - beta2);
      w[i].sub_(m[i] / c1 / ((v[i] / c2).sqrt() + eps) * lr);
    }
  }
};

}  // namespace theria::lab
