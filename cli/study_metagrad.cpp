// `theria study metagrad` (docs/metagrad.md): the estimator comparison of lab/studies/metagrad.h.
#include "study_common.h"

#include "output/metagrad_json.h"
#include "studies/metagrad.h"
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

struct MetagradOptions {
  lab::MetagradConfig study;
  std::string backend = "auto", device = "cpu", dtype = "float32", oracle_device = "cpu", out;
  bool quick = false, no_plot = false, no_oracle = false;
  TaskRanges ranges;
};

// --quick: the same comparison, small enough for CPU CI (under 3 minutes on 2 cores).
void make_quick(lab::MetagradConfig& c) {
  c.inner_steps = {1, 5, 10, 25};
  c.seeds = 2;
  c.diagnostic_tasks = 2;
  c.estimators = {"unrolled", "first_order", "truncated:5", "implicit:lambda=2,cg=5", "implicit:lambda=2,cg=20"};
  c.train_seeds = 2;
  c.train_inner_steps = 2;
  c.train.meta_steps = 40;
  c.train.eval_every = 20;
  c.train.eval_tasks = 16;
  c.train.meta_batch = 4;
}

int run_metagrad_command(MetagradOptions& o, const std::string& command) {
  require_one_process("study metagrad");
  auto& c = o.study;
  auto& t = c.train;
  if (o.quick) make_quick(c);
  for (const auto& e : c.estimators) lab::parse_estimator(e);  // a bad spec fails before any work
  for (const auto& e : c.train_estimators) lab::parse_estimator(e);
  t.model.attention.backend(parse_backend(o.backend));
  t.device = study_device(o.device);
  t.dtype = parse_dtype(o.dtype);
  c.oracle = !o.no_oracle;
  c.oracle_device = study_device(o.oracle_device);
  apply_task_options(o.ranges, t.tasks, t.model, t.seed);
  const std::filesystem::path out(o.out);
  std::filesystem::create_directories(out);
  std::fprintf(stderr, "[metagrad] %zu estimators, backend %s, %s %s, %lld seeds; parts in %s/parts (a re-run resumes)\n",
               c.estimators.size(), o.backend.c_str(), t.device.str().c_str(), dtype_name(t.dtype), (long long)c.seeds,
               o.out.c_str());
  const auto start = std::chrono::steady_clock::now();
  const auto raw = lab::run_metagrad(c, out / "parts");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lab::write_metagrad_files(o.out, c, raw, {command, "", device_name(t.device), seconds});
  char what[200];
  std::snprintf(what, sizeof what, "%zu cells and %zu training runs in %.0f s; wrote %s/metagrad.{json,csv,md}",
                raw.cells.size(), raw.training.size(), seconds, o.out.c_str());
  return report_study("metagrad", lab::metagrad_markdown(c, raw), what, "plot_metagrad.py",
                      {(out / "metagrad.json").string(), o.out}, o.no_plot);
}

}  // namespace

Run add_metagrad(CLI::App& command) {
  auto o = std::make_shared<MetagradOptions>();
  auto& c = o->study;
  auto& t = c.train;
  t.maml.inner_lr = 0.05;  // stable to 100 inner steps from the random init (docs/maml.md: 0.2 diverges by 5)
  const auto opt = [&](const char* name, auto& value, const char* help) { return option(command, name, value, help); };
  opt("--estimators", c.estimators,
      "estimator specs, separated by ';' (unrolled; first_order; truncated:K; implicit:lambda=L,cg=N,tol=T; "
      "neumann:K,lambda=L)")
      ->delimiter(';')
      ->default_str("unrolled;first_order;truncated:5;implicit:lambda=2,cg=5;neumann:5,lambda=2");
  opt("--inner-steps", c.inner_steps, "inner depths, comma-separated")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->default_str("1,5,10,25,50,100");
  opt("--inner-lr", t.maml.inner_lr, "inner-loop learning rate");
  opt("--seeds", c.seeds, "seeds (initial weights and diagnostic tasks)")->check(CLI::Range(int64_t{1}, int64_t{1000}));
  opt("--tasks", c.diagnostic_tasks, "tasks per meta-gradient")->check(CLI::PositiveNumber);
  opt("--backend", o->backend, "attention backend")->check(CLI::IsMember({"auto", "reference", "explicit", "fused"}));
  opt("--device", o->device, "device")->check(CLI::IsMember({"cpu", "cuda"}));
  opt("--dtype", o->dtype, "dtype of the weights")->check(CLI::IsMember({"float32", "float64", "bfloat16"}));
  add_task_options(command, t.tasks, t.model, o->ranges);
  opt("--train-estimators", c.train_estimators,
      "estimators to meta-train with, separated by ';' (the first is the reference of the paired differences; "
      "none with --train-seeds 0)")
      ->delimiter(';')
      ->default_str("unrolled;first_order;truncated:5;implicit:lambda=2,cg=5");
  opt("--train-inner-steps", c.train_inner_steps, "inner steps of the meta-training runs")->check(CLI::PositiveNumber);
  opt("--train-seeds", c.train_seeds, "seeds of the meta-training runs (paired across estimators)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000}));
  opt("--train-lr-grid", c.train_lr_grid,
      "inner lr candidates, comma-separated: each estimator meta-trains at the one with the best validation accuracy "
      "(none: every estimator at --inner-lr)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  opt("--train-search-seeds", c.train_search_seeds, "validation runs per lr candidate (their own seeds)")
      ->check(CLI::PositiveNumber);
  opt("--train-search-meta-steps", c.train_search_meta_steps, "meta-steps of each validation run")
      ->check(CLI::PositiveNumber);
  opt("--meta-steps", t.meta_steps, "meta-steps of each meta-training run")->check(CLI::PositiveNumber);
  opt("--meta-batch", t.meta_batch, "tasks per meta-step")->check(CLI::PositiveNumber);
  opt("--eval-every", t.eval_every, "meta-steps between held-out evaluations")->check(CLI::PositiveNumber);
  opt("--eval-tasks", t.eval_tasks, "held-out tasks per evaluation")->check(CLI::PositiveNumber);
  opt("--inner-grad-clip", t.maml.inner_grad_clip, "clip each inner gradient to this global norm (0: off)")
      ->check(CLI::NonNegativeNumber);
  opt("--dim", t.model.dim, "model width D")->check(CLI::PositiveNumber);
  opt("--heads", t.model.heads, "attention heads")->check(CLI::PositiveNumber);
  opt("--out", o->out, "output folder (metagrad.json, .csv, .md, figures; parts/ for resuming)")
      ->type_name("DIR")
      ->required();
  command.add_flag("--quick", o->quick, "a small run for CPU CI: under 3 minutes on 2 cores");
  command.add_flag("--no-plot", o->no_plot, "do not draw the figures");
  option(command, "--init-weights", c.init_weights,
         "a `theria maml` checkpoint (DIR/checkpoint.pt): the estimators are compared at its (meta-trained) weights, "
         "for every seed, instead of each seed's initialisation")
      ->check(CLI::ExistingFile);
  option(command, "--oracle-device", o->oracle_device,
         "where the float64 oracles run: cpu (reference backend) or cuda (the fused backend's float64 kernels, no L x S "
         "buffer: longer sequences)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_flag("--no-oracle", o->no_oracle,
                   "no float64 oracle: the cost of a meta-step as the depth grows only (long sequences on the GPU)");
  return [o] { return run_metagrad_command(*o, command_line()); };
}

}  // namespace theria::cli
