// The estimator comparison's results as JSON (resumable cells; to_json / from_json found by ADL) and its files:
// metagrad.json (configuration, every cell), metagrad.csv and metagrad.md (mean over seeds per estimator and depth).
#pragma once

#include "output/json_file.h"
#include "output/provenance.h"
#include "studies/metagrad.h"

#include <string>
#include <vector>

namespace theria::lab {

void to_json(Json& j, const MetagradCell& c);
void from_json(const Json& j, MetagradCell& c);

void write_metagrad_files(const std::string& dir, const MetagradConfig& config, const std::vector<MetagradCell>& cells,
                          const StudyProvenance& provenance);
std::string metagrad_markdown(const MetagradConfig& config, const std::vector<MetagradCell>& cells);

}  // namespace theria::lab
