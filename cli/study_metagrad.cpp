// `theria study metagrad` (docs/metagrad.md): the estimator comparison of lab/studies/metagrad.h.
#include "study_common.h"

#include "output/metagrad_json.h"
#include "studies/metagrad.h"

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
  std::string backend = "auto", device = "cpu", dtype = "float32", out;
  bool quick = false, no_plot = false;
};

// --quick: the same comparison, small enough for CPU CI (under 3 minutes on 2 cores).
void make_quick(lab::MetagradConfig& c) {
  c.inner_steps = {1, 5, 10, 25};
  c.seeds = 2;
  c.diagnostic_tasks = 2;
  c.estimators = {"unrolled", "first_order", "truncated:5", "implicit:lambda=2,cg=5", "implicit:lambda=2,cg=20"};
}

int run_metagrad_command(MetagradOptions& o, const std::string& command) {
  auto& c = o.study;
  auto& t = c.train;
  if (o.quick) make_quick(c);
  for (const auto& e : c.estimators) lab::parse_estimator(e);  // a bad spec fails before any work
  t.model.attention.backend(parse_backend(o.backend));
  t.device = study_device(o.device);
  t.dtype = parse_dtype(o.dtype);
  t.model.seq_len = t.tasks.seq_len;
  t.model.classes = t.tasks.classes;
  const std::filesystem::path out(o.out);
  std::filesystem::create_directories(out);
  std::fprintf(stderr, "[metagrad] %zu estimators, backend %s, %s %s, %lld seeds; parts in %s/parts (a re-run resumes)\n",
               c.estimators.size(), o.backend.c_str(), t.device.str().c_str(), dtype_name(t.dtype), (long long)c.seeds,
               o.out.c_str());
  const auto start = std::chrono::steady_clock::now();
  const auto cells = lab::run_metagrad(c, out / "parts");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lab::write_metagrad_files(o.out, c, cells, {command, "", device_name(t.device), seconds});
  char what[160];
  std::snprintf(what, sizeof what, "%zu cells in %.0f s; wrote %s/metagrad.{json,csv,md}", cells.size(), seconds,
                o.out.c_str());
  return report_study("metagrad", lab::metagrad_markdown(c, cells), what, "plot_metagrad.py",
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
  opt("--seq-len", t.tasks.seq_len, "sequence length T")->check(CLI::PositiveNumber);
  opt("--classes", t.tasks.classes, "classes C (divides T)")->check(CLI::PositiveNumber);
  opt("--dim", t.model.dim, "model width D")->check(CLI::PositiveNumber);
  opt("--heads", t.model.heads, "attention heads")->check(CLI::PositiveNumber);
  opt("--out", o->out, "output folder (metagrad.json, .csv, .md, figures; parts/ for resuming)")
      ->type_name("DIR")
      ->required();
  command.add_flag("--quick", o->quick, "a small run for CPU CI: under 3 minutes on 2 cores");
  command.add_flag("--no-plot", o->no_plot, "do not draw the figures");
  return [o] { return run_metagrad_command(*o, command_line()); };
}

}  // namespace theria::cli
