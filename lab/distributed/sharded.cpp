#include "distributed/sharded.h"

#include "output/train_json.h"

#include <ATen/ATen.h>

namespace theria::lab {
namespace {

std::vector<Task> block_tasks(const std::vector<Task>& tasks, const Block& b) {
  return std::vector<Task>(tasks.begin() + b.begin, tasks.begin() + b.end);
}

// Every rank's divergence (or none), the first in rank order — the first in task order, the blocks being in rank
// order — with its task index made global. Called by every rank once some rank has one (a count all-reduced before).
Divergence first_divergence_of_ranks(const Communicator& comm, const Divergence& mine, int64_t tasks) {
  const Json j = mine.found() ? Json(mine) : Json(nullptr);
  const auto all = comm.all_gather(j.dump(), "divergence report");
  for (int r = 0; r < comm.world_size(); ++r) {
    const Json theirs = Json::parse(all[r]);
    if (theirs.is_null()) continue;
    Divergence d = theirs.get<Divergence>();
    if (d.task >= 0) d.task += block_of(tasks, r, comm.world_size()).begin;
    return d;
  }
  TORCH_CHECK(false, "sharded: a divergence was counted but no rank reports one");
}

}  // namespace

MetaGradient sharded_meta_gradient(const Communicator& comm, const std::vector<Task>& batch, const Weights& w,
                                   const std::function<MetaGradient(const std::vector<Task>&)>& local) {
  if (!comm.distributed()) return local(batch);
  const int64_t total = static_cast<int64_t>(batch.size());
  const auto mine = block_tasks(batch, block_of(total, comm.rank(), comm.world_size()));
  MetaGradient m;
  if (!mine.empty()) {
    m = local(mine);
  } else {
    for (const auto& x : w) m.grads.push_back(at::zeros_like(x).detach());
  }
  const double n = static_cast<double>(mine.size());
  const bool diverged = m.divergence.found();
  // A diverged rank sends zeros (its grads may be NaN); every rank then skips the step on the count.
  std::vector<at::Tensor> message;
  for (const auto& g : m.grads) message.push_back(diverged ? at::zeros_like(g) : g * n);
  message.push_back(at::tensor({diverged ? 0.0 : m.query_loss * n, diverged ? 1.0 : 0.0}, at::kDouble)
                        .to(m.grads.front().device()));
  comm.all_reduce_sum(message, "meta-gradient");
  const auto scalars = message.back().cpu();
  MetaGradient out;
  for (size_t i = 0; i + 1 < message.size(); ++i) out.grads.push_back(message[i] / static_cast<double>(total));
  out.query_loss = scalars[0].item<double>() / static_cast<double>(total);
  if (scalars[1].item<double>() > 0) out.divergence = first_divergence_of_ranks(comm, m.divergence, total);
  return out;
}

Evaluation sharded_evaluate(const Communicator& comm, const ModelConfig& model, const MamlConfig& maml,
                            const Weights& w, const std::vector<Task>& tasks) {
  if (!comm.distributed()) return evaluate(model, maml, w, tasks);
  const int64_t total = static_cast<int64_t>(tasks.size());
  const auto mine = block_tasks(tasks, block_of(total, comm.rank(), comm.world_size()));
  EvaluationSums s = mine.empty() ? EvaluationSums{} : evaluation_sums(model, maml, w, mine);
  const auto sums = comm.all_reduce_sum(
      {s.tasks, s.pre_hits, s.post_hits, s.pre_loss, s.post_loss, s.variance, s.divergence.found() ? 1.0 : 0.0},
      "held-out evaluation");
  EvaluationSums all{sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], {}};
  if (sums[6] > 0) all.divergence = first_divergence_of_ranks(comm, s.divergence, total);
  return evaluation_from(all, model.target);
}

}  // namespace theria::lab
