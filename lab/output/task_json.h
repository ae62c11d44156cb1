// The task family of a run as the studies' files record it: its name, its score's metric and its knobs.
#pragma once

#include "output/json_file.h"
#include "tasks/task_family.h"

namespace theria::lab {

// {"family": ..., "metric": "accuracy" | "r2", every knob (integers as integers)}.
Json task_json(const TaskFamily& family);

}  // namespace theria::lab
