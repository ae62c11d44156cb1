#include "tasks/task_family.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace theria::lab {

at::Tensor balanced_sequences(int64_t n, int64_t length, int64_t count, at::Generator& gen) {
  return at::rand({n, length}, gen).argsort(/*dim=*/int64_t{1}).remainder(count);
}

at::Tensor distinct_ids(int64_t n, int64_t k, int64_t count, at::Generator& gen) {
  return at::rand({n, count}, gen).argsort(/*dim=*/int64_t{1}).narrow(1, 0, k);
}

at::Tensor token_after_first(const at::Tensor& x, int64_t token) {
  const auto hit = x.eq(token);
  TORCH_CHECK(hit.narrow(1, 0, x.size(1) - 1).any(1).all().item<bool>(), "task family: a sequence without token ",
              token, " before its last position");
  const auto first = hit.to(at::kInt).argmax(1, /*keepdim=*/true);  // argmax returns the first maximum
  return x.gather(1, first + 1).squeeze(1);
}

Task Task::to(const at::Device& device) const {
  Task t = *this;
  for (auto* x : {&t.support_x, &t.support_y, &t.query_x, &t.query_y}) *x = x->to(device);
  return t;
}

TaskFamily::TaskFamily(TaskConfig config, uint64_t seed) : config_(std::move(config)), seed_(seed) {
  TORCH_CHECK(config_.support >= 1 && config_.query >= 1, "task family: support and query sizes must be >= 1");
}

std::vector<Knob> TaskFamily::knobs() const {
  auto k = own_knobs();
  k.push_back({"support", double(config_.support), true});
  k.push_back({"query", double(config_.query), true});
  return k;
}

Task TaskFamily::task(uint64_t index, const at::Device& device) const {
  // One generator per task: tasks are reproducible one by one, whatever else was drawn before.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + index);
  Task t = hidden(gen);
  t.support_x = inputs(t, config_.support, gen);
  t.query_x = inputs(t, config_.query, gen);
  t.support_y = labels(t, t.support_x);
  t.query_y = labels(t, t.query_x);
  return t.to(device);
}

}  // namespace theria::lab
