// `theria`: the command-line program. `theria verify` checks every backend and derivative order
// against the float64 reference.
#include "commands.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

namespace {

struct Command {
  std::function<int(const theria::cli::Args&)> run;
  const char* help;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table{
      {"verify", {theria::cli::verify,
                  "check forward, backward, JVP, double backward and third order of every backend\n"
                  "            against the float64 reference; non-zero exit on a failure"}},
      {"maml", {theria::cli::maml,
                "meta-train the lab transformer with MAML through theria attention; curve, summary, plot"}},
      {"bench", {theria::cli::bench,
                 "time the fused backend against PyTorch's SDPA (flash, math) in one run (CUDA)"}},
  };
  return table;
}

void usage() {
  std::printf("usage: theria <command> [options]\n\ncommands:\n");
  for (const auto& [name, cmd] : commands()) std::printf("  %-9s %s\n", name.c_str(), cmd.help);
  std::printf("\n`theria <command> --help` shows the command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const auto it = commands().find(argv[1]);
  if (it == commands().end()) {
    std::fprintf(stderr, "theria: unknown command '%s'\n\n", argv[1]);
    usage();
    return 2;
  }
  try {
    return it->second.run(theria::cli::Args(argv + 2, argv + argc));
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "theria %s: %s\n", argv[1], e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "theria %s: %s\n", argv[1], e.what());
    return 1;
  }
}
