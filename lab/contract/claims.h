// The claims of the SDPA meta-learning safety contract (docs/contract_report.md): every claim the research plan makes
// (Phases 11-15) and the operator's own, each judged by a written rule on the studies' JSON files. A verdict is
// `holds`, `fails` or `not supported by the data` (the data cannot decide, or the study was not run); nothing is
// typed by hand, and a claim the data contradicts is listed like any other.
#pragma once

#include "output/json_file.h"

#include <string>
#include <vector>

namespace theria::lab {

// The studies' result files a contract reads; each may hold several runs (e.g. the robustness map in three parts)
// or none (a study not run on this machine).
struct StudyRuns {
  Json json;         // the study's parsed file
  std::string path;  // where it was read from (the claim's evidence names it)
};
struct ContractInputs {
  std::vector<StudyRuns> verify, taxonomy, sweep, metagrad, robustness, bench;
};

struct Claim {
  std::string id;         // e.g. "robustness.float32_full_safe"
  std::string phase;      // "11 failure taxonomy", ..., "operator"
  std::string statement;  // what is claimed
  std::string rule;       // how the verdict is decided
  std::string verdict;    // holds / fails / not supported by the data
  std::string reason;     // the numbers behind the verdict, in a sentence
  Json evidence;          // {"files": [...], "numbers": {...}}
};

inline constexpr const char* kHolds = "holds";
inline constexpr const char* kFails = "fails";
inline constexpr const char* kNotSupported = "not supported by the data";

std::vector<Claim> contract_claims(const ContractInputs& inputs);

Json claim_json(const Claim& claim);

}  // namespace theria::lab
