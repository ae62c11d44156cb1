// The estimator comparison's results as JSON (resumable cells; to_json / from_json found by ADL) and its files:
// metagrad.json (configuration, every cell, every training run, the accuracy summary), metagrad.csv (mean over
// seeds per estimator and depth) and metagrad.md (both tables).
#pragma once

#include "output/json_file.h"
#include "output/provenance.h"
#include "studies/metagrad.h"

#include <string>
#include <vector>

namespace theria::lab {

void to_json(Json& j, const MetagradCell& c);
void from_json(const Json& j, MetagradCell& c);
void to_json(Json& j, const MetagradTraining& r);
void from_json(const Json& j, MetagradTraining& r);

void write_metagrad_files(const std::string& dir, const MetagradConfig& config, const MetagradRaw& raw,
                          const StudyProvenance& provenance);
std::string metagrad_markdown(const MetagradConfig& config, const MetagradRaw& raw);

}  // namespace theria::lab
