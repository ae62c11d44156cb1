// What `theria maml` reports from one finished run: the learning curve (curve.csv), the summary
// (summary.json) and the console lines. A value that is not finite is never written as a number:
// it is empty (CSV) or null (JSON), with the reason next to it (docs/maml.md).
#pragma once

#include "json_out.h"
#include "diagnostics/gpu_busy.h"
#include "diagnostics/graphed_step.h"
#include "diagnostics/step_cost.h"
#include "plot_script.h"
#include "diagnostics/second_order.h"
#include "train/trainer.h"

#include <optional>
#include <string>
#include <vector>

namespace theria::cli {

struct MamlDiagnostics {
  lab::SecondOrderPath path;
  std::vector<lab::RelDiff> rel_diff;
  lab::StepCost full, fo;
  std::optional<lab::GpuBusy> full_gpu;  // CUDA runs: how much of the FULL meta-step the GPU is busy
  std::optional<lab::GraphedStep> full_graph;  // CUDA runs: the FULL meta-gradient as a CUDA graph, beside eager
  std::string full_graph_status = "not run";   // "measured", or why not (a capture error's message)
};

struct MamlRun {
  lab::TrainConfig config;
  Backend resolved_backend = Backend::Auto;  // what the requested backend resolves to for this model
  lab::TrainResult result;
  MamlDiagnostics diagnostics;
  PlotOutcome plot;
};

void write_curve_csv(const std::string& path, const std::vector<lab::CurvePoint>& curve);
// The run's configuration as summary.json states it.
Json config_json(const MamlRun& run);
Json summary_json(const MamlRun& run);
// `metric`: what the held-out score is (TaskIO::metric: "accuracy", or "r2" for regression).
void print_progress(const lab::CurvePoint& p, int64_t meta_steps, const char* metric, double seconds);
void print_summary(const MamlRun& run, const std::string& out_dir);

}  // namespace theria::cli
