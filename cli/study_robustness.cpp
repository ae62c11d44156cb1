// `theria study robustness` (docs/robustness.md): the robustness map of lab/studies/robustness.h.
#include "study_common.h"

#include "output/robustness_files.h"
#include "studies/robustness.h"
#include "studies/robustness_rules.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace theria::cli {
namespace {

struct RobustnessOptions {
  lab::RobustnessConfig study;
  std::string device = "cpu", out, shard;
  bool quick = false, no_plot = false;
};

// --quick: the same map on small shapes, for CPU CI (about 1.5 minutes on 2 cores). float16 is left out: CPUs have
// no float16 matrix units, and its meta-steps there take seconds each; T = 64, not 128, where the bfloat16 meta-steps
// (no bfloat16 matrix units either) took two thirds of the tier's 3 minutes.
void make_quick(lab::RobustnessConfig& c) {
  c.seq_lens = {32, 64};
  c.head_dims = {32};
  c.precisions = {"float32", "bfloat16", "autocast_bfloat16", "attention_bfloat16"};
}

int run_robustness_command(RobustnessOptions& o, const std::string& command) {
  auto& c = o.study;
  auto& t = c.train;
  if (o.quick) make_quick(c);
  t.device = study_device(o.device);
  const std::filesystem::path out(o.out);
  const auto comm = study_ranks(t.device);
  const lab::EndTogether end_together(*comm);  // rank 0 writes the files while the others wait
  const bool root = comm->is_root();
  std::filesystem::create_directories(out);
  const auto cells = lab::robustness_cells(c);
  if (root) std::fprintf(stderr, "[robustness] %zu cells x %lld seeds on %s, %lld inner steps (lr %g); parts in %s/parts (a "
               "re-run resumes)\n",
               cells.size(), (long long)c.seeds, t.device.str().c_str(), (long long)t.maml.inner_steps,
               t.maml.inner_lr, o.out.c_str());
  const auto start = std::chrono::steady_clock::now();
  const auto shard = study_shard(o.shard);
  const auto raw = lab::run_robustness(c, out / "parts", shard, comm.get());
  if (shard_finished("robustness", shard) || !root) return 0;
  const auto rows = lab::robustness_rows(c, raw);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lab::write_robustness_files(o.out, c, raw, rows, {command, "", device_name(t.device), seconds});
  char what[160];
  std::snprintf(what, sizeof what, "%zu cells in %.0f s; wrote %s/robustness.{json,csv,md}", rows.size(), seconds,
                o.out.c_str());
  return report_study("robustness", lab::robustness_markdown_table(rows), what, "plot_robustness.py",
                      {(out / "robustness.json").string(), (out / "robustness.png").string()}, o.no_plot);
}

}  // namespace

Run add_robustness(CLI::App& command) {
  auto o = std::make_shared<RobustnessOptions>();
  auto& c = o->study;
  auto& t = c.train;
  // Two inner steps at lr 0.1 on position recall: a FULL meta-gradient with a second-order part well above
  // float32 rounding that stays finite in float32 (docs/robustness.md).
  t.maml.inner_steps = 2;
  t.maml.inner_lr = 0.1;
  t.tasks.support = 8;
  t.tasks.query = 8;
  const auto opt = [&](const char* name, auto& value, const char* help) { return option(command, name, value, help); };
  opt("--device", o->device, "device")->check(CLI::IsMember({"cpu", "cuda"}));
  opt("--seq-lens", c.seq_lens, "sequence lengths T, comma-separated (multiples of --classes)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->default_str("32,128,256");
  opt("--head-dims", c.head_dims, "head dims, comma-separated (model width = heads x head dim)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->default_str("32,64,128");
  opt("--precisions", c.precisions, "weights' dtype, or autocast_<dtype> over float32 weights, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(lab::precision_names()))
      ->default_str("float32,bfloat16,float16,autocast_bfloat16");
  opt("--backends", c.backends,
      "attention: theria's reference / explicit (CPU) / fused (CUDA), PyTorch's pytorch_math / pytorch_flash; "
      "comma-separated (default: every one that runs on the device)")
      ->delimiter(',')
      ->check(CLI::IsMember(lab::robustness_backend_names()));
  opt("--seeds", c.seeds, "seeds (initial weights and tasks, shared by every cell)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  opt("--tasks", c.diagnostic_tasks, "tasks in the measured meta-batch")->check(CLI::PositiveNumber);
  opt("--support", t.tasks.support, "support examples per task")->check(CLI::PositiveNumber);
  opt("--query", t.tasks.query, "query examples per task")->check(CLI::PositiveNumber);
  opt("--classes", t.tasks.classes, "position recall's classes C (divides every T)")->check(CLI::PositiveNumber);
  opt("--heads", t.model.heads, "attention heads")->check(CLI::PositiveNumber);
  opt("--inner-steps", t.maml.inner_steps, "inner-loop steps")->check(CLI::PositiveNumber);
  opt("--inner-lr", t.maml.inner_lr, "inner-loop learning rate");
  opt("--oracle-reference-max-len", c.oracle_reference_max_len,
      "float64 oracles up to this T use the reference composition on the CPU, longer ones the fused (CUDA) or "
      "explicit (CPU) kernels' float64 path")
      ->check(CLI::PositiveNumber);
  opt("--out", o->out, "output folder (robustness.json, .csv, .md, .png; parts/ for resuming)")
      ->type_name("DIR")
      ->required();
  add_shard_option(command, o->shard);
  command.add_flag("--quick", o->quick,
                   "T in {32, 128}, head dim 32, float32 / bfloat16 / autocast_bfloat16 / attention_bfloat16: for CPU CI "
                   "(about 1 minute on 2 cores)");
  command.add_flag("--no-plot", o->no_plot, "do not draw robustness.png");
  return [o] { return run_robustness_command(*o, command_line()); };
}

}  // namespace theria::cli
