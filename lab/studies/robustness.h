// The robustness map (docs/robustness.md): FULL MAML through attention over sequence length x head dim x precision
// (dtype, autocast) x attention backend (theria's, and PyTorch's math and flash SDPA as the users' alternatives),
// over seeds. Per cell: whether second-order signal reaches the meta-parameters through attention, FULL vs FO, the
// meta-gradient's error against a float64 oracle (FULL's and FO's), non-finite values, what raised or ran out of
// memory, and the time and peak memory of a FULL and an FO meta-step. The classification ("works? stable?
// practical?") comes from studies/robustness_rules.h, never from this file.
#pragma once

#include "diagnostics/step_cost.h"
#include "output/json_file.h"
#include "output/resume.h"
#include "train/trainer.h"

#include <c10/core/ScalarType.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace theria::lab {

// How a cell computes: the weights' dtype; autocast's dtype when autocast is on (weights then float32); or, the
// control that isolates attention's rounding, float32 everywhere except the attention call, whose q, k, v are cast to
// `attention`'s dtype and whose output is cast back.
struct Precision {
  std::string name;  // "float32", "bfloat16", "float16", "float64", "autocast_<dtype>", "attention_<dtype>"
  at::ScalarType weights = at::kFloat;
  std::optional<at::ScalarType> autocast;
  std::optional<at::ScalarType> attention;
  // The dtype attention runs in. The rules' tolerances are this dtype's.
  at::ScalarType compute() const { return attention.value_or(autocast.value_or(weights)); }
};
Precision parse_precision(const std::string& name);  // an error naming the choices otherwise
const std::vector<std::string>& precision_names();

// Attention backends of the map: theria's ("reference", "explicit", "fused") and PyTorch's ("pytorch_math",
// "pytorch_flash"); which of them run on a device (explicit on CPU only, fused on CUDA only).
const std::vector<std::string>& robustness_backend_names();
std::vector<std::string> backends_on(const at::Device& device);

struct RobustnessConfig {
  TrainConfig train;  // the task family, support / query sizes, heads, MAML inner steps and lr, device
  std::vector<int64_t> seq_lens{32, 128, 256};
  std::vector<int64_t> head_dims{32, 64, 128};
  std::vector<std::string> precisions{"float32", "bfloat16", "float16", "autocast_bfloat16"};
  std::vector<std::string> backends;  // empty: every backend that runs on the device
  int64_t seeds = 3;                  // seeds 0 .. seeds-1: initial weights and tasks, shared by every cell
  int64_t diagnostic_tasks = 4;       // the meta-batch measured
  // Oracles at or below this length use the reference composition on the CPU; longer ones the fused kernels'
  // float64 path on the study's device (CPU: the explicit kernels), which hold no L x S buffer.
  int64_t oracle_reference_max_len = 256;
};

// One cell.
struct RobustnessCellKey {
  int64_t seq_len = 0, head_dim = 0;
  std::string precision, backend;
  std::string id() const;  // e.g. "T128_D64_bfloat16_fused": the cell's part key
};

// One cell at one seed's initial weights, on that seed's meta-batch.
struct RobustnessMeasure {
  RobustnessCellKey cell;
  uint64_t seed = 0;
  // "ok"; "raises: <message>" (a backend without a double backward); "out of memory"; or the divergence
  // (where the FULL or FO run first became non-finite).
  std::string status = "ok";
  bool non_finite = false;               // the status is a divergence
  double second_order_share = 0.0;       // attention_second_order_share of FULL (NaN unless ok)
  std::vector<std::string> graph_nodes;  // attention double-backward nodes in the FULL meta-loss graph
  double rel_diff_full_vs_fo = 0.0;      // ||g_FULL - g_FO|| / ||g_FULL||
  double error_full = 0.0, cosine_full = 0.0;  // FULL vs the float64 FULL oracle
  double error_fo = 0.0;                       // FO vs the same oracle
};

// The cost of a cell's FULL and FO meta-steps (seed 0), or why there is none.
struct RobustnessCost {
  RobustnessCellKey cell;
  std::string status = "ok";  // as RobustnessMeasure::status
  StepCost full, fo;
};

struct RobustnessRaw {
  std::vector<RobustnessMeasure> measures;
  std::vector<RobustnessCost> costs;
};

// Every cell of the configuration (backends resolved to the device's), in the order of the files.
std::vector<RobustnessCellKey> robustness_cells(const RobustnessConfig& config);

// Runs every unit, reading back the ones a previous run with the same configuration left in parts_dir; `shard`
// splits the units between processes (output/resume.h).
// comm: the ranks of a torchrun launch share the measures; rank 0 times the costs (output/resume.h).
RobustnessRaw run_robustness(const RobustnessConfig& config, const std::filesystem::path& parts_dir, Shard shard = {},
                             const Communicator* comm = nullptr);

// The configuration as the files record it (also the fingerprint of the resumable parts).
Json robustness_config_json(const RobustnessConfig& config);

}  // namespace theria::lab
