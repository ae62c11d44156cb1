// The sweep's results as JSON: the resumable units (to_json / from_json, found by ADL) and the summary's rows.
#pragma once

#include "output/json_file.h"
#include "studies/sweep.h"
#include "studies/sweep_rules.h"

namespace theria::lab {

void to_json(Json& j, const SweepCell& c);
void from_json(const Json& j, SweepCell& c);
void to_json(Json& j, const SweepCost& c);
void from_json(const Json& j, SweepCost& c);
Json lr_choice_json(const LrChoice& c);
Json summary_json(const SweepSummary& s);

}  // namespace theria::lab
