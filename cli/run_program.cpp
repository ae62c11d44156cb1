#include "run_program.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace theria::cli {

std::string executable_path() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.string();
}

std::string ProgramExit::describe() const {
  if (!started) return "could not start: " + error;
  if (signal != 0) return "killed by signal " + std::to_string(signal);
  return "exit status " + std::to_string(exit_status);
}

namespace {

// Starts argv; on success r.started is set and pid names the child.
ProgramExit start(const std::vector<std::string>& argv, pid_t& pid) {
  ProgramExit r;
  if (argv.empty()) {
    r.error = "no program given";
    return r;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // posix_spawnp reports a program that cannot be executed (ENOENT, EACCES) as its return value.
  const int err = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (err != 0) {
    r.error = argv[0] + ": " + std::strerror(err);
    return r;
  }
  r.started = true;
  return r;
}

void wait_for(pid_t pid, ProgramExit& r) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      r.error = std::string("waitpid: ") + std::strerror(errno);
      r.started = false;
      return;
    }
  }
  if (WIFEXITED(status)) r.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
}

}  // namespace

std::vector<ProgramExit> run_programs(const std::vector<std::vector<std::string>>& argvs) {
  std::vector<ProgramExit> exits;
  std::vector<pid_t> pids(argvs.size(), 0);
  for (size_t i = 0; i < argvs.size(); ++i) exits.push_back(start(argvs[i], pids[i]));
  for (size_t i = 0; i < argvs.size(); ++i) {
    if (exits[i].started) wait_for(pids[i], exits[i]);
  }
  return exits;
}

ProgramExit run_program(const std::vector<std::string>& argv) { return run_programs({argv}).front(); }

}  // namespace theria::cli
