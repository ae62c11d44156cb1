// The robustness map's results as JSON: the resumable units (nlohmann to_json / from_json, found by ADL) and the
// rows of the map. Non-finite numbers are null, with the reason in a status field beside them.
#pragma once

#include "output/json_file.h"
#include "studies/robustness.h"
#include "studies/robustness_rules.h"

namespace theria::lab {

void to_json(Json& j, const RobustnessCellKey& k);
void from_json(const Json& j, RobustnessCellKey& k);
void to_json(Json& j, const RobustnessMeasure& m);
void from_json(const Json& j, RobustnessMeasure& m);
void to_json(Json& j, const RobustnessCost& c);
void from_json(const Json& j, RobustnessCost& c);

Json row_json(const RobustnessRow& row);

}  // namespace theria::lab
