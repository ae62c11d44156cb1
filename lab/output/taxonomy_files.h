// The taxonomy's files: taxonomy.json (configuration, rules, rows, every raw measurement), taxonomy.csv (one
// line per variant and mode) and taxonomy.md (the table a reader looks at, with the rules' thresholds).
#pragma once

#include "output/provenance.h"
#include "studies/taxonomy.h"
#include "studies/taxonomy_rules.h"

#include <string>
#include <vector>

namespace theria::lab {


void write_taxonomy_files(const std::string& dir, const TaxonomyConfig& config, const TaxonomyRaw& raw,
                          const std::vector<TaxonomyRow>& rows, const StudyProvenance& provenance);

// The Markdown table alone (also printed by `theria study taxonomy`).
std::string taxonomy_markdown_table(const std::vector<TaxonomyRow>& rows);

}  // namespace theria::lab
