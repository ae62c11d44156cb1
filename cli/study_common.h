// `theria study <name>`: the lab's studies (docs/taxonomy.md, docs/sweep.md). Each is run by the lab (lab/studies),
// resumes from the parts a previous run left in --out, shows a progress bar with an ETA, and writes its JSON, CSV,
// Markdown and figure into --out. One file per study; this header holds what they share.
#pragma once

#include "commands.h"
#include "plot_script.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace theria::cli {

Run add_taxonomy(CLI::App& command);
Run add_sweep(CLI::App& command);
Run add_metagrad(CLI::App& command);

// "float64", "bfloat16", "float16"; anything else float32 (CLI11 has checked the name).
at::ScalarType parse_dtype(const std::string& name);
// The device a study runs on, with the check that it exists.
at::Device study_device(const std::string& name);
// The GPU's name, or "cpu".
std::string device_name(const at::Device& device);

}  // namespace theria::cli
