// Runs a helper program (the plotting script) from an argument vector: no shell is involved, so a
// path with a space, a quote or a `;` is one argument and never shell text.
#pragma once

#include <string>
#include <vector>

namespace theria::cli {

struct ProgramExit {
  bool started = false;  // false: it could not be started (`error` says why)
  int exit_status = -1;  // its exit status when it exited normally
  int signal = 0;        // the signal that ended it, if one did
  std::string error;
  bool ok() const { return started && signal == 0 && exit_status == 0; }
  std::string describe() const;  // "exit status 0", "killed by signal 9", "could not start: ..."
};

// Starts argv[0] (searched in PATH when it has no '/') with arguments argv, waits for it, and
// returns how it ended. Its stdout and stderr are this process's.
ProgramExit run_program(const std::vector<std::string>& argv);

// Starts every argument vector at once, waits for all of them, and returns how each ended, in order (the shards of a
// study side by side: theria contract --shards).
std::vector<ProgramExit> run_programs(const std::vector<std::vector<std::string>>& argvs);

// This program's own path (/proc/self/exe), or "" when it cannot be read.
std::string executable_path();

}  // namespace theria::cli
