#include "tasks/position_recall.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

namespace theria::lab {
namespace {

// n balanced sequences: each row a random arrangement of the multiset {0..C-1} x (T / C).
at::Tensor balanced_sequences(int64_t n, const TaskConfig& c, at::Generator& gen) {
  const auto order = at::rand({n, c.seq_len}, gen).argsort(/*dim=*/int64_t{1});
  return order.remainder(c.classes);
}

}  // namespace

PositionRecallTasks::PositionRecallTasks(TaskConfig config, uint64_t seed) : config_(config), seed_(seed) {
  TORCH_CHECK(config.seq_len >= 2, "task family: seq_len must be >= 2, got ", config.seq_len);
  TORCH_CHECK(config.classes >= 2 && config.seq_len % config.classes == 0,
              "task family: classes must be >= 2 and divide seq_len (", config.seq_len, "), got ", config.classes);
  TORCH_CHECK(config.support >= 1 && config.query >= 1, "task family: support and query sizes must be >= 1");
}

Task PositionRecallTasks::task(uint64_t index, const at::Device& device) const {
  // One generator per task: tasks are reproducible one by one, whatever else was drawn before.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + index);
  Task t;
  t.position = at::randint(config_.seq_len, {1}, gen).item<int64_t>();
  const auto support = balanced_sequences(config_.support, config_, gen);
  const auto query = balanced_sequences(config_.query, config_, gen);
  t.support_x = support.to(device);
  t.support_y = support.select(1, t.position).contiguous().to(device);
  t.query_x = query.to(device);
  t.query_y = query.select(1, t.position).contiguous().to(device);
  return t;
}

}  // namespace theria::lab
