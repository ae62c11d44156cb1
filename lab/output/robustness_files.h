// The robustness map's files: robustness.json (configuration, rules, rows, every raw measurement), robustness.csv
// (one line per cell) and robustness.md (the map a reader looks at, with the rules' thresholds).
#pragma once

#include "output/provenance.h"
#include "studies/robustness.h"
#include "studies/robustness_rules.h"

#include <string>
#include <vector>

namespace theria::lab {

void write_robustness_files(const std::string& dir, const RobustnessConfig& config, const RobustnessRaw& raw,
                            const std::vector<RobustnessRow>& rows, const StudyProvenance& provenance);

// The Markdown table alone (also printed by `theria study robustness`).
std::string robustness_markdown_table(const std::vector<RobustnessRow>& rows);

}  // namespace theria::lab
