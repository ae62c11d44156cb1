// `theria maml`: meta-trains the lab's transformer with MAML through theria attention, shows
// progress, runs the diagnostics at the trained weights, and writes the learning curve
// (curve.csv), a summary with the exact configuration (summary.json) and a plot (curve.png).
// A run whose losses become non-finite says where, marks its results failed and exits with
// kDivergedExit unless --continue-on-divergence is given (docs/maml.md).
// Under torchrun (RANK, WORLD_SIZE, ... in the environment) the processes share every meta-batch through c10d
// (docs/distributed.md); rank 0 alone prints and writes files. --checkpoint-every / --resume: the run continues
// from its last checkpoint after an interruption, with as many processes as it likes.
#include "commands.h"
#include "maml_report.h"
#include "plot_script.h"
#include "task_options.h"

#include "distributed/communicator.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

namespace theria::cli {
namespace {

constexpr int kDivergedExit = 3;

struct Options {
  lab::TrainConfig train;
  std::string backend = "auto", mode = "full", pooling = "attention", device = "cpu", dtype = "float32";
  TaskRanges ranges;
  std::vector<int64_t> diagnose_steps{1, 2, 4, 8};
  std::string out = "out/maml";
  bool no_plot = false;
  int64_t checkpoint_every = 0;
  bool resume = false, check_replicas = false, deterministic = false;
};

// The settings the options name but do not hold directly, and the checks CLI11 cannot make alone.
void finish(Options& o) {
  auto& t = o.train;
  t.model.attention.backend(parse_backend(o.backend));
  t.maml.mode = lab::parse_maml_mode(o.mode);
  // An estimator replaces the mode's meta-gradient (its canonical spelling: the checkpoint's fingerprint).
  if (!t.estimator.empty()) t.estimator = lab::estimator_name(lab::parse_estimator(t.estimator));
  t.model.pooling = o.pooling == "mean" ? lab::Pooling::Mean : lab::Pooling::Attention;
  TORCH_CHECK(o.device == "cpu" || at::hasCUDA(), "--device cuda: no CUDA device available");
  TORCH_CHECK(!t.cuda_graph || o.device == "cuda", "--cuda-graph needs --device cuda");
  TORCH_CHECK(!t.cuda_graph || t.estimator.empty(), "--cuda-graph replays MAML's meta-gradient: drop --estimator");
  t.device = lab::rank_device(o.device == "cuda" ? at::kCUDA : at::kCPU);
  t.dtype = o.dtype == "float64" ? at::kDouble : o.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  apply_task_options(o.ranges, t.tasks, t.model, t.seed);
  // As torch.use_deterministic_algorithms(True): the fused backward adds its dQ shares in a fixed order. cuBLAS is
  // deterministic only with a fixed workspace (PyTorch's reproducibility notes): set before the first CUDA call.
  if (o.deterministic) {
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  }
}

PlotOutcome plot(const lab::TrainConfig& t, const std::filesystem::path& out) {
  const auto io = lab::make_task_family(t.tasks, t.seed)->io();
  const bool regression = io.target == lab::TargetKind::Regression;
  return run_plot_script("plot_curve.py",
                         {(out / "curve.csv").string(), (out / "curve.png").string(), "--chance",
                          std::to_string(io.chance), "--metric", regression ? "R^2" : "accuracy", "--title",
                          std::string("theria maml: ") + t.tasks.family + ", " + lab::maml_mode_name(t.maml.mode) +
                              ", " + backend_name(t.model.attention.backend_)});
}

MamlDiagnostics diagnose(const lab::TrainConfig& t, const lab::Weights& trained,
                         const std::vector<int64_t>& diagnose_steps) {
  lab::Weights w;
  for (const auto& x : trained) w.push_back(x.detach().requires_grad_());
  const auto tasks = lab::held_out_tasks(t, t.meta_batch);
  MamlDiagnostics d;
  // The path of the run's own mode: FO and FO_STRICT runs must read false (the negative control).
  d.path = lab::second_order_path(t.model, t.maml, w, tasks);
  d.rel_diff = lab::rel_diff_full_vs_fo(t.model, t.maml, w, tasks, diagnose_steps);
  d.full = lab::time_meta_step(t, lab::MamlMode::Full, w, tasks);
  d.fo = lab::time_meta_step(t, lab::MamlMode::FirstOrder, w, tasks);
  lab::MamlConfig full = t.maml;
  full.mode = lab::MamlMode::Full;
  d.full_gpu = lab::gpu_busy(t.device, [&] { lab::meta_gradient(t.model, full, w, tasks); });
  try {
    d.full_graph = lab::time_graphed_meta_step(t, w, tasks);
    d.full_graph_status = d.full_graph ? "measured" : "not run (CPU)";
  } catch (const std::exception& e) {
    d.full_graph_status = std::string("capture failed: ") + e.what();
  }
  return d;
}

// What a checkpoint belongs to: the configuration, not where it runs (a rank's GPU, the number of ranks).
std::string fingerprint(const MamlRun& run) {
  Json j = config_json(run);
  j.erase("resolved_backend");
  j.erase("cuda_graph");  // how the meta-gradient is launched, not what it is
  j["device"] = c10::DeviceTypeName(run.config.device.type(), /*lower_case=*/true);
  return j.dump();
}

int run_maml(const Options& o) {
  MamlRun run;
  run.config = o.train;
  const auto& t = run.config;
  const std::filesystem::path out(o.out);
  const auto comm = lab::Communicator::from_environment(t.device.type());
  const lab::EndTogether end_together(*comm);  // rank 0 writes the files while the others wait
  const bool root = comm->is_root();
  if (root) std::filesystem::create_directories(out);
  lab::TrainRuntime runtime;
  runtime.comm = comm.get();
  runtime.check_replicas = o.check_replicas;
  runtime.checkpoint_every = o.checkpoint_every;
  runtime.resume = o.resume;
  if (o.checkpoint_every > 0 || o.resume) runtime.checkpoint = (out / "checkpoint.pt").string();
  runtime.fingerprint = fingerprint(run);
  if (comm->distributed() && root) {
    std::fprintf(stderr, "[maml] %d rank%s (%s): each meta-step's %lld tasks shared out in blocks of %lld-%lld\n",
                 comm->world_size(), comm->world_size() == 1 ? "" : "s", comm->backend_name(), (long long)t.meta_batch,
                 (long long)lab::block_of(t.meta_batch, comm->world_size() - 1, comm->world_size()).size(),
                 (long long)lab::block_of(t.meta_batch, 0, comm->world_size()).size());
  }
  if (root) std::fprintf(stderr,
               "[maml] %s, backend %s, mode %s, %lld inner steps (lr %g%s), %lld meta-steps of %lld tasks, T=%lld, "
               "%s %s\n",
               t.tasks.family.c_str(), backend_name(t.model.attention.backend_), lab::maml_mode_name(t.maml.mode),
               (long long)t.maml.inner_steps,
               t.maml.inner_lr, t.maml.inner_grad_clip > 0 ? (", clip " + std::to_string(t.maml.inner_grad_clip)).c_str() : "",
               (long long)t.meta_steps, (long long)t.meta_batch, (long long)t.model.seq_len, t.device.str().c_str(),
               c10::toString(t.dtype));
  const char* metric = lab::make_task_family(t.tasks, t.seed)->io().metric();
  const auto start = std::chrono::steady_clock::now();
  run.result = lab::meta_train(
      t,
      [&](const lab::CurvePoint& p) {
        if (!root) return;
        print_progress(p, t.meta_steps, metric,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      },
      runtime);
  if (root && run.result.resumed_at >= 0) {
    std::fprintf(stderr, "[maml] resumed from %s at meta-step %lld\n", runtime.checkpoint.c_str(),
                 (long long)run.result.resumed_at);
  }
  if (!root) return run.result.divergence.found() && !t.continue_on_divergence ? kDivergedExit : 0;
  if (run.result.divergence.found()) std::fprintf(stderr, "[maml] %s\n", run.result.divergence.describe().c_str());

  std::fprintf(stderr, "[maml] diagnostics ...\n");
  run.diagnostics = diagnose(t, run.result.weights, o.diagnose_steps);
  // The backend `auto` (or any request) resolves to for this model's attention inputs.
  const auto probe = at::empty({1, t.model.heads, t.model.seq_len + 1, t.model.dim / t.model.heads},
                               at::TensorOptions().dtype(t.dtype).device(t.device));
  run.resolved_backend = select_backend(probe, probe, probe, t.model.attention).backend;

  write_curve_csv((out / "curve.csv").string(), run.result.curve);
  if (!o.no_plot) {
    run.plot = plot(t, out);
    if (run.plot.status != "written") std::fprintf(stderr, "[maml] plot %s\n", run.plot.status.c_str());
  }
  Json summary = summary_json(run);
  summary["distributed"] = {{"world_size", comm->world_size()}, {"process_group", comm->backend_name()}};
  summary["deterministic_algorithms"] = at::globalContext().deterministicAlgorithms();
  summary["resumed_at_meta_step"] = run.result.resumed_at >= 0 ? Json(run.result.resumed_at) : Json(nullptr);
  write_json((out / "summary.json").string(), summary);
  print_summary(run, o.out);
  if (run.result.divergence.found() && !t.continue_on_divergence) {
    std::fprintf(stderr, "theria maml: the run diverged (%s); exit status %d (--continue-on-divergence: 0)\n",
                 run.result.divergence.describe().c_str(), kDivergedExit);
    return kDivergedExit;
  }
  return 0;
}

}  // namespace

Run add_maml(CLI::App& command) {
  auto o = std::make_shared<Options>();
  auto& t = o->train;
  command.footer("Exit status: 0 done; 1 error; 2 bad command line; 3 the run diverged (a non-finite loss or\n"
                 "meta-gradient; summary.json says where) and --continue-on-divergence was not given.");
  auto opt = [&](const char* name, auto& value, const char* help) {
    return command.add_option(name, value, help)->capture_default_str();
  };
  opt("--backend", o->backend, "attention backend")->check(CLI::IsMember({"auto", "reference", "explicit", "fused"}));
  opt("--mode", o->mode, "MAML mode")->check(CLI::IsMember({"full", "fo", "fo_strict"}));
  opt("--inner-steps", t.maml.inner_steps, "inner-loop steps")->check(CLI::NonNegativeNumber);
  opt("--estimator", t.estimator,
      "meta-gradient estimator instead of --mode's (docs/metagrad.md): unrolled, first_order, truncated:K, implicit, "
      "implicit:lambda=2,cg=5,tol=1e-10,damping=0, neumann:...; empty: --mode");
  opt("--inner-lr", t.maml.inner_lr, "inner-loop learning rate");
  opt("--inner-grad-clip", t.maml.inner_grad_clip,
      "clip each inner gradient to this global norm, in every mode (0: off; docs/maml.md)")
      ->check(CLI::NonNegativeNumber);
  opt("--meta-lr", t.meta_lr, "Adam learning rate of the meta-update");
  opt("--meta-batch", t.meta_batch, "tasks per meta-step")->check(CLI::PositiveNumber);
  opt("--meta-steps", t.meta_steps, "meta-steps")->check(CLI::NonNegativeNumber);
  opt("--eval-every", t.eval_every, "meta-steps between held-out evaluations")->check(CLI::PositiveNumber);
  opt("--eval-tasks", t.eval_tasks, "held-out tasks per evaluation")->check(CLI::PositiveNumber);
  add_task_options(command, t.tasks, t.model, o->ranges);
  opt("--dim", t.model.dim, "model width D")->check(CLI::PositiveNumber);
  opt("--heads", t.model.heads, "attention heads")->check(CLI::PositiveNumber);
  opt("--blocks", t.model.blocks, "transformer blocks")->check(CLI::PositiveNumber);
  opt("--pooling", o->pooling, "attention, or mean pooling (the ablation)")->check(CLI::IsMember({"attention", "mean"}));
  opt("--seed", t.seed, "seed of the weights and the task family");
  opt("--device", o->device, "device")->check(CLI::IsMember({"cpu", "cuda"}));
  opt("--dtype", o->dtype, "dtype of the weights")->check(CLI::IsMember({"float32", "float64", "bfloat16"}));
  opt("--diagnose-steps", o->diagnose_steps, "inner-step counts for rel_diff_full_vs_fo, comma-separated")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber)
      ->default_str("1,2,4,8");
  opt("--out", o->out, "output folder (curve.csv, summary.json, curve.png)")->type_name("DIR");
  command.add_flag("--no-plot", o->no_plot, "do not draw curve.png");
  opt("--checkpoint-every", o->checkpoint_every,
      "write DIR/checkpoint.pt every N meta-steps and at the end (0: none unless --resume; docs/distributed.md)")
      ->check(CLI::NonNegativeNumber);
  command.add_flag("--resume", o->resume,
                   "continue from DIR/checkpoint.pt where it exists (same options; any number of ranks), else start; "
                   "writes the checkpoint at the end");
  command.add_flag("--deterministic", o->deterministic,
                   "torch.use_deterministic_algorithms(True): a run repeats bit for bit on the same machine (the fused "
                   "backward adds in a fixed order; docs/contract.md, \"Determinism\")");
  command.add_flag("--cuda-graph", t.cuda_graph,
                   "capture MAML's meta-gradient as a CUDA graph at the first meta-step and replay it after (CUDA, no "
                   "--estimator): the same meta-gradient without the kernel launches (docs/performance.md, \"The lab's "
                   "GPU meta-step\")");
  command.add_flag("--check-replicas", o->check_replicas,
                   "debug: after every meta-step, a checksum all-reduce asserts that every rank holds the same weights");
  command.add_flag("--continue-on-divergence", t.continue_on_divergence,
                   "skip meta-steps with a non-finite loss or meta-gradient and train on, exit 0 (the summary "
                   "still says diverged); without it training stops at the first one and the exit status is 3");
  return [o] {
    finish(*o);
    return run_maml(*o);
  };
}

}  // namespace theria::cli
