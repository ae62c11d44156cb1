#include "output/task_json.h"

namespace theria::lab {

Json task_json(const TaskFamily& family) {
  Json j{{"family", family.name()}, {"metric", family.io().metric()}};
  for (const auto& k : family.knobs()) j[k.name] = k.integral ? Json(static_cast<int64_t>(k.value)) : Json(k.value);
  return j;
}

}  // namespace theria::lab
