#include "plot_script.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace theria::cli {
namespace {

std::string executable_dir() {
  const std::string exe = executable_path();
  return exe.empty() ? std::string(".") : std::filesystem::path(exe).parent_path().string();
}

}  // namespace

std::string plotting_python() {
  if (const char* env = std::getenv("THERIA_PYTHON")) return env;
  std::ifstream recorded(executable_dir() + "/python");
  std::string path;
  if (recorded && std::getline(recorded, path) && !path.empty()) return path;
  return "python3";
}

// The plotting scripts: beside the program in an installed package (theria/bin/../scripts), else in the sources.
std::string script_path(const std::string& script) {
  const auto installed = std::filesystem::path(executable_dir()) / ".." / "scripts" / script;
  std::error_code ec;
  if (std::filesystem::is_regular_file(installed, ec)) return installed.string();
  return std::string(THERIA_SOURCE_DIR "/scripts/") + script;
}

PlotOutcome run_plot_script(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv{plotting_python(), script_path(script)};
  argv.insert(argv.end(), args.begin(), args.end());
  PlotOutcome p;
  p.exit = run_program(argv);
  p.status = p.exit->ok() ? "written" : "failed: " + argv[0] + " " + argv[1] + ": " + p.exit->describe();
  return p;
}

}  // namespace theria::cli
