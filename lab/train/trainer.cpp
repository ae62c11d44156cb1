#include "train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>

namespace theria::lab {
namespace {

// Adam on a list of leaves (kept here to stay on the narrow ATen headers).
struct Adam {
  double lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
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

}  // namespace

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

TrainResult meta_train(const TrainConfig& config, const std::function<void(const CurvePoint&)>& on_eval) {
  const auto start = std::chrono::steady_clock::now();
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
  // The meta-gradient of one meta-batch: MAML's, or the estimator's.
  auto meta_gradient_of = [&](const std::vector<Task>& batch) {
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
    const auto e = evaluate(config.model, eval_maml, w, eval);
    note(step, "held-out evaluation", e.divergence);
    CurvePoint p{step, meta_loss, e};
    r.curve.push_back(p);
    if (on_eval) on_eval(p);
    return e;
  };
  auto stop = [&] { return r.divergence.found() && !config.continue_on_divergence; };

  r.before = r.after = record(0, std::nullopt);
  uint64_t next_task = 0;
  for (int64_t step = 1; step <= config.meta_steps && !stop(); ++step) {
    std::vector<Task> batch;
    for (int64_t i = 0; i < config.meta_batch; ++i) batch.push_back(train_family->task(next_task++, config.device));
    const auto mg = meta_gradient_of(batch);
    note(step, "meta-training", mg.divergence);
    // A non-finite meta-gradient is never applied: Adam's moments would carry the NaN forever.
    if (mg.divergence.found()) {
      ++r.skipped_meta_steps;
    } else {
      adam.step(w, mg.grads);
      ++r.applied_meta_steps;
    }
    if (step % config.eval_every == 0 || step == config.meta_steps || stop()) {
      const auto meta_loss = mg.divergence.found() ? std::nullopt : std::optional<double>(mg.query_loss);
      r.after = record(step, meta_loss);
    }
  }
  r.weights = w;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace theria::lab
