#include "studies/sweep.h"

#include "output/progress.h"
#include "output/resume.h"
#include "output/sweep_json.h"
#include "output/task_json.h"
#include "train/lr_search.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace theria::lab {
namespace {


// FO and FO_STRICT compute the same meta-gradient: one lr search serves both.
MamlMode search_mode(MamlMode m) { return m == MamlMode::FirstOrderStrict ? MamlMode::FirstOrder : m; }

std::string mode_key(MamlMode m) { return maml_mode_name(m); }

TrainConfig arm(const SweepConfig& c, Backend backend, int64_t steps, MamlMode mode, double lr, uint64_t seed) {
  TrainConfig t = c.train;
  t.model.attention.backend(backend);
  t.maml.inner_steps = steps;
  t.maml.mode = mode;
  t.maml.inner_lr = lr;
  t.seed = seed;
  return t;
}

}  // namespace

CurveMetrics curve_metrics(const std::vector<CurvePoint>& curve) {
  CurveMetrics m;
  if (curve.empty() || !std::isfinite(curve.back().held_out.post_accuracy)) {
    m.final_accuracy = m.steps_to_90 = m.area_under_curve = std::nan("");
    return m;
  }
  m.final_accuracy = curve.back().held_out.post_accuracy;
  // 90 % of the way from the first evaluation to the last; a run that gained nothing has no such step.
  const double first = curve.front().held_out.post_accuracy, gain = m.final_accuracy - first;
  m.steps_to_90 = std::nan("");
  for (const auto& p : curve) {
    if (gain > 0.0 && p.held_out.post_accuracy >= first + 0.9 * gain) {
      m.steps_to_90 = static_cast<double>(p.step);
      break;
    }
  }
  const double span = static_cast<double>(curve.back().step - curve.front().step);
  if (span <= 0.0) {
    m.area_under_curve = m.final_accuracy;
    return m;
  }
  double area = 0.0;
  for (size_t i = 1; i < curve.size(); ++i) {
    const double a = curve[i - 1].held_out.post_accuracy, b = curve[i].held_out.post_accuracy;
    area += 0.5 * (a + b) * static_cast<double>(curve[i].step - curve[i - 1].step);
  }
  m.area_under_curve = area / span;
  return m;
}

Json sweep_config_json(const SweepConfig& c) {
  const auto& t = c.train;
  std::vector<std::string> modes, backends;
  for (const auto m : c.modes) modes.push_back(maml_mode_name(m));
  for (const auto b : c.backends) backends.push_back(backend_name(b));
  return Json{{"parts_version", 2},
              {"task", task_json(*make_task_family(t.tasks, t.seed))},
              {"inner_steps", c.inner_steps},
              {"modes", modes},
              {"backends", backends},
              {"seeds", c.seeds},
              {"device", t.device.str()},
              {"dtype", dtype_name(t.dtype)},
              {"model", {{"seq_len", t.model.seq_len}, {"classes", t.model.classes}, {"dim", t.model.dim},
                         {"heads", t.model.heads}, {"blocks", t.model.blocks},
                         {"smeared_keys", t.model.smeared_keys}}},
              {"meta_training", {{"meta_lr", t.meta_lr}, {"meta_batch", t.meta_batch}, {"meta_steps", t.meta_steps},
                                 {"eval_every", t.eval_every}, {"eval_tasks", t.eval_tasks},
                                 {"inner_grad_clip", t.maml.inner_grad_clip},
                                 {"task_group", t.maml.task_group}}},
              {"lr_search", {{"grid", c.lr_grid}, {"meta_steps", c.search_meta_steps}, {"seeds", c.search_seeds},
                             {"split", "validation"}, {"backend", backend_name(c.backends.front())}}}};
}

Json sweep_search_fingerprint(const SweepConfig& c) {
  // What a search run depends on: not the study's seeds, depths, modes or backends (its key and the lr_search entry
  // name those it uses), nor the cells' meta-training length; so a study re-run with more seeds, longer cells or
  // another depth list reuses the search runs it already has.
  Json f = sweep_config_json(c);
  for (const char* key : {"inner_steps", "modes", "backends", "seeds"}) f.erase(key);
  f["meta_training"].erase("meta_steps");
  f["meta_training"].erase("eval_every");
  return f;
}

