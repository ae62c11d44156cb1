#include "studies/metagrad.h"

#include "output/progress.h"
#include "output/resume.h"
#include "output/metagrad_json.h"
#include "output/task_json.h"
#include "train/checkpoint.h"
#include "train/lr_search.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

namespace theria::lab {
namespace {

std::vector<Task> diagnostic_tasks(const TrainConfig& t, int64_t count, uint64_t seed) {
  TrainConfig c = t;
  c.seed = seed;
  return held_out_tasks(c, count);
}

// The weights of config.init_weights (a checkpoint), read once and checked to fit the model; none when not given.
std::optional<Weights> checkpoint_weights(const MetagradConfig& c) {
  if (c.init_weights.empty()) return std::nullopt;
  const auto options = at::TensorOptions().dtype(c.train.dtype).device(c.train.device);
  const Weights model = init_weights(c.train.model, 0, options);
  Weights trained = load_checkpoint_weights(c.init_weights, options);
  TORCH_CHECK(trained.size() == model.size(), "metagrad: the checkpoint ", c.init_weights, " has ", trained.size(),
              " weight tensors, the model ", model.size(), ": give the model options of the run that wrote it");
  for (size_t i = 0; i < model.size(); ++i) {
    TORCH_CHECK(trained[i].sizes() == model[i].sizes(), "metagrad: the checkpoint ", c.init_weights, "'s weight ", i,
                " is ", trained[i].sizes(), ", the model's ", model[i].sizes(),
                ": give the model options of the run that wrote it");
  }
  return trained;
}

Backend oracle_backend(const MetagradConfig& c) { return c.oracle_device.is_cuda() ? Backend::Fused : Backend::Reference; }

// The errors of g against the float64 oracles of this (depth, seed): the exact implicit meta-gradient for the
// estimator's lambda (2 for the others) and the exact unrolled one, each computed once and kept in the caches.
void compare_with_oracles(const MetagradConfig& c, const TrainConfig& t, const EstimatorSpec& spec, const Weights& w,
                          const std::vector<Task>& tasks, const EstimatedMetaGradient& g,
                          std::map<double, EstimatedMetaGradient>& implicit_oracle,
                          std::optional<EstimatedMetaGradient>& unrolled_oracle, MetagradCell& cell) {
  const bool proximal = spec.kind == EstimatorSpec::Kind::Implicit || spec.kind == EstimatorSpec::Kind::Neumann;
  const double lambda = proximal ? spec.lambda : 2.0;
  // The float64 copy of the problem only when an oracle of this (depth, seed) is still to compute.
  std::optional<Float64Problem> p64;
  if (!implicit_oracle.count(lambda) || !unrolled_oracle) {
    p64 = float64_reference(t.model, w, tasks, c.oracle_device, oracle_backend(c));
  }
  if (!implicit_oracle.count(lambda)) {
    EstimatorSpec oracle;
    oracle.kind = EstimatorSpec::Kind::Implicit;
    oracle.lambda = lambda;
    oracle.cg_iterations = c.oracle_cg_iterations;
    oracle.cg_tolerance = c.oracle_tolerance;
    implicit_oracle[lambda] = estimate_meta_gradient(p64->model, t.maml, oracle, p64->w, p64->tasks);
  }
  if (!unrolled_oracle) {
    unrolled_oracle = estimate_meta_gradient(p64->model, t.maml, parse_estimator("unrolled"), p64->w, p64->tasks);
  }
  const Divergence& d = g.divergence.found() ? g.divergence : unrolled_oracle->divergence;
  if (d.found()) {
    cell.status = d.describe();
    cell.vs_implicit = cell.vs_unrolled = {std::nan(""), std::nan("")};
  } else {
    cell.vs_implicit = gradient_error(g.grads, implicit_oracle[lambda].grads);
    cell.vs_unrolled = gradient_error(g.grads, unrolled_oracle->grads);
  }
  for (const auto& s : implicit_oracle[lambda].solves) {
    if (!s.converged) {
      cell.status = "the implicit oracle did not converge (residual " + std::to_string(s.relative_residual) + ")";
    }
  }
}

}  // namespace

Json metagrad_config_json(const MetagradConfig& c) {
  const auto& t = c.train;
  return Json{{"parts_version", 3},
              {"task", task_json(*make_task_family(t.tasks, t.seed))},
              {"estimators", c.estimators},
              {"inner_steps", c.inner_steps},
              {"seeds", c.seeds},
              {"diagnostic_tasks", c.diagnostic_tasks},
              {"inner_lr", t.maml.inner_lr},
              {"backend", backend_name(t.model.attention.backend_)},
              {"device", t.device.str()},
              {"dtype", dtype_name(t.dtype)},
              {"model", {{"seq_len", t.model.seq_len}, {"classes", t.model.classes}, {"dim", t.model.dim},
                         {"heads", t.model.heads}, {"blocks", t.model.blocks},
                         {"smeared_keys", t.model.smeared_keys}}},
              {"training", {{"estimators", c.train_estimators}, {"inner_steps", c.train_inner_steps},
                            {"seeds", c.train_seeds}, {"meta_steps", t.meta_steps}, {"meta_batch", t.meta_batch},
                            {"meta_lr", t.meta_lr}, {"eval_tasks", t.eval_tasks}, {"split", "test"},
                            {"lr_search", {{"grid", c.train_lr_grid}, {"seeds", c.train_search_seeds},
                                           {"meta_steps", c.train_search_meta_steps}, {"split", "validation"}}}}},
              {"init_weights", c.init_weights.empty() ? Json("each seed's initialisation") : Json(c.init_weights)},
              {"oracle", {{"computed", c.oracle}, {"dtype", "float64"}, {"backend", backend_name(oracle_backend(c))},
                          {"device", c.oracle_device.str()},
                          {"cg_tolerance", c.oracle_tolerance}, {"cg_iterations", c.oracle_cg_iterations}}}};
}

MetagradRaw run_metagrad(const MetagradConfig& c, const std::filesystem::path& parts_dir) {
  std::vector<EstimatorSpec> specs;
  for (const auto& e : c.estimators) specs.push_back(parse_estimator(e));
  double total = 0.0;
  for (const auto d : c.inner_steps) total += static_cast<double>(c.seeds * specs.size() * d);
  total += static_cast<double>(c.train_estimators.size() * c.train_seeds * c.train.meta_steps * c.train_inner_steps);
  if (c.train_seeds > 0) {
    total += static_cast<double>(c.train_estimators.size() * c.train_lr_grid.size() * c.train_search_seeds *
                                 c.train_search_meta_steps * c.train_inner_steps);
  }
  const PartStore parts(parts_dir, metagrad_config_json(c));
  Progress progress("metagrad", total);
  MetagradRaw raw;
  auto& cells = raw.cells;
  bool resumed = false;
  const std::optional<Weights> trained = checkpoint_weights(c);
  for (const auto depth : c.inner_steps) {
    for (uint64_t seed = 0; seed < static_cast<uint64_t>(c.seeds); ++seed) {
      TrainConfig t = c.train;
      t.maml.inner_steps = depth;
      t.seed = seed;
      const auto tasks = diagnostic_tasks(t, c.diagnostic_tasks, seed);
      // The seed's initial weights, or fresh leaves holding the checkpoint's.
      Weights w;
      if (trained) {
        for (const auto& x : *trained) w.push_back(x.detach().clone().requires_grad_());
      } else {
        w = init_weights(t.model, seed, at::TensorOptions().dtype(t.dtype).device(t.device));
      }
      std::map<double, EstimatedMetaGradient> implicit_oracle;  // by lambda, computed when first needed
      std::optional<EstimatedMetaGradient> unrolled_oracle;
      for (size_t e = 0; e < specs.size(); ++e) {
        const auto key = "cell_" + std::to_string(depth) + "_seed" + std::to_string(seed) + "_" + std::to_string(e);
        progress.begin(key + " " + c.estimators[e]);
        cells.push_back(parts.get_or_compute<MetagradCell>(key, [&] {
          const auto& spec = specs[e];
          MetagradCell cell;
          cell.estimator = estimator_name(spec);
          cell.inner_steps = depth;
          cell.seed = seed;
          // Running out of device memory is a result (the depth at which this estimator no longer fits), not an
          // error: the cell says so and the study goes on.
          try {
            const auto g = estimate_meta_gradient(t.model, t.maml, spec, w, tasks);
            for (const auto& s : g.solves) {
              cell.max_residual = std::max(cell.max_residual, s.relative_residual);
              cell.solves_converged = cell.solves_converged && s.converged;
            }
            if (g.divergence.found()) cell.status = g.divergence.describe();
            cell.hvp_attention_nodes = g.hvp_attention_nodes;
            if (c.oracle) {
              compare_with_oracles(c, t, spec, w, tasks, g, implicit_oracle, unrolled_oracle, cell);
            } else {
              cell.vs_implicit = cell.vs_unrolled = {std::nan(""), std::nan("")};
            }
            if (seed == 0) {
              const auto cost = time_step(t.device, [&] { estimate_meta_gradient(t.model, t.maml, spec, w, tasks); });
              cell.ms = cost.ms;
              cell.peak_mib = cost.peak_mib;
              cell.memory_kind = cost.memory_kind;
            }
          } catch (const c10::OutOfMemoryError&) {
            cell.status = "out of memory";
            cell.vs_implicit = cell.vs_unrolled = {std::nan(""), std::nan("")};
          }
          return cell;
        }, &resumed));
        progress.end(static_cast<double>(depth), resumed);
      }
    }
  }

  // Each estimator's inner lr: the study's, or chosen on validation tasks.
  const auto training_config = [&c](const std::string& estimator) {
    TrainConfig t = c.train;
    t.maml.inner_steps = c.train_inner_steps;
    t.estimator = estimator;
    return t;
  };
  std::vector<double> train_lr(c.train_estimators.size(), c.train.maml.inner_lr);
  if (!c.train_lr_grid.empty() && c.train_seeds > 0) {
    for (size_t e = 0; e < c.train_estimators.size(); ++e) {
      const auto& name = c.train_estimators[e];
      std::vector<std::vector<double>> scores;
      for (const double lr : c.train_lr_grid) {
        scores.emplace_back();
        for (int64_t k = 0; k < c.train_search_seeds; ++k) {
          const auto key = "trainlr_" + std::to_string(e) + "_" + std::to_string(lr) + "_seed" + std::to_string(k);
          progress.begin(key + " " + name);
          scores.back().push_back(parts.get_or_compute<double>(key, [&] {
            return final_score(meta_train(search_run(training_config(name), lr, k, c.train_search_meta_steps)));
          }, &resumed));
          progress.end(static_cast<double>(c.train_search_meta_steps * c.train_inner_steps), resumed);
        }
      }
      const auto choice = choose_inner_lr(c.train_lr_grid, scores);
      raw.lr_choice.push_back({estimator_name(parse_estimator(name)), choice.lr, c.train_lr_grid,
                               choice.validation_accuracy});
      train_lr[e] = choice.lr;
    }
  }

  // Accuracy after meta-training with each estimator, paired by seed.
  for (size_t e = 0; e < c.train_estimators.size(); ++e) {
    const auto& name = c.train_estimators[e];
    for (uint64_t seed = 0; seed < static_cast<uint64_t>(c.train_seeds); ++seed) {
      const auto key = "train_" + std::to_string(e) + "_seed" + std::to_string(seed);
      progress.begin(key + " " + name);
      raw.training.push_back(parts.get_or_compute<MetagradTraining>(key, [&] {
        if (!std::isfinite(train_lr[e])) {  // no stable candidate: nothing to meta-train with, and the files say so
          MetagradTraining none;
          none.estimator = estimator_name(parse_estimator(name));
          none.seed = seed;
          none.inner_lr = train_lr[e];
          none.status = "not trained: every inner lr candidate diverged on validation tasks";
          return none;
        }
        TrainConfig t = training_config(name);
        t.maml.inner_lr = train_lr[e];
        t.seed = seed;
        const auto r = meta_train(t);
        MetagradTraining run;
        run.estimator = estimator_name(parse_estimator(name));
        run.seed = seed;
        run.pre_accuracy = r.after.pre_accuracy;
        run.post_accuracy = r.divergence.found() ? std::nan("") : r.after.post_accuracy;
        for (const auto& p : r.curve) {
          run.curve_steps.push_back(static_cast<double>(p.step));
          run.curve_accuracy.push_back(p.held_out.post_accuracy);
        }
        if (r.divergence.found()) run.status = r.divergence.describe();
        run.seconds = r.seconds;
        run.inner_lr = t.maml.inner_lr;
        return run;
      }, &resumed));
      progress.end(static_cast<double>(c.train.meta_steps * c.train_inner_steps), resumed);
    }
  }
  progress.finish();
  return raw;
}

}  // namespace theria::lab
