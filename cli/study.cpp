#include "study_common.h"

#include <ATen/Context.h>
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <cstdio>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#endif

namespace theria::cli {

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float64") return at::kDouble;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  return at::kFloat;
}

at::Device study_device(const std::string& name) {
  TORCH_CHECK(name == "cpu" || at::hasCUDA(), "--device cuda: no CUDA device available");
  return lab::rank_device(name == "cuda" ? at::kCUDA : at::kCPU);
}

std::unique_ptr<lab::Communicator> study_ranks(const at::Device& device) {
  // A study's ranks meet once per phase, after hours of work at most: a stalled rank is given 6 h by default.
  constexpr int64_t kStudyTimeoutS = 6 * 3600;
  auto comm = lab::Communicator::from_environment(device.type(), kStudyTimeoutS);
  lab::set_progress_shown(comm->is_root());
  if (comm->distributed() && comm->is_root()) {
    std::fprintf(stderr, "[study] %d ranks (%s) share the study's units; rank 0 writes the files\n", comm->world_size(),
                 comm->backend_name());
  }
  return comm;
}

void require_one_process(const char* study) {
  const auto info = lab::rank_info_from_environment();
  TORCH_CHECK(info.world_size == 1, "theria ", study, " runs in one process (WORLD_SIZE=", info.world_size,
              "); `theria study sweep` and `theria study robustness` share their units across ranks, and `theria "
              "maml` its meta-batches (docs/distributed.md)");
}

std::string device_name(const at::Device& device) {
#ifdef THERIA_WITH_FUSED
  if (device.is_cuda()) return at::cuda::getDeviceProperties(device.index())->name;
#endif
  return "cpu";
}

int report_study(const std::string& name, const std::string& table, const std::string& what,
                 const std::string& plot_script, const std::vector<std::string>& plot_args, bool no_plot) {
  const std::string plot = no_plot ? "skipped (--no-plot)" : run_plot_script(plot_script, plot_args).status;
  std::printf("%s\n", table.c_str());
  std::printf("theria study %s: %s; figures: %s\n", name.c_str(), what.c_str(), plot.c_str());
  return plot == "written" || no_plot ? 0 : 1;
}

void add_shard_option(CLI::App& command, std::string& shard) {
  command
      .add_option("--shard", shard,
                  "I/N: this process runs shard I of N of the study's units, beside the others on one machine (same "
                  "--out); then one unsharded run times the costs and writes the files")
      ->type_name("I/N");
}

lab::Shard study_shard(const std::string& shard) { return shard.empty() ? lab::Shard{} : lab::parse_shard(shard); }

bool shard_finished(const char* study, const lab::Shard& shard) {
  if (shard.count <= 1) return false;
  std::fprintf(stderr, "[%s] shard %lld/%lld done: run once more without --shard to write the files\n", study,
               (long long)shard.index, (long long)shard.count);
  return true;
}

Run add_study(CLI::App& command) {
  command.require_subcommand(1);
  auto* taxonomy = command.add_subcommand(
      "taxonomy", "attention variants that silently drop derivative terms, in every MAML mode, over seeds: "
                  "second-order path, meta-gradient error, FULL vs FO, cost, behaviour, verdicts (docs/taxonomy.md)");
  auto* sweep = command.add_subcommand(
      "sweep", "inner depth x MAML mode x backend x seed, the inner lr chosen on validation tasks: held-out accuracy, "
               "convergence, cost and the FULL - FO gap with paired intervals (docs/sweep.md)");
  auto* metagrad = command.add_subcommand(
      "metagrad", "unrolled vs truncated vs implicit meta-gradients: error against float64 oracles, CG residuals, time "
                  "and memory as the inner loop deepens (docs/metagrad.md)");
  auto* robustness = command.add_subcommand(
      "robustness", "FULL MAML through attention over sequence length x head dim x precision x backend (theria's and "
                    "PyTorch's), over seeds: second-order path, error against float64, stability, cost; \"works? "
                    "stable? practical?\" by written rules (docs/robustness.md)");
  const auto run_taxonomy = add_taxonomy(*taxonomy);
  const auto run_sweep = add_sweep(*sweep);
  const auto run_metagrad = add_metagrad(*metagrad);
  const auto run_robustness = add_robustness(*robustness);
  return [taxonomy, sweep, metagrad, robustness, run_taxonomy, run_sweep, run_metagrad, run_robustness] {
    if (taxonomy->parsed()) return run_taxonomy();
    if (sweep->parsed()) return run_sweep();
    if (metagrad->parsed()) return run_metagrad();
    if (robustness->parsed()) return run_robustness();
    return 2;
  };
}

}  // namespace theria::cli
