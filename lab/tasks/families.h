// Every task family of the lab, and the one place that makes a family from its name (docs/tasks.md).
#pragma once

#include "tasks/induction.h"
#include "tasks/mqar.h"
#include "tasks/position_recall.h"
#include "tasks/sinusoid.h"

#include <memory>
#include <string>
#include <vector>

namespace theria::lab {

// The family named config.family, with `seed`: the same (config, seed) makes the same tasks.
std::unique_ptr<TaskFamily> make_task_family(const TaskConfig& config, uint64_t seed);

// The names make_task_family accepts.
const std::vector<std::string>& task_family_names();

}  // namespace theria::lab
