// `theria study sweep` (docs/sweep.md): signal -> behaviour, the sweep of lab/studies/sweep.h.
#include "study_common.h"

#include "output/sweep_files.h"
#include "studies/sweep.h"
#include "studies/sweep_rules.h"
#include "task_options.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <theria/tolerances.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace theria::cli {
namespace {

struct SweepOptions {
  lab::SweepConfig study;
  std::vector<std::string> backends{"reference", "explicit"}, modes{"full", "fo", "fo_strict"};
  std::string device = "cpu", dtype = "float32", out, shard;
  TaskRanges ranges;
  bool quick = false, no_plot = false;
};

// --quick: the same sweep, small enough for CPU CI (under 3 minutes on 2 cores).
void make_quick(SweepOptions& o) {
  auto& c = o.study;
  c.inner_steps = {1, 5};
  c.seeds = 3;
  c.train.meta_steps = 100;
  c.train.eval_every = 25;
  c.train.eval_tasks = 16;
  c.train.meta_batch = 4;
  c.lr_grid = {0.4, 0.1, 0.025};
  c.search_meta_steps = 40;
  c.search_seeds = 1;
  o.backends = {"explicit"};
}

int run_sweep_command(SweepOptions& o, const std::string& command) {
  auto& c = o.study;
  auto& t = c.train;
  if (o.quick) make_quick(o);
  c.backends.clear();
  for (const auto& b : o.backends) c.backends.push_back(parse_backend(b));
  c.modes.clear();
  for (const auto& m : o.modes) c.modes.push_back(lab::parse_maml_mode(m));
  t.device = study_device(o.device);
  t.dtype = parse_dtype(o.dtype);
  apply_task_options(o.ranges, t.tasks, t.model, t.seed);
  const std::filesystem::path out(o.out);
  const auto comm = study_ranks(t.device);
  const lab::EndTogether end_together(*comm);  // rank 0 writes the files while the others wait
  const bool root = comm->is_root();
  std::filesystem::create_directories(out);
  if (root) {
    std::fprintf(stderr, "[sweep] %s, %s %s, %lld seeds, inner steps", t.tasks.family.c_str(), t.device.str().c_str(),
                 dtype_name(t.dtype), (long long)c.seeds);
    for (const auto s : c.inner_steps) std::fprintf(stderr, " %lld", (long long)s);
    std::fprintf(stderr, ", %lld meta-steps of %lld tasks; parts in %s/parts (a re-run resumes)\n",
                 (long long)t.meta_steps, (long long)t.meta_batch, o.out.c_str());
  }
  const auto start = std::chrono::steady_clock::now();
  const auto shard = study_shard(o.shard);
  const auto raw = lab::run_sweep(c, out / "parts", shard, comm.get());
  if (shard_finished("sweep", shard) || !root) return 0;
  const auto summary = lab::summarize_sweep(c, raw);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lab::write_sweep_files(o.out, c, raw, summary, {command, "", device_name(t.device), seconds});
  char what[160];
  std::snprintf(what, sizeof what, "%zu cells in %.0f s; wrote %s/sweep.{json,csv,md}", raw.cells.size(), seconds,
                o.out.c_str());
  return report_study("sweep", lab::sweep_markdown(summary), what, "plot_sweep.py", {(out / "sweep.json").string(), o.out},
                      o.no_plot);
}

}  // namespace

Run add_sweep(CLI::App& command) {
  auto o = std::make_shared<SweepOptions>();
  auto& c = o->study;
  auto& t = c.train;
  t.meta_steps = 300;
  t.eval_every = 25;
  const auto opt = [&](const char* name, auto& value, const char* help) { return option(command, name, value, help); };
  opt("--inner-steps", c.inner_steps, "inner depths, comma-separated")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->default_str("1,5,10,20");
  opt("--modes", o->modes, "MAML modes, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"full", "fo", "fo_strict"}))
      ->default_str("full,fo,fo_strict");
  opt("--backends", o->backends, "attention backends, comma-separated (the first one runs the lr search)")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "reference", "explicit", "fused"}))
      ->default_str("reference,explicit");
  opt("--seeds", c.seeds, "seeds (paired across modes and depths)")->check(CLI::Range(int64_t{1}, int64_t{1000}));
  opt("--device", o->device, "device")->check(CLI::IsMember({"cpu", "cuda"}));
  opt("--dtype", o->dtype, "dtype of the weights")->check(CLI::IsMember({"float32", "float64", "bfloat16"}));
  opt("--meta-steps", t.meta_steps, "meta-training steps per cell")->check(CLI::PositiveNumber);
  opt("--meta-batch", t.meta_batch, "tasks per meta-step")->check(CLI::PositiveNumber);
  opt("--eval-every", t.eval_every, "meta-steps between held-out evaluations (the convergence curve)")
      ->check(CLI::PositiveNumber);
  opt("--eval-tasks", t.eval_tasks, "held-out tasks per evaluation")->check(CLI::PositiveNumber);
  opt("--lr-grid", c.lr_grid, "inner lr candidates, comma-separated")->delimiter(',')->default_str(
      "0.4,0.2,0.1,0.05,0.025,0.0125");
  opt("--search-meta-steps", c.search_meta_steps, "meta-steps of each lr-search run")->check(CLI::PositiveNumber);
  opt("--search-seeds", c.search_seeds, "seeds of the lr search (their own, not the study's)")
      ->check(CLI::PositiveNumber);
  opt("--inner-grad-clip", t.maml.inner_grad_clip, "clip each inner gradient to this global norm (0: off)")
      ->check(CLI::NonNegativeNumber);
  add_task_options(command, t.tasks, t.model, o->ranges);
  opt("--dim", t.model.dim, "model width D")->check(CLI::PositiveNumber);
  opt("--heads", t.model.heads, "attention heads")->check(CLI::PositiveNumber);
  opt("--task-group", t.maml.task_group,
      "tasks adapted together in one grouped pass (0: the whole meta-batch; 1: task by task, least memory)")
      ->check(CLI::NonNegativeNumber);
  opt("--out", o->out, "output folder (sweep.json, .csv, .md, figures; parts/ for resuming)")->type_name("DIR")->required();
  add_shard_option(command, o->shard);
  command.add_flag("--quick", o->quick, "a small run for CPU CI: under 3 minutes on 2 cores");
  command.add_flag("--no-plot", o->no_plot, "do not draw the figures");
  return [o] { return run_sweep_command(*o, command_line()); };
}

}  // namespace theria::cli
