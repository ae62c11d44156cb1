// The task-family options of the lab's commands (`theria maml`, and any study that meta-trains): --task, each
// family's knobs and --smeared-keys (docs/tasks.md), declared once so that every command reads them alike.
#pragma once

#include "model/transformer.h"
#include "tasks/task_family.h"

#include <cmath>
#include <vector>

namespace CLI {
class App;
}

namespace theria::cli {

// What the options hold that TaskConfig keeps otherwise: the sinusoid's ranges, given as MIN,MAX; whether --seq-len
// was given (mqar's T is 2 x --pairs unless it was).
struct TaskRanges {
  std::vector<double> amplitude{0.1, 5.0}, phase{0.0, M_PI}, inputs{-5.0, 5.0};
  bool seq_len_given = false;
};

void add_task_options(CLI::App& command, lab::TaskConfig& tasks, lab::ModelConfig& model, TaskRanges& ranges);

// After parsing: the ranges into `tasks`, the family's checks of its knobs (an error names the knob), and `model`
// fitted to the family's examples (sequence length, vocabulary, inputs, head, loss).
void apply_task_options(const TaskRanges& ranges, lab::TaskConfig& tasks, lab::ModelConfig& model, uint64_t seed);

}  // namespace theria::cli
