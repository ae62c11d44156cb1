// The sweep's files: sweep.json (configuration, chosen inner lrs, rows, gaps, trends, every raw cell with its
// curve), sweep.csv (one line per backend, depth and mode) and sweep.md (the tables a reader looks at).
#pragma once

#include "output/provenance.h"
#include "studies/sweep.h"
#include "studies/sweep_rules.h"

#include <string>

namespace theria::lab {

void write_sweep_files(const std::string& dir, const SweepConfig& config, const SweepRaw& raw,
                       const SweepSummary& summary, const StudyProvenance& provenance);
std::string sweep_markdown(const SweepSummary& summary);

}  // namespace theria::lab
