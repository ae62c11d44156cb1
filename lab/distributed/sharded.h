// A meta-batch and a held-out evaluation shared by the ranks of a run (docs/distributed.md): rank r takes the
// contiguous block block_of(tasks, r, world) of the tasks, computes its sums, and one all-reduce adds them. With one
// process both are exactly the single-process computation.
#pragma once

#include "distributed/communicator.h"
#include "meta/maml.h"

#include <functional>
#include <vector>

namespace theria::lab {

// The meta-gradient of the mean query loss over `batch`. `local` computes the mean over a block (meta_gradient or
// an estimator's); the ranks' sums (mean x block size) travel in one all-reduce with the loss and a divergence count,
// and every rank returns the same grads / loss. A divergence on any rank is every rank's (the first in task order,
// its task index within `batch`); loss_graph is not set. A rank with no task (batch smaller than the world)
// contributes zeros.
MetaGradient sharded_meta_gradient(const Communicator& comm, const std::vector<Task>& batch, const Weights& w,
                                   const std::function<MetaGradient(const std::vector<Task>&)>& local);

// evaluate() over `tasks`, the ranks sharing them.
Evaluation sharded_evaluate(const Communicator& comm, const ModelConfig& model, const MamlConfig& maml,
                            const Weights& w, const std::vector<Task>& tasks);

}  // namespace theria::lab
