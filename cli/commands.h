// Subcommands of the `theria` program. Each takes the arguments after its name and returns the
// process exit status.
#pragma once

#include <string>
#include <vector>

namespace theria::cli {

using Args = std::vector<std::string>;

int verify(const Args& args);
int bench(const Args& args);
int maml(const Args& args);

}  // namespace theria::cli
