// `theria`: the command-line program. One table of subcommands, one parser (CLI11) that generates
// every `--help`; a subcommand's failure is reported as one line and a non-zero exit status.
#include "commands.h"

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <string>

namespace {

struct Command {
  const char* name;
  const char* help;
  theria::cli::Run (*add)(CLI::App&);
};

constexpr Command kCommands[] = {
    {"verify", "check forward, backward, JVP, double backward and third order of every backend against the "
               "float64 reference; non-zero exit on a failure",
     theria::cli::add_verify},
    {"maml", "meta-train the lab transformer with MAML through theria attention; curve, summary, plot",
     theria::cli::add_maml},
    {"study", "run a study of the meta-learning lab (taxonomy) and write its JSON, CSV, Markdown and figure",
     theria::cli::add_study},
    {"bench", "time the fused backend against PyTorch's SDPA (flash, math) in one run (CUDA)", theria::cli::add_bench},
    {"contract", "the SDPA meta-learning safety contract: run (or reuse) every study, judge every claim, write "
                 "contract.json and index.html",
     theria::cli::add_contract},
};

// Exit status of a command line that does not parse, as before CLI11 (scripts test for non-zero).
constexpr int kUsageError = 2;

std::string g_command_line;

}  // namespace

const std::string& theria::cli::command_line() { return g_command_line; }

int main(int argc, char** argv) {
  g_command_line = "theria";
  for (int i = 1; i < argc; ++i) g_command_line += std::string(" ") + argv[i];
  CLI::App app{"theria: scaled-dot-product attention with explicit derivatives", "theria"};
  app.require_subcommand(1);
  app.footer("`theria <command> --help` shows the command's options.");
  std::map<const CLI::App*, theria::cli::Run> runs;
  for (const auto& c : kCommands) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    sub->footer("");  // a subcommand inherits the program's footer otherwise
    runs[sub] = c.add(*sub);
  }
  if (argc < 2) {
    std::fprintf(stderr, "%s", app.help().c_str());
    return kUsageError;
  }
  const bool known = std::any_of(std::begin(kCommands), std::end(kCommands),
                                 [&](const Command& c) { return std::strcmp(argv[1], c.name) == 0; });
  if (argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "theria: unknown command '%s'\n\n%s", argv[1], app.help().c_str());
    return kUsageError;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);  // prints --help, or the error and a hint
    return status == 0 ? 0 : kUsageError;
  }
  const CLI::App* chosen = app.get_subcommands().front();
  try {
    return runs.at(chosen)();
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "theria %s: %s\n", chosen->get_name().c_str(), e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "theria %s: %s\n", chosen->get_name().c_str(), e.what());
    return 1;
  }
}