SweepRaw run_sweep(const SweepConfig& c, const std::filesystem::path& parts_dir, Shard shard, const Communicator* comm) {
  TORCH_CHECK(!c.backends.empty() && !c.modes.empty() && !c.inner_steps.empty(), "sweep: nothing to sweep");
  std::vector<MamlMode> searched;
  for (const auto m : c.modes) {
    if (std::find(searched.begin(), searched.end(), search_mode(m)) == searched.end()) searched.push_back(search_mode(m));
  }
  // Work in meta-steps x inner steps, for the ETA only.
  double total = 0.0;
  for (const auto s : c.inner_steps) {
    total += static_cast<double>(searched.size() * c.lr_grid.size() * c.search_seeds * c.search_meta_steps * s);
    total += static_cast<double>(c.modes.size() * c.backends.size() * (c.seeds * c.train.meta_steps + 8) * s);
  }
  const PartStore parts(parts_dir, sweep_config_json(c), shard, comm);
  const PartStore search_parts(parts_dir, sweep_search_fingerprint(c), shard, comm);
  Progress progress("sweep", total);
  SweepRaw raw;

  // 1. The inner lr of each (depth, mode), on validation tasks.
  std::vector<Unit<double>> search;
  for (const auto steps : c.inner_steps) {
    for (const auto mode : searched) {
      for (const double lr : c.lr_grid) {
        for (int64_t k = 0; k < c.search_seeds; ++k) {
          search.push_back({"lr_" + std::to_string(steps) + "_" + mode_key(mode) + "_" + std::to_string(lr) + "_seed" +
                                std::to_string(kSearchSeedBase + k),
                            static_cast<double>(c.search_meta_steps * steps), [&c, steps, mode, lr, k] {
                              return final_score(meta_train(
                                  search_run(arm(c, c.backends.front(), steps, mode, lr, 0), lr, k, c.search_meta_steps)));
                            }});
        }
      }
    }
  }
  const auto scores = search_parts.run_phase(search, progress);
  std::map<std::pair<int64_t, MamlMode>, double> chosen;
  size_t next = 0;
  for (const auto steps : c.inner_steps) {
    for (const auto mode : searched) {
      std::vector<std::vector<double>> runs;
      for (size_t i = 0; i < c.lr_grid.size(); ++i, next += c.search_seeds) {
        runs.emplace_back(scores.begin() + next, scores.begin() + next + c.search_seeds);
      }
      const auto search = choose_inner_lr(c.lr_grid, runs);
      LrChoice choice{steps, mode, search.lr, c.lr_grid, search.validation_accuracy};
      TORCH_CHECK(std::isfinite(choice.lr), "sweep: every inner lr candidate diverged at ", steps, " inner steps (",
                  maml_mode_name(mode), "); give a grid with smaller values (--lr-grid)");
      chosen[{steps, mode}] = choice.lr;
      raw.lr.push_back(choice);
    }
  }

  // 2. Meta-training of every cell on the study seeds, evaluated on the test split.
  std::vector<Unit<SweepCell>> cells;
  for (const auto backend : c.backends) {
    for (const auto steps : c.inner_steps) {
      for (const auto mode : c.modes) {
        const double lr = chosen.at({steps, search_mode(mode)});
        for (uint64_t seed = 0; seed < static_cast<uint64_t>(c.seeds); ++seed) {
          cells.push_back({std::string("cell_") + backend_name(backend) + "_" + std::to_string(steps) + "_" +
                               mode_key(mode) + "_seed" + std::to_string(seed),
                           static_cast<double>(c.train.meta_steps * steps), [&c, backend, steps, mode, lr, seed] {
                             const auto r = meta_train(arm(c, backend, steps, mode, lr, seed));
                             SweepCell cell{steps, mode, backend, seed, lr, curve_metrics(r.curve), {}, {}, "ok",
                                            r.seconds};
                             for (const auto& p : r.curve) {
                               cell.curve_steps.push_back(static_cast<double>(p.step));
                               cell.curve_accuracy.push_back(p.held_out.post_accuracy);
                             }
                             if (r.divergence.found()) cell.status = r.divergence.describe();
                             return cell;
                           }});
        }
      }
    }
  }
  raw.cells = parts.run_phase(cells, progress);
  if (shard.count > 1) {
    progress.finish();
    return raw;  // the cost of a meta-step is measured by the unsharded run, on a machine no other shard shares
  }

  // 3. The cost of a meta-step.
  std::vector<Unit<SweepCost>> costs;
  for (const auto backend : c.backends) {
    for (const auto steps : c.inner_steps) {
      for (const auto mode : c.modes) {
        const double lr = chosen.at({steps, search_mode(mode)});
        costs.push_back({std::string("cost_") + backend_name(backend) + "_" + std::to_string(steps) + "_" + mode_key(mode),
                         8.0 * steps, [&c, backend, steps, mode, lr] {
                           const TrainConfig t = arm(c, backend, steps, mode, lr, 0);
                           const Weights w = init_weights(t.model, 0, at::TensorOptions().dtype(t.dtype).device(t.device));
                           return SweepCost{steps, mode, backend,
                                            time_meta_step(t, mode, w, held_out_tasks(t, t.meta_batch))};
                         }});
      }
    }
  }
  raw.costs = parts.run_phase(costs, progress, Placement::Root);  // timed on a device no other rank shares
  progress.finish();
  return raw;
}

}  // namespace theria::lab
