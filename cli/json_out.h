// The `theria` program writes its JSON through the lab's writer (lab/output/json_file.h).
#pragma once

#include "output/json_file.h"

namespace theria::cli {
using lab::finite_status;
using lab::Json;
using lab::number_or_null;
using lab::write_json;
}  // namespace theria::cli
