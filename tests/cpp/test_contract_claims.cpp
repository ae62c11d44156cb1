// The contract's claims (lab/contract/claims.h) on constructed study files: each written rule gives `holds`, `fails`
// or `not supported by the data` from the numbers alone, a study that was not run leaves its claims unsupported, and
// every claim of the research plan is present.
#include "contract/claims.h"

#include <gtest/gtest.h>

#include <set>

namespace theria::lab {
namespace {

const Claim& find(const std::vector<Claim>& claims, const std::string& id) {
  for (const auto& c : claims) {
    if (c.id == id) return c;
  }
  throw std::runtime_error("no claim " + id);
}

Json interval(double mean, double low, double high, int64_t n) {
  return Json{{"mean", mean}, {"low", low}, {"high", high}, {"n", n}, {"non_finite", 0}};
}

Json robustness_row(int64_t t, const std::string& precision, const std::string& backend, bool runs, bool resolved,
                    double max_error, const std::string& verdict) {
  return Json{{"cell", {{"seq_len", t}, {"head_dim", 64}, {"precision", precision}, {"backend", backend}}},
              {"runs", runs},
              {"resolves_second_order", resolved},
              {"max_error_full", max_error},
              {"error_fo", interval(1.0, 0.9, 1.1, 3)},
              {"tolerance", 0.1},
              {"cost_status", runs ? "ok" : "raises"},
              {"full_over_fo", 3.0},
              {"verdict", verdict}};
}

TEST(ContractClaims, EveryClaimOfTheResearchPlanIsJudgedAndNothingRunMeansNotSupported) {
  const auto claims = contract_claims({});
  std::set<std::string> ids;
  for (const auto& c : claims) {
    ids.insert(c.id);
    EXPECT_EQ(c.verdict, kNotSupported) << c.id;
    EXPECT_NE(c.reason.find("was not run"), std::string::npos) << c.id;
    EXPECT_FALSE(c.rule.empty() || c.statement.empty() || c.phase.empty()) << c.id;
  }
  EXPECT_EQ(ids.size(), claims.size());
  for (const char* id : {"taxonomy.detach_is_unsafe", "taxonomy.frozen_statistics_are_conditional",
                         "taxonomy.exact_attention_is_safe", "signal.depth_brings_accuracy_gains",
                         "abstraction.operator_level_not_unrolling", "robustness.float32_full_safe",
                         "timing.full_step_at_most_4x_fo", "operator.verify_passes"}) {
    EXPECT_TRUE(ids.count(id)) << id;
  }
}

TEST(ContractClaims, TaxonomyVerdictsAgainstThePlansExpectations) {
  ContractInputs in;
  in.taxonomy.push_back({Json{{"rows",
                               {{{"variant", "exact"}, {"mode", "full"}, {"verdict", "safe"}, {"detector", "passes"}},
                                {{"variant", "detach_attention_output"}, {"mode", "full"}, {"verdict", "unsafe"},
                                 {"detector", "flagged"}},
                                {{"variant", "no_grad_attention"}, {"mode", "full"}, {"verdict", "unsafe"},
                                 {"detector", "flagged in 2 of 3 seeds"}},
                                {{"variant", "stats_detach"}, {"mode", "full"}, {"verdict", "unsafe"},
                                 {"detector", "flagged"}},
                                {{"variant", "stats_detach"}, {"mode", "fo"}, {"verdict", "first order by design"}}}}},
                         "t/taxonomy.json"});
  const auto claims = contract_claims(in);
  EXPECT_EQ(find(claims, "taxonomy.exact_attention_is_safe").verdict, kHolds);
  EXPECT_EQ(find(claims, "taxonomy.detach_is_unsafe").verdict, kHolds);
  const auto& frozen = find(claims, "taxonomy.frozen_statistics_are_conditional");
  EXPECT_EQ(frozen.verdict, kFails);  // the data contradicts the plan: listed like any other claim
  EXPECT_NE(frozen.reason.find("stats_detach is unsafe"), std::string::npos);
  const auto& detector = find(claims, "taxonomy.detector_flags_every_broken_pattern");
  EXPECT_EQ(detector.verdict, kFails);
  EXPECT_NE(detector.reason.find("no_grad_attention"), std::string::npos);
  EXPECT_EQ(frozen.evidence.at("files").at(0), "t/taxonomy.json");
}

Json sweep_run(const std::string& trend, const std::string& regime) {
  return Json{{"config", {{"task", {{"family", "induction"}}}}},
              {"summary",
               {{"trends", {{{"versus", "fo"}, {"verdict", trend}, {"gap_change", interval(0.1, -0.1, 0.3, 5)}}}},
                {"gaps",
                 {{{"versus", "fo"}, {"inner_steps", 1}, {"regime", regime},
                   {"full_minus_versus_final_accuracy", interval(0.4, 0.2, 0.6, 5)}}}}}}};
}

TEST(ContractClaims, DepthClaimNeedsAGrowingGapAndANoChangeIsNotSupport) {
  ContractInputs in;
  in.sweep.push_back({sweep_run("gap grows with depth", "FULL better"), "a/sweep.json"});
  EXPECT_EQ(find(contract_claims(in), "signal.depth_brings_accuracy_gains").verdict, kHolds);
  EXPECT_EQ(find(contract_claims(in), "signal.full_beats_fo_at_some_depth").verdict, kHolds);
  in.sweep.push_back({sweep_run("no change detected", "no difference detected"), "b/sweep.json"});
  EXPECT_EQ(find(contract_claims(in), "signal.depth_brings_accuracy_gains").verdict, kNotSupported);
  in.sweep.push_back({sweep_run("gap shrinks with depth", "FO better"), "c/sweep.json"});
  EXPECT_EQ(find(contract_claims(in), "signal.depth_brings_accuracy_gains").verdict, kFails);
  EXPECT_EQ(find(contract_claims(in), "signal.full_beats_fo_at_some_depth").verdict, kHolds);  // one run suffices
}

TEST(ContractClaims, ImplicitNonInferiorityAndMemory) {
  ContractInputs in;
  Json run{{"accuracy", {{{"estimator", "unrolled"}, {"minus_reference", interval(0, 0, 0, 5)}},
                         {{"estimator", "implicit:lambda=2"}, {"minus_reference", interval(-0.01, -0.04, 0.02, 5)}}}},
           {"cells",
            {{{"estimator", "unrolled"}, {"inner_steps", 1}, {"seed", 0}, {"status", "ok"}, {"peak_mib", 100.0}},
             {{"estimator", "unrolled"}, {"inner_steps", 100}, {"seed", 0}, {"status", "ok"}, {"peak_mib", 900.0}},
             {{"estimator", "implicit:lambda=2"}, {"inner_steps", 1}, {"seed", 0}, {"status", "ok"},
              {"peak_mib", 120.0}, {"hvp_attention_nodes", {"theria::SdpaBwdBackward"}}},
             {{"estimator", "implicit:lambda=2"}, {"inner_steps", 100}, {"seed", 0}, {"status", "ok"},
              {"peak_mib", 125.0}, {"hvp_attention_nodes", {"theria::SdpaBwdBackward"}}}}}};
  in.metagrad.push_back({run, "m/metagrad.json"});
  auto claims = contract_claims(in);
  EXPECT_EQ(find(claims, "abstraction.operator_level_not_unrolling").verdict, kHolds);
  EXPECT_EQ(find(claims, "abstraction.implicit_memory_is_flat").verdict, kHolds);
  EXPECT_EQ(find(claims, "abstraction.hvp_through_attention_double_backward").verdict, kHolds);
  // An interval reaching below the margin decides nothing; one entirely below 0 contradicts the claim.
  in.metagrad[0].json["accuracy"][1]["minus_reference"] = interval(-0.05, -0.2, 0.1, 5);
  EXPECT_EQ(find(contract_claims(in), "abstraction.operator_level_not_unrolling").verdict, kNotSupported);
  in.metagrad[0].json["accuracy"][1]["minus_reference"] = interval(-0.3, -0.4, -0.2, 5);
  EXPECT_EQ(find(contract_claims(in), "abstraction.operator_level_not_unrolling").verdict, kFails);
  in.metagrad[0].json["cells"][3]["peak_mib"] = 400.0;  // implicit's memory grew 3.3x
  EXPECT_EQ(find(contract_claims(in), "abstraction.implicit_memory_is_flat").verdict, kFails);
}

TEST(ContractClaims, RobustnessClaimsFromTheRows) {
  ContractInputs in;
  Json rows = Json::array({robustness_row(256, "float32", "fused", true, true, 1e-5, "FULL safe"),
                           robustness_row(256, "float32", "pytorch_math", true, true, 1e-5, "FULL safe"),
                           robustness_row(256, "bfloat16", "fused", true, false, 1.2, "inaccurate (error 1.2 > 0.1)"),
                           robustness_row(256, "bfloat16", "pytorch_math", true, false, 0.5, "inaccurate"),
                           robustness_row(256, "attention_bfloat16", "fused", true, true, 0.05, "FULL safe"),
                           robustness_row(256, "bfloat16", "pytorch_flash", false, false, NAN, "FULL raises")});
  in.robustness.push_back({Json{{"rows", rows}}, "r/robustness.json"});
  const auto claims = contract_claims(in);
  EXPECT_EQ(find(claims, "robustness.float32_full_safe").verdict, kHolds);
  const auto& sixteen = find(claims, "robustness.sixteen_bit_resolves_second_order");
  EXPECT_EQ(sixteen.verdict, kFails);
  EXPECT_NE(sixteen.reason.find("T256 D64 bfloat16 fused"), std::string::npos);
  EXPECT_EQ(find(claims, "robustness.attention_double_backward_16bit_trustworthy").verdict, kHolds);
  EXPECT_EQ(find(claims, "robustness.pytorch_flash_cannot_serve_full_maml").verdict, kHolds);
  // fused 1.2 against math 0.5: more than twice, and above the tolerance
  EXPECT_EQ(find(claims, "robustness.fused_as_accurate_as_pytorch_math").verdict, kFails);
  EXPECT_EQ(find(claims, "timing.full_step_at_most_4x_fo").verdict, kHolds);
}

TEST(ContractClaims, OperatorAndBench) {
  ContractInputs in;
  in.verify.push_back({Json::array({{{"device", "cpu"}, {"backend", "explicit"}, {"derivative", "jvp"},
                                     {"dtype", "float32"}, {"pass", true}},
                                    {{"device", "cpu"}, {"backend", "explicit"}, {"derivative", "third order"},
                                     {"dtype", "bfloat16"}, {"pass", false}}}),
                       "v/verify.json"});
  in.bench.push_back({Json{{"results", {{{"mode", "hvp"}, {"impl", "theria"}, {"vs_math", 8.7}, {"batch", 8},
                                         {"heads", 16}, {"len", 2048}, {"dim", 64}},
                                        {{"mode", "hvp"}, {"impl", "math"}, {"vs_math", 1.0}, {"batch", 8},
                                         {"heads", 16}, {"len", 2048}, {"dim", 64}}}}},
                      "b/bench.json"});
  const auto claims = contract_claims(in);
  EXPECT_EQ(find(claims, "operator.verify_passes").verdict, kFails);
  EXPECT_EQ(find(claims, "timing.fused_hvp_faster_than_pytorch_math").verdict, kHolds);
}

}  // namespace
}  // namespace theria::lab
