// `theria study <name>`: the lab's studies (docs/taxonomy.md, docs/sweep.md). Each is run by the lab (lab/studies),
// resumes from the parts a previous run left in --out, shows a progress bar with an ETA, and writes its JSON, CSV,
// Markdown and figure into --out. One file per study; this header holds what they share.
#pragma once

#include "commands.h"
#include "plot_script.h"

#include "distributed/communicator.h"
#include "output/resume.h"

#include <ATen/core/Tensor.h>
#include <CLI/CLI.hpp>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

namespace theria::cli {

Run add_taxonomy(CLI::App& command);
Run add_sweep(CLI::App& command);
Run add_metagrad(CLI::App& command);
Run add_robustness(CLI::App& command);

// "float64", "bfloat16", "float16"; anything else float32 (CLI11 has checked the name).
at::ScalarType parse_dtype(const std::string& name);
// The device a study runs on, with the check that it exists: one GPU per process under torchrun (cuda:LOCAL_RANK).
at::Device study_device(const std::string& name);
// The ranks of a study launched by torchrun (docs/distributed.md; one process otherwise), their collectives on
// `device`'s type; the ranks other than 0 draw no progress bar.
std::unique_ptr<lab::Communicator> study_ranks(const at::Device& device);
// A study that runs in one process: an error under a launch of several (WORLD_SIZE > 1) naming those that share.
void require_one_process(const char* study);
// The GPU's name, or "cpu".
std::string device_name(const at::Device& device);

// The end of every study: draws its figures with scripts/<plot_script> (unless no_plot), prints its table and the
// line `theria study <name>: <what>; figures: <status>`, and returns the exit status (1 when a figure failed).
int report_study(const std::string& name, const std::string& table, const std::string& what,
                 const std::string& plot_script, const std::vector<std::string>& plot_args, bool no_plot);

// A resumable study's --shard I/N (stored as text in `shard`; empty: the whole study in this process).
void add_shard_option(CLI::App& command, std::string& shard);
lab::Shard study_shard(const std::string& shard);
// After a sharded run: says on stderr that an unsharded run must write the files, and returns true (the command then
// exits 0); false for an unsharded run.
bool shard_finished(const char* study, const lab::Shard& shard);

// An option with its default shown in --help.
template <class T>
CLI::Option* option(CLI::App& command, const char* name, T& value, const char* help) {
  return command.add_option(name, value, help)->capture_default_str();
}

}  // namespace theria::cli
