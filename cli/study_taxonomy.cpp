// `theria study taxonomy` (docs/taxonomy.md): the failure taxonomy of lab/studies/taxonomy.h.
#include "study_common.h"

#include "output/taxonomy_files.h"
#include "studies/taxonomy.h"
#include "studies/taxonomy_rules.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <theria/tolerances.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace theria::cli {
namespace {

struct TaxonomyOptions {
  lab::TaxonomyConfig study;
  std::string backend = "auto", device = "cpu", dtype = "float32", out;
  bool quick = false, no_plot = false, fo_for_exact_only = false;
  std::string command_line;
};

// --quick: the same study, small enough for CPU CI (under 2 minutes on 2 cores): fewer meta-steps and
// held-out tasks, shallower depth curve, and FO / FO_STRICT trained only for exact.
void make_quick(lab::TaxonomyConfig& c) {
  c.train.meta_steps = 200;
  c.train.eval_every = 200;
  c.train.eval_tasks = 16;
  c.train.meta_batch = 4;
  c.diagnostic_tasks = 4;
  c.rel_diff_steps = {1, 5, 10};
  c.train_every_mode = false;
}

int run_taxonomy_command(TaxonomyOptions& o) {
  require_one_process("study taxonomy");
  auto& c = o.study;
  auto& t = c.train;
  if (o.quick) make_quick(c);
  if (o.fo_for_exact_only) c.train_every_mode = false;
  t.model.attention.backend(parse_backend(o.backend));
  t.device = study_device(o.device);
  t.dtype = parse_dtype(o.dtype);
  t.model.seq_len = t.tasks.seq_len;
  t.model.classes = t.tasks.classes;
  for (const auto& v : c.variants) lab::attention_variant(v);  // an unknown name fails before any work
  const auto probe = at::empty({1, t.model.heads, t.tasks.seq_len + 1, t.model.dim / t.model.heads},
                               at::TensorOptions().dtype(t.dtype).device(t.device));
  const std::string resolved = backend_name(select_backend(probe, probe, probe, t.model.attention).backend);
  const std::filesystem::path out(o.out);
  std::filesystem::create_directories(out);
  std::fprintf(stderr, "[taxonomy] backend %s (%s), %s %s, %lld seeds, %lld meta-steps of %lld tasks, %lld inner steps "
               "(lr %g); parts in %s/parts (a re-run resumes)\n",
               o.backend.c_str(), resolved.c_str(), t.device.str().c_str(), dtype_name(t.dtype), (long long)c.seeds,
               (long long)t.meta_steps, (long long)t.meta_batch, (long long)t.maml.inner_steps, t.maml.inner_lr,
               o.out.c_str());
  const auto start = std::chrono::steady_clock::now();
  const auto raw = lab::run_taxonomy(c, out / "parts");
  const auto rows = lab::taxonomy_rows(c, raw);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lab::write_taxonomy_files(o.out, c, raw, rows, {o.command_line, resolved, device_name(t.device), seconds});
  char what[160];
  std::snprintf(what, sizeof what, "%zu rows in %.0f s; wrote %s/taxonomy.{json,csv,md}", rows.size(), seconds,
                o.out.c_str());
  return report_study("taxonomy", lab::taxonomy_markdown_table(rows), what, "plot_taxonomy.py",
                      {(out / "taxonomy.json").string(), (out / "taxonomy.png").string()}, o.no_plot);
}

}  // namespace

Run add_taxonomy(CLI::App& command) {
  auto o = std::make_shared<TaxonomyOptions>();
  auto& c = o->study;
  auto& t = c.train;
  // The study's defaults: 1 inner step at lr 0.2, the setting where exact FULL and FO separate most on
  // position recall (issue 11's probe: 0.99 vs 0.39 held-out accuracy after 300 meta-steps).
  t.maml.inner_steps = 1;
  t.maml.inner_lr = 0.2;
  t.meta_steps = 300;
  t.eval_every = 300;
  const auto opt = [&](const char* name, auto& value, const char* help) { return option(command, name, value, help); };
  opt("--backend", o->backend, "attention backend")->check(CLI::IsMember({"auto", "reference", "explicit", "fused"}));
  opt("--device", o->device, "device")->check(CLI::IsMember({"cpu", "cuda"}));
  opt("--dtype", o->dtype, "dtype of the weights")
      ->check(CLI::IsMember({"float32", "float64", "bfloat16", "float16"}));
  opt("--seeds", c.seeds, "seeds (paired across variants and modes)")->check(CLI::Range(int64_t{1}, int64_t{1000}));
  opt("--variants", c.variants, "attention variants, comma-separated (default: all)")->delimiter(',');
  opt("--meta-steps", t.meta_steps, "meta-training steps per run")->check(CLI::NonNegativeNumber);
  opt("--inner-steps", t.maml.inner_steps, "inner-loop steps of meta-training and the diagnostics")
      ->check(CLI::NonNegativeNumber);
  opt("--inner-lr", t.maml.inner_lr, "inner-loop learning rate");
  opt("--rel-diff-steps", c.rel_diff_steps, "inner depths of the FULL vs FO curve, comma-separated")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->default_str("1,5,10,20");
  opt("--rel-diff-inner-lr", c.rel_diff_inner_lr, "inner lr of the FULL vs FO curve");
  opt("--seq-len", t.tasks.seq_len, "sequence length T")->check(CLI::PositiveNumber);
  opt("--dim", t.model.dim, "model width D")->check(CLI::PositiveNumber);
  opt("--heads", t.model.heads, "attention heads")->check(CLI::PositiveNumber);
  opt("--out", o->out, "output folder (taxonomy.json, .csv, .md, .png; parts/ for resuming)")
      ->type_name("DIR")
      ->required();
  command.add_flag("--quick", o->quick, "a small run for CPU CI: under 2 minutes on 2 cores");
  command.add_flag("--fo-for-exact-only", o->fo_for_exact_only,
                   "meta-train FO and FO_STRICT for exact only (every pattern is still trained in FULL and "
                   "diagnosed in every mode); --quick implies it");
  command.add_flag("--no-plot", o->no_plot, "do not draw taxonomy.png");
  return [o] {
    o->command_line = command_line();
    return run_taxonomy_command(*o);
  };
}

}  // namespace theria::cli
