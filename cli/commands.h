// Subcommands of the `theria` program. Each adds its options to its own CLI11 subcommand (so that
// `--help` is generated from them) and returns the function that runs it once the command line is
// parsed; that function returns the process exit status.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace theria::cli {

using Run = std::function<int()>;

Run add_verify(CLI::App& command);
Run add_bench(CLI::App& command);
Run add_maml(CLI::App& command);
Run add_study(CLI::App& command);
Run add_contract(CLI::App& command);

// The command line of this process, as typed ("theria study taxonomy --quick --out out/t"): the files
// that a command writes record it.
const std::string& command_line();

}  // namespace theria::cli
