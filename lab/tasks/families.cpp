#include "tasks/families.h"

#include <c10/util/Exception.h>

namespace theria::lab {

const std::vector<std::string>& task_family_names() {
  static const std::vector<std::string> names{"position_recall", "mqar", "induction", "sinusoid"};
  return names;
}

std::unique_ptr<TaskFamily> make_task_family(const TaskConfig& config, uint64_t seed) {
  if (config.family == "position_recall") return std::make_unique<PositionRecallTasks>(config, seed);
  if (config.family == "mqar") return std::make_unique<MqarTasks>(config, seed);
  if (config.family == "induction") return std::make_unique<InductionTasks>(config, seed);
  if (config.family == "sinusoid") return std::make_unique<SinusoidTasks>(config, seed);
  TORCH_CHECK(false, "unknown task family '", config.family,
              "': expected position_recall, mqar, induction or sinusoid");
}

}  // namespace theria::lab
