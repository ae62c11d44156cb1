#include "task_options.h"

#include "tasks/families.h"

#include <CLI/CLI.hpp>

namespace theria::cli {

void add_task_options(CLI::App& command, lab::TaskConfig& tasks, lab::ModelConfig& model, TaskRanges& ranges) {
  auto opt = [&](const char* name, auto& value, const char* help) {
    return command.add_option(name, value, help)->capture_default_str();
  };
  auto count = [&](const char* name, int64_t& value, const char* help) {
    return opt(name, value, help)->check(CLI::PositiveNumber);
  };
  auto range = [&](const char* name, std::vector<double>& value, const char* help) {
    opt(name, value, help)->delimiter(',')->expected(2)->type_name("MIN,MAX");
  };
  opt("--task", tasks.family, "task family (docs/tasks.md)")->check(CLI::IsMember(lab::task_family_names()));
  count("--seq-len", tasks.seq_len,
        "sequence length T (mqar: even, default 2 x --pairs; a longer T pads the pairs' slots out to T)")
      ->each([&ranges](const std::string&) { ranges.seq_len_given = true; });
  count("--classes", tasks.classes, "position_recall: classes C (divides T)");
  count("--keys", tasks.keys, "mqar: key tokens");
  count("--values", tasks.values, "mqar: value tokens (the classes)");
  count("--pairs", tasks.pairs, "mqar: key-value pairs per sequence");
  count("--markers", tasks.markers, "induction: marker tokens (trigger candidates), each twice per sequence");
  count("--fillers", tasks.fillers, "induction: filler tokens (the classes)");
  range("--amplitude", ranges.amplitude, "sinusoid: range of the amplitude A");
  range("--phase", ranges.phase, "sinusoid: range of the phase phi");
  range("--inputs", ranges.inputs, "sinusoid: range of every input x_t");
  count("--support", tasks.support, "support examples per task");
  count("--query", tasks.query, "query examples per task");
  command.add_flag("--smeared-keys", model.smeared_keys,
                   "mix each key with the previous position's (Olsson et al. 2022): one block can then read the "
                   "token after a matched one (mqar, induction; docs/tasks.md)");
}

void apply_task_options(const TaskRanges& ranges, lab::TaskConfig& tasks, lab::ModelConfig& model, uint64_t seed) {
  tasks.amplitude_min = ranges.amplitude[0], tasks.amplitude_max = ranges.amplitude[1];
  tasks.phase_min = ranges.phase[0], tasks.phase_max = ranges.phase[1];
  tasks.input_min = ranges.inputs[0], tasks.input_max = ranges.inputs[1];
  if (tasks.family == "mqar" && !ranges.seq_len_given) tasks.seq_len = 2 * tasks.pairs;
  model = lab::fit_model_to(model, lab::make_task_family(tasks, seed)->io());
}

}  // namespace theria::cli
