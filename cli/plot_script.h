// The plots of the `theria` program are drawn by Python scripts in scripts/ (matplotlib), started from an
// argument vector (run_program.h) with the Python that has matplotlib.
#pragma once

#include "run_program.h"

#include <optional>
#include <string>
#include <vector>

namespace theria::cli {

struct PlotOutcome {
  std::string status = "skipped (--no-plot)";  // or "written", or "failed: ..."
  std::optional<ProgramExit> exit;             // how the plotting program ended, when it was run
};

// THERIA_PYTHON, else the Python that scripts/setup.sh recorded beside the executable, else python3.
std::string plotting_python();

// Runs scripts/<script> with `args` and says how it went.
PlotOutcome run_plot_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace theria::cli
