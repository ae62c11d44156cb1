#include "plot_script.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace theria::cli {
namespace {

std::string executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

}  // namespace

std::string plotting_python() {
  if (const char* env = std::getenv("THERIA_PYTHON")) return env;
  std::ifstream recorded(executable_dir() + "/python");
  std::string path;
  if (recorded && std::getline(recorded, path) && !path.empty()) return path;
  return "python3";
}

PlotOutcome run_plot_script(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv{plotting_python(), std::string(THERIA_SOURCE_DIR "/scripts/") + script};
  argv.insert(argv.end(), args.begin(), args.end());
  PlotOutcome p;
  p.exit = run_program(argv);
  p.status = p.exit->ok() ? "written" : "failed: " + argv[0] + " " + argv[1] + ": " + p.exit->describe();
  return p;
}

}  // namespace theria::cli
