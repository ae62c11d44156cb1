// A meta-training run's state as JSON (to_json / from_json, found by ADL): what a checkpoint keeps of the run so far
// (train/checkpoint.h) and what the ranks of a distributed run tell each other about a divergence.
#pragma once

#include "output/json_file.h"
#include "train/trainer.h"

namespace theria::lab {

void to_json(Json& j, const Divergence& d);
void from_json(const Json& j, Divergence& d);
void to_json(Json& j, const Evaluation& e);
void from_json(const Json& j, Evaluation& e);
void to_json(Json& j, const CurvePoint& p);
void from_json(const Json& j, CurvePoint& p);
void to_json(Json& j, const RunDivergence& d);
void from_json(const Json& j, RunDivergence& d);

}  // namespace theria::lab
