// The taxonomy's results as JSON: the resumable units (nlohmann to_json / from_json, found by ADL) and
// the rows of the table. Non-finite numbers are null, with the reason in a status field beside them.
#pragma once

#include "output/json_file.h"
#include "studies/taxonomy.h"
#include "studies/taxonomy_rules.h"

namespace theria::lab {

void to_json(Json& j, const TaxonomyCell& c);
void from_json(const Json& j, TaxonomyCell& c);
void to_json(Json& j, const TaxonomyTraining& t);
void from_json(const Json& j, TaxonomyTraining& t);
void to_json(Json& j, const TaxonomyRelDiff& r);
void from_json(const Json& j, TaxonomyRelDiff& r);
void to_json(Json& j, const TaxonomyCost& c);
void from_json(const Json& j, TaxonomyCost& c);

Json interval_json(const Interval& i);  // {"mean", "low", "high", "n", "non_finite"}
Json row_json(const TaxonomyRow& row);

}  // namespace theria::lab
