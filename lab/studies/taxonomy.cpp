#include "studies/taxonomy.h"

#include "output/progress.h"
#include "output/resume.h"
#include "output/taxonomy_json.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

namespace theria::lab {
namespace {

// The diagnostic tasks of a seed: a family apart from the training stream (seed) and the held-out one (seed + 1).
std::vector<Task> diagnostic_tasks(const TaxonomyConfig& c, uint64_t seed) {
  const PositionRecallTasks family(c.train.tasks, seed + 1000);
  std::vector<Task> tasks;
  for (int64_t i = 0; i < c.diagnostic_tasks; ++i) tasks.push_back(family.task(i, c.train.device));
  return tasks;
}

// The training configuration of one arm: the study's, with the variant, the mode and the seed.
TrainConfig arm(const TaxonomyConfig& c, const AttentionVariant& variant, MamlMode mode, uint64_t seed) {
  TrainConfig t = c.train;
  apply_variant(variant, t.model, t.maml);
  t.maml.mode = mode;
  t.seed = seed;
  return t;
}

Weights initial_weights(const TrainConfig& t) {
  return init_weights(t.model, t.seed, at::TensorOptions().dtype(t.dtype).device(t.device));
}

// The diagnostics of one arm at its seed's initial weights.
TaxonomyCell diagnose_cell(const TrainConfig& t, const std::string& variant, const std::vector<Task>& tasks,
                           const MetaGradient& oracle) {
  TaxonomyCell cell;
  cell.variant = variant;
  cell.mode = t.maml.mode;
  cell.seed = t.seed;
  const Weights w = initial_weights(t);
  const auto g = meta_gradient(t.model, t.maml, w, tasks);
  if (g.loss_graph.defined()) cell.graph_nodes = attention_second_order_nodes(g.loss_graph);
  const auto share = attention_second_order_share(t.model, t.maml, w, tasks, g);
  const Divergence& d = g.divergence.found() ? g.divergence : oracle.divergence.found() ? oracle.divergence
                                                                                          : share.divergence;
  cell.second_order_share = share.share;
  const Detection detection = detect(t.model, t.maml, w, tasks);
  cell.detector_flagged = detection.flagged();
  cell.detector_graph_warnings = detection.graph_warnings;
  cell.detector_numerical_error = detection.numerical_relative_error;
  if (d.found()) {
    cell.diagnostic_status = d.describe();
    cell.error_rel_l2 = cell.error_cosine = std::nan("");
  } else {
    const auto e = gradient_error(g.grads, oracle.grads);
    cell.error_rel_l2 = e.rel_l2;
    cell.error_cosine = e.cosine;
  }
  return cell;
}

TaxonomyTraining train_cell(const TrainConfig& t) {
  const auto r = meta_train(t);
  const bool ok = !r.divergence.found();
  return {ok ? r.after.pre_accuracy : std::nan(""), ok ? r.after.post_accuracy : std::nan(""),
          ok ? "ok" : r.divergence.describe(), r.seconds};
}

std::string key(const std::string& kind, const std::string& variant, const std::string& mode, uint64_t seed) {
  return kind + "_" + variant + (mode.empty() ? "" : "_" + mode) + "_seed" + std::to_string(seed);
}

}  // namespace

Json taxonomy_config_json(const TaxonomyConfig& c) {
  const auto& t = c.train;
  std::vector<std::string> modes;
  for (const auto m : c.modes) modes.push_back(maml_mode_name(m));
  // parts_version: the layout of the resumable parts; a change of it makes earlier parts run again.
  return Json{{"parts_version", 2},
              {"variants", c.variants},
              {"modes", modes},
              {"seeds", c.seeds},
              {"device", t.device.str()},
              {"dtype", dtype_name(t.dtype)},
              {"backend", backend_name(t.model.attention.backend_)},
              {"model", {{"seq_len", t.model.seq_len}, {"classes", t.model.classes}, {"dim", t.model.dim},
                         {"heads", t.model.heads}, {"blocks", t.model.blocks}}},
              {"tasks", {{"support", t.tasks.support}, {"query", t.tasks.query}}},
              {"maml", {{"inner_steps", t.maml.inner_steps}, {"inner_lr", t.maml.inner_lr},
                        {"inner_grad_clip", t.maml.inner_grad_clip}}},
              {"meta_training", {{"meta_lr", t.meta_lr}, {"meta_batch", t.meta_batch}, {"meta_steps", t.meta_steps},
                                 {"eval_tasks", t.eval_tasks}, {"continue_on_divergence", t.continue_on_divergence}}},
              {"diagnostics", {{"tasks", c.diagnostic_tasks}, {"rel_diff_steps", c.rel_diff_steps},
                               {"rel_diff_inner_lr", c.rel_diff_inner_lr}}},
              {"train_every_mode", c.train_every_mode}};
}

TaxonomyRaw run_taxonomy(const TaxonomyConfig& c, const std::filesystem::path& parts_dir) {
  std::vector<const AttentionVariant*> variants;
  for (const auto& v : attention_variants()) {
    // exact is every comparison's baseline: always run.
    if (c.variants.empty() || v.name == "exact" ||
        std::find(c.variants.begin(), c.variants.end(), v.name) != c.variants.end()) {
      variants.push_back(&v);
    }
  }
  const auto trains = [&](const AttentionVariant& v, MamlMode m) {
    return c.train_every_mode || m == MamlMode::Full || v.name == "exact";
  };
  // Work in meta-gradient equivalents, for the ETA only.
  double rel_diff_work = 0.0;
  for (const auto s : c.rel_diff_steps) rel_diff_work += 2.0 * s / std::max<int64_t>(c.train.maml.inner_steps, 1);
  const double diag_work = 4.0, cost_work = 8.0, train_work = static_cast<double>(c.train.meta_steps) + 8.0;
  double total = 0.0;
  for (const auto* v : variants) {
    total += cost_work + c.seeds * rel_diff_work;
    for (const auto m : c.modes) total += c.seeds * (diag_work + (trains(*v, m) ? train_work : 0.0));
  }

  const PartStore parts(parts_dir, taxonomy_config_json(c));
  Progress progress("taxonomy", total);
  std::map<uint64_t, MetaGradient> oracle;  // per seed, computed when a diagnostic first needs it
  TaxonomyRaw raw;
  bool resumed = false;
  for (const auto* v : variants) {
    for (uint64_t seed = 0; seed < static_cast<uint64_t>(c.seeds); ++seed) {
      const auto tasks = diagnostic_tasks(c, seed);
      for (const auto mode : c.modes) {
        const TrainConfig t = arm(c, *v, mode, seed);
        progress.begin(key("diagnostics", v->name, maml_mode_name(mode), seed));
        auto cell = parts.get_or_compute<TaxonomyCell>(key("diagnostics", v->name, maml_mode_name(mode), seed), [&] {
          if (!oracle.count(seed)) oracle[seed] = oracle_meta_gradient(t.model, t.maml, initial_weights(t), tasks);
          return diagnose_cell(t, v->name, tasks, oracle[seed]);
        }, &resumed);
        progress.end(diag_work, resumed);
        if (trains(*v, mode)) {
          progress.begin(key("train", v->name, maml_mode_name(mode), seed));
          const auto run = parts.get_or_compute<TaxonomyTraining>(key("train", v->name, maml_mode_name(mode), seed),
                                                                  [&] { return train_cell(t); }, &resumed);
          progress.end(train_work, resumed);
          cell.trained = true;
          cell.pre_accuracy = run.pre_accuracy;
          cell.post_accuracy = run.post_accuracy;
          cell.train_status = run.status;
          cell.train_seconds = run.seconds;
        }
        raw.cells.push_back(cell);
      }
      progress.begin(key("rel_diff", v->name, "", seed));
      const TrainConfig t = arm(c, *v, MamlMode::Full, seed);
      raw.rel_diff.push_back(parts.get_or_compute<TaxonomyRelDiff>(key("rel_diff", v->name, "", seed), [&] {
        MamlConfig maml = t.maml;
        maml.inner_lr = c.rel_diff_inner_lr;
        return TaxonomyRelDiff{v->name, seed, rel_diff_full_vs_fo(t.model, maml, initial_weights(t), tasks,
                                                                  c.rel_diff_steps)};
      }, &resumed));
      progress.end(rel_diff_work, resumed);
    }
    progress.begin(key("cost", v->name, "", 0));
    const TrainConfig t = arm(c, *v, MamlMode::Full, 0);
    raw.costs.push_back(parts.get_or_compute<TaxonomyCost>(key("cost", v->name, "", 0), [&] {
      const Weights w = initial_weights(t);
      const auto tasks = diagnostic_tasks(c, 0);
      return TaxonomyCost{v->name, time_meta_step(t, MamlMode::Full, w, tasks),
                          time_meta_step(t, MamlMode::FirstOrder, w, tasks)};
    }, &resumed));
    progress.end(cost_work, resumed);
  }
  progress.finish();
  return raw;
}

}  // namespace theria::lab
