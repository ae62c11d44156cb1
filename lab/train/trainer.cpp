#include "train/trainer.h"

#include "distributed/sharded.h"
#include "meta/graphed_meta_gradient.h"
#include "train/adam.h"
#include "train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <memory>

namespace theria::lab {

std::vector<Task> held_out_tasks(const TrainConfig& config, int64_t count) {
  const uint64_t offset = config.eval_split == TaskSplit::Validation ? kValidationSeedOffset : 1;
  const auto family = make_task_family(config.tasks, config.seed + offset);
  std::vector<Task> tasks;
  for (int64_t i = 0; i < count; ++i) tasks.push_back(family->task(i, config.device));
  return tasks;
}

std::string RunDivergence::describe() const {
  if (!found()) return "ok";
  return phase + " diverged at meta-step " + std::to_string(meta_step) + ": " + at.describe();
}

MamlConfig evaluation_inner_loop(const TrainConfig& config) {
  MamlConfig m = config.maml;
  if (config.estimator.empty()) return m;
  const auto spec = parse_estimator(config.estimator);
  if (spec.kind == EstimatorSpec::Kind::Implicit || spec.kind == EstimatorSpec::Kind::Neumann) m.proximal = spec.lambda;
  return m;
}

TrainResult meta_train(const TrainConfig& config, const std::function<void(const CurvePoint&)>& on_eval,
                       const TrainRuntime& runtime) {
  const auto start = std::chrono::steady_clock::now();
  const Communicator& comm = runtime.comm != nullptr ? *runtime.comm : Communicator::single();
  TrainResult r;
  const auto options = at::TensorOptions().dtype(config.dtype).device(config.device);
  Weights w = init_weights(config.model, config.seed, options);
  for (const auto& t : w) r.initial.push_back(t.detach().clone());
  const auto train_family = make_task_family(config.tasks, config.seed);
  const auto mismatch = model_mismatch(config.model, train_family->io());
  TORCH_CHECK(mismatch.empty(), "meta_train: the model does not fit the ", train_family->name(),
              " family's examples: ", mismatch, " (lab::fit_model_to)");
  const auto eval = held_out_tasks(config, config.eval_tasks);
  const MamlConfig eval_maml = evaluation_inner_loop(config);
  const std::optional<EstimatorSpec> spec =
      config.estimator.empty() ? std::nullopt : std::optional<EstimatorSpec>(parse_estimator(config.estimator));
  TORCH_CHECK(!config.cuda_graph || (config.device.is_cuda() && !spec),
              "meta_train: cuda_graph needs a CUDA device and MAML's meta-gradient (no estimator), got device ",
              config.device, config.estimator.empty() ? "" : " and estimator " + config.estimator);
  std::unique_ptr<GraphedMetaGradient> graphed;
  if (config.cuda_graph) graphed = std::make_unique<GraphedMetaGradient>(config.model, config.maml, w);
  // The meta-gradient of one meta-batch (this rank's block of it): MAML's (eager, or replayed), or the estimator's.
  auto local_meta_gradient = [&](const std::vector<Task>& batch) {
    if (graphed) return (*graphed)(batch);
    if (!spec) return meta_gradient(config.model, config.maml, w, batch);
    auto e = estimate_meta_gradient(config.model, config.maml, *spec, w, batch);
    MetaGradient m;
    m.grads = std::move(e.grads);
    m.query_loss = e.query_loss;
    m.divergence = e.divergence;
    return m;
  };
  Adam adam;
  adam.lr = config.meta_lr;

  auto note = [&](int64_t step, const char* phase, const Divergence& d) {
    if (d.found() && !r.divergence.found()) r.divergence = {step, phase, d};
  };
  auto record = [&](int64_t step, std::optional<double> meta_loss) {
    const auto e = sharded_evaluate(comm, config.model, eval_maml, w, eval);
    note(step, "held-out evaluation", e.divergence);
    CurvePoint p{step, meta_loss, e};
    r.curve.push_back(p);
    if (on_eval) on_eval(p);
    return e;
  };
  auto stop = [&] { return r.divergence.found() && !config.continue_on_divergence; };
  double seconds_before = 0.0;  // of the run's earlier processes (a resumed run)
  auto checkpoint = [&](int64_t step, uint64_t next_task) {
    if (runtime.checkpoint.empty() || !comm.is_root()) return;
    TrainCheckpoint c{runtime.fingerprint, step, next_task, w, adam, r};
    c.so_far.seconds = seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    save_checkpoint(runtime.checkpoint, c);
  };

  int64_t first_step = 1;
  uint64_t next_task = 0;
  std::optional<TrainCheckpoint> resumed;
  if (runtime.resume && !runtime.checkpoint.empty()) {
    resumed = load_checkpoint(runtime.checkpoint, runtime.fingerprint, options);
  }
  if (runtime.resume) {
    // Every rank resumes, or none: a checkpoint that only some ranks can read would split the run.
    const double resuming = comm.all_reduce_sum({resumed ? 1.0 : 0.0}, "checkpoint lookup")[0];
    TORCH_CHECK(resuming == 0 || resuming == comm.world_size(), "rank ", comm.rank(), ": the checkpoint ",
                runtime.checkpoint, " is readable on ", resuming, " of ", comm.world_size(),
                " ranks: put it where every rank sees it (docs/distributed.md)");
  }
  if (resumed) {
    at::AutoGradMode no_grad(false);
    for (size_t i = 0; i < w.size(); ++i) w[i].copy_(resumed->weights[i]);
    adam = resumed->adam;
    const Weights initial = std::move(r.initial);
    r = resumed->so_far;
    r.initial = initial;
    seconds_before = resumed->so_far.seconds;
    first_step = resumed->step + 1;
    r.resumed_at = resumed->step;
    next_task = resumed->next_task;
  } else {
    r.before = r.after = record(0, std::nullopt);
  }
  if (runtime.check_replicas || resumed) comm.check_identical(w, "the weights at the start");
  for (int64_t step = first_step; step <= config.meta_steps && !stop(); ++step) {
    std::vector<Task> batch;
    for (int64_t i = 0; i < config.meta_batch; ++i) batch.push_back(train_family->task(next_task++, config.device));
    const auto mg = sharded_meta_gradient(comm, batch, w, local_meta_gradient);
    note(step, "meta-training", mg.divergence);
    // A non-finite meta-gradient is never applied: Adam's moments would carry the NaN forever.
    if (mg.divergence.found()) {
      ++r.skipped_meta_steps;
    } else {
      adam.step(w, mg.grads);
      ++r.applied_meta_steps;
    }
    if (runtime.check_replicas) comm.check_identical(w, "the weights after meta-step " + std::to_string(step));
    if (step % config.eval_every == 0 || step == config.meta_steps || stop()) {
      const auto meta_loss = mg.divergence.found() ? std::nullopt : std::optional<double>(mg.query_loss);
      r.after = record(step, meta_loss);
    }
    const bool last = step == config.meta_steps || stop();
    if (last || (runtime.checkpoint_every > 0 && step % runtime.checkpoint_every == 0)) checkpoint(step, next_task);
  }
  r.weights = w;
  r.seconds = seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace theria::lab
