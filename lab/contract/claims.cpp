#include "contract/claims.h"

#include "output/format.h"
#include "studies/robustness_rules.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

namespace theria::lab {
namespace {

Json files_of(const std::vector<StudyRuns>& runs) {
  Json f = Json::array();
  for (const auto& r : runs) f.push_back(r.path);
  return f;
}

// Every element of `key` (an array) over the runs, each with the index of its run.
std::vector<Json> all(const std::vector<StudyRuns>& runs, const char* key) {
  std::vector<Json> out;
  for (const auto& r : runs) {
    if (r.json.is_object() && r.json.contains(key)) {
      for (const auto& x : r.json.at(key)) out.push_back(x);
    }
  }
  return out;
}

std::string str(const Json& j, const char* key) {
  return j.contains(key) && j.at(key).is_string() ? j.at(key).get<std::string>() : "";
}

double num(const Json& j, const char* key) { return j.contains(key) ? number_from(j.at(key)) : std::nan(""); }

std::string join(const std::vector<std::string>& xs, const std::string& sep = "; ") {
  std::string s;
  for (size_t i = 0; i < xs.size(); ++i) s += (i ? sep : "") + xs[i];
  return s;
}

Claim make(const char* id, const char* phase, const char* statement, const char* rule) {
  Claim c;
  c.id = id;
  c.phase = phase;
  c.statement = statement;
  c.rule = rule;
  c.evidence = Json{{"files", Json::array()}, {"numbers", Json::object()}};
  return c;
}

Claim not_run(Claim c, const char* study) {
  c.verdict = kNotSupported;
  c.reason = std::string("the ") + study + " study was not run (or has no result file) on this machine";
  return c;
}

// ---- Phase 11: the failure taxonomy (taxonomy.json rows; FULL rows are what a user believes they run).

std::vector<Json> full_rows(const std::vector<StudyRuns>& taxonomy) {
  std::vector<Json> rows;
  for (const auto& r : all(taxonomy, "rows")) {
    if (str(r, "mode") == "full") rows.push_back(r);
  }
  return rows;
}

Claim taxonomy_verdict_claim(const ContractInputs& in, const char* id, const char* statement,
                             const std::vector<std::string>& variants, const std::string& expected) {
  Claim c = make(id, "11 failure taxonomy", statement,
                 ("holds when the FULL row of every listed pattern in every taxonomy run has the verdict '" + expected +
                  "' (docs/taxonomy.md, rule V); fails when one has another verdict")
                     .c_str());
  if (in.taxonomy.empty()) return not_run(c, "taxonomy");
  c.evidence["files"] = files_of(in.taxonomy);
  std::vector<std::string> seen, off;
  for (const auto& r : full_rows(in.taxonomy)) {
    const auto v = str(r, "variant");
    if (std::find(variants.begin(), variants.end(), v) == variants.end()) continue;
    const auto verdict = str(r, "verdict");
    seen.push_back(v + ": " + verdict);
    c.evidence["numbers"][v + "_verdicts"].push_back(verdict);
    if (verdict != expected) off.push_back(v + " is " + verdict);
  }
  if (seen.empty()) {
    c.verdict = kNotSupported;
    c.reason = "no FULL row of " + join(variants, ", ") + " in the taxonomy runs";
  } else {
    c.verdict = off.empty() ? kHolds : kFails;
    c.reason = off.empty() ? join(seen) : join(off);
  }
  return c;
}

Claim detector_claim(const ContractInputs& in) {
  Claim c = make("taxonomy.detector_flags_every_broken_pattern", "11 failure taxonomy",
                 "theria's meta-gradient check (theria.check_meta_gradient) flags every attention pattern that silently "
                 "drops a derivative term and passes exact attention",
                 "holds when every broken pattern's FULL row says 'flagged' in every seed and exact's says 'passes'; "
                 "fails otherwise");
  if (in.taxonomy.empty()) return not_run(c, "taxonomy");
  c.evidence["files"] = files_of(in.taxonomy);
  std::vector<std::string> off;
  int64_t judged = 0;
  for (const auto& r : full_rows(in.taxonomy)) {
    if (!r.contains("detector")) continue;
    ++judged;
    const auto v = str(r, "variant"), d = str(r, "detector");
    c.evidence["numbers"][v].push_back(d);
    const bool ok = v == "exact" ? d == "passes" : d == "flagged";
    if (!ok) off.push_back(v + ": " + d);
  }
  if (judged == 0) {
    c.verdict = kNotSupported;
    c.reason = "the taxonomy runs predate the detector column";
  } else {
    c.verdict = off.empty() ? kHolds : kFails;
    c.reason = off.empty() ? std::to_string(judged) + " FULL rows: every broken pattern flagged, exact passes"
                           : join(off);
  }
  return c;
}

// ---- Phase 12: signal -> behaviour (sweep.json summary).

std::string family_of(const Json& sweep) {
  return sweep.contains("config") && sweep.at("config").contains("task") ? str(sweep.at("config").at("task"), "family")
                                                                         : std::string("?");
}

// "induction/fused (induction_T256_reference_fused)": a sweep row's family and backend, and the folder of its run
// (several runs of one family side by side are told apart).
std::string sweep_label(const StudyRuns& run, const Json& row) {
  const auto folder = std::filesystem::path(run.path).parent_path().filename().string();
  return family_of(run.json) + "/" + str(row, "backend") + " (" + folder + ")";
}

Claim depth_claim(const ContractInputs& in) {
  Claim c = make("signal.depth_brings_accuracy_gains", "12 signal -> behaviour",
                 "As inner depth increases, second-order signal -> measurable accuracy gains (the FULL - FO gap in "
                 "held-out accuracy grows with the inner depth)",
                 "per sweep run and comparison, rule T of docs/sweep.md on gap(deepest) - gap(shallowest), paired by "
                 "seed: holds when every one says 'gap grows with depth'; fails when one says 'gap shrinks with depth'; "
                 "otherwise not supported by the data");
  if (in.sweep.empty()) return not_run(c, "sweep");
  c.evidence["files"] = files_of(in.sweep);
  std::vector<std::string> seen;
  bool grows = true, shrinks = false;
  for (const auto& run : in.sweep) {
    for (const auto& t : run.json.at("summary").at("trends")) {
      const auto verdict = str(t, "verdict");
      const auto& change = t.at("gap_change");
      const auto what = sweep_label(run, t) + " vs " + str(t, "versus");
      seen.push_back(what + ": " + verdict + " (" + fmt(num(change, "mean")) + " [" + fmt(num(change, "low")) + ", " +
                     fmt(num(change, "high")) + "])");
      c.evidence["numbers"][what] = change;
      grows = grows && verdict == "gap grows with depth";
      shrinks = shrinks || verdict == "gap shrinks with depth";
    }
  }
  c.verdict = seen.empty() ? kNotSupported : shrinks ? kFails : grows ? kHolds : kNotSupported;
  c.reason = seen.empty() ? "no trend in the sweep runs" : join(seen);
  return c;
}

Claim full_beats_fo_claim(const ContractInputs& in) {
  Claim c = make("signal.full_beats_fo_at_some_depth", "12 signal -> behaviour",
                 "FULL (second-order) MAML reaches a higher held-out accuracy than first-order MAML at some inner depth",
                 "holds when some sweep run has a depth with the regime 'FULL better' (the paired interval of FULL - FO "
                 "above 0, rule G of docs/sweep.md); fails when none does and some depth is 'FO better'; otherwise not "
                 "supported by the data");
  if (in.sweep.empty()) return not_run(c, "sweep");
  c.evidence["files"] = files_of(in.sweep);
  std::vector<std::string> better, worse;
  int64_t n = 0;
  for (const auto& run : in.sweep) {
    for (const auto& gap : run.json.at("summary").at("gaps")) {
      if (str(gap, "versus") != "fo") continue;
      ++n;
      const auto& d = gap.at("full_minus_versus_final_accuracy");
      const int64_t diverged = d.value("non_finite", int64_t{0});
      const auto what = sweep_label(run, gap) + " at " + std::to_string(gap.at("inner_steps").get<int64_t>()) +
                        " steps: " + fmt(num(d, "mean")) + " [" + fmt(num(d, "low")) + ", " + fmt(num(d, "high")) + "]" +
                        (diverged > 0 ? " (" + std::to_string(diverged) + " seed(s) diverged, left out)" : "");
      if (str(gap, "regime") == "FULL better") better.push_back(what);
      if (str(gap, "regime") == "FO better") worse.push_back(what);
    }
  }
  c.evidence["numbers"]["full_better"] = better;
  c.evidence["numbers"]["fo_better"] = worse;
  c.verdict = !better.empty() ? kHolds : !worse.empty() ? kFails : kNotSupported;
  c.reason = !better.empty() ? "FULL better: " + join(better)
             : !worse.empty() ? "FO better: " + join(worse)
                              : std::to_string(n) + " paired comparisons, none outside 0";
  return c;
}

// ---- Phase 13: unrolling vs implicit differentiation (metagrad.json).

bool is_implicit(const std::string& spec) { return spec.rfind("implicit", 0) == 0; }

Claim implicit_memory_claim(const ContractInputs& in) {
  Claim c = make("abstraction.implicit_memory_is_flat", "13 unrolling vs implicit",
                 "An implicit meta-gradient (CG on Hessian-vector products through attention's double backward) keeps "
                 "memory flat as the inner loop deepens, where unrolled MAML's grows with the depth",
                 "over the metagrad runs' depths: holds when implicit's peak memory at the deepest depth it ran is at "
                 "most 1.5x its shallowest and unrolled's is at least 2x its own (or unrolled ran out of memory where "
                 "implicit did not); fails otherwise");
  if (in.metagrad.empty()) return not_run(c, "metagrad");
  c.evidence["files"] = files_of(in.metagrad);
  std::vector<std::string> seen;
  bool holds = true, any = false;
  for (const auto& run : in.metagrad) {
    struct Span {
      int64_t lo = -1, hi = -1;
      double lo_mib = 0, hi_mib = 0;
      bool oom = false;
    };
    std::map<std::string, Span> span;  // unrolled / implicit
    for (const auto& cell : run.json.at("cells")) {
      const auto spec = str(cell, "estimator");
      const std::string kind = spec == "unrolled" ? "unrolled" : is_implicit(spec) ? "implicit" : "";
      if (kind.empty() || cell.at("seed").get<int64_t>() != 0) continue;
      auto& s = span[kind];
      const auto depth = cell.at("inner_steps").get<int64_t>();
      if (str(cell, "status") == "out of memory") {
        s.oom = true;
        continue;
      }
      const double mib = num(cell, "peak_mib");
      if (!std::isfinite(mib)) continue;
      if (s.lo < 0 || depth < s.lo) s.lo = depth, s.lo_mib = mib;
      if (s.hi < 0 || depth > s.hi) s.hi = depth, s.hi_mib = mib;
    }
    if (!span.count("unrolled") || !span.count("implicit") || span["implicit"].lo < 0) continue;
    any = true;
    const auto& u = span["unrolled"];
    const auto& i = span["implicit"];
    const double ri = i.hi_mib / i.lo_mib, ru = u.lo >= 0 ? u.hi_mib / u.lo_mib : std::nan("");
    const bool ok = ri <= 1.5 && (ru >= 2.0 || (u.oom && !i.oom));
    holds = holds && ok;
    seen.push_back("implicit " + fmt(i.lo_mib) + " -> " + fmt(i.hi_mib) + " MiB (depth " + std::to_string(i.lo) + " -> " +
                   std::to_string(i.hi) + "), unrolled " + fmt(u.lo_mib) + " -> " + fmt(u.hi_mib) + " MiB (depth " +
                   std::to_string(u.lo) + " -> " + std::to_string(u.hi) + ")" + (u.oom ? ", then out of memory" : ""));
    c.evidence["numbers"][run.path] = Json{{"implicit_ratio", number_or_null(ri)}, {"unrolled_ratio", number_or_null(ru)},
                                           {"unrolled_out_of_memory", u.oom}};
  }
  c.verdict = !any ? kNotSupported : holds ? kHolds : kFails;
  c.reason = !any ? "no run measured both unrolled and implicit memory" : join(seen);
  return c;
}

Claim operator_level_claim(const ContractInputs& in) {
  Claim c = make("abstraction.operator_level_not_unrolling", "13 unrolling vs implicit",
                 "Higher-order meta-learning is an operator-level problem, not an unrolling-depth problem: meta-training "
                 "with the implicit meta-gradient (one operator-level linear solve) learns as well as with unrolled MAML",
                 "non-inferiority on held-out accuracy after meta-training, implicit minus unrolled paired by seed "
                 "(metagrad's training part): holds when the interval's lower end is above -0.05 for every implicit "
                 "estimator; fails when its upper end is below 0; otherwise (or with fewer than 3 finite pairs) not "
                 "supported by the data");
  if (in.metagrad.empty()) return not_run(c, "metagrad");
  c.evidence["files"] = files_of(in.metagrad);
  std::vector<std::string> seen;
  bool holds = true, fails = false, any = false;
  for (const auto& a : all(in.metagrad, "accuracy")) {
    const auto spec = str(a, "estimator");
    if (!is_implicit(spec)) continue;
    const auto& d = a.at("minus_reference");
    const auto n = d.at("n").get<int64_t>();
    any = true;
    const double lo = num(d, "low"), hi = num(d, "high");
    seen.push_back(spec + ": " + fmt(num(d, "mean")) + " [" + fmt(lo) + ", " + fmt(hi) + "], " + std::to_string(n) +
                   " finite pairs (" + std::to_string(d.at("non_finite").get<int64_t>()) + " not)");
    c.evidence["numbers"][spec] = d;
    if (n < 3) {
      holds = false;
      continue;
    }
    holds = holds && lo > -0.05;
    fails = fails || hi < 0.0;
  }
  c.verdict = !any ? kNotSupported : fails ? kFails : holds ? kHolds : kNotSupported;
  c.reason = !any ? "no implicit estimator was meta-trained" : join(seen);
  return c;
}

Claim hvp_path_claim(const ContractInputs& in) {
  Claim c = make("abstraction.hvp_through_attention_double_backward", "13 unrolling vs implicit",
                 "The implicit meta-gradient's Hessian-vector products go through attention's explicit double backward "
                 "(theria::SdpaBwdBackward on the explicit and fused backends; the softmax's on the reference "
                 "composition)",
                 "holds when every implicit cell that ran names an attention double-backward node; fails otherwise");
  if (in.metagrad.empty()) return not_run(c, "metagrad");
  c.evidence["files"] = files_of(in.metagrad);
  std::set<std::string> nodes;
  int64_t cells = 0, without = 0;
  for (const auto& cell : all(in.metagrad, "cells")) {
    // Every implicit cell that ran counts; a status about its oracle (not converged) does not change what ran.
    const auto status = str(cell, "status");
    if (!is_implicit(str(cell, "estimator")) || !cell.contains("hvp_attention_nodes") || status == "out of memory" ||
        status.rfind("raises", 0) == 0) {
      continue;
    }
    ++cells;
    const auto names = cell.at("hvp_attention_nodes").get<std::vector<std::string>>();
    if (names.empty()) ++without;
    nodes.insert(names.begin(), names.end());
  }
  c.evidence["numbers"]["cells"] = cells;
  c.evidence["numbers"]["nodes"] = std::vector<std::string>(nodes.begin(), nodes.end());
  c.verdict = cells == 0 ? kNotSupported : without == 0 ? kHolds : kFails;
  c.reason = cells == 0 ? "no implicit cell with recorded nodes"
                        : std::to_string(cells - without) + " of " + std::to_string(cells) + " implicit cells: " +
                              join(std::vector<std::string>(nodes.begin(), nodes.end()), ", ");
  return c;
}

// ---- Phase 14: the robustness map (robustness.json rows).

bool theria_backend(const std::string& b) { return b == "reference" || b == "explicit" || b == "fused"; }
bool sixteen_bit(const std::string& p) { return p != "float32" && p != "float64"; }
bool attention_only(const std::string& p) { return p.rfind("attention_", 0) == 0; }
std::string cell_name(const Json& row) {
  const auto& k = row.at("cell");
  return "T" + std::to_string(k.at("seq_len").get<int64_t>()) + " D" + std::to_string(k.at("head_dim").get<int64_t>()) +
         " " + str(k, "precision") + " " + str(k, "backend");
}

template <class Select, class Ok>
Claim over_rows(Claim c, const ContractInputs& in, Select select, Ok ok, const char* none) {
  if (in.robustness.empty()) return not_run(c, "robustness");
  c.evidence["files"] = files_of(in.robustness);
  std::vector<std::string> off;
  int64_t n = 0;
  for (const auto& r : all(in.robustness, "rows")) {
    if (!select(r)) continue;
    ++n;
    std::string why;
    if (!ok(r, why)) off.push_back(cell_name(r) + ": " + why);
  }
  c.evidence["numbers"]["cells"] = n;
  c.evidence["numbers"]["exceptions"] = off;
  c.verdict = n == 0 ? kNotSupported : off.empty() ? kHolds : kFails;
  c.reason = n == 0 ? none
             : off.empty() ? "all " + std::to_string(n) + " cells"
                           : std::to_string(off.size()) + " of " + std::to_string(n) + " cells do not: " + join(off);
  return c;
}

Claim float32_claim(const ContractInputs& in) {
  return over_rows(make("robustness.float32_full_safe", "14 robustness",
                        "In float32, FULL MAML through theria's attention works, is stable and practical at every "
                        "measured regime",
                        "holds when every float32 cell of theria's backends has a verdict starting 'FULL safe' "
                        "(docs/robustness.md, rule V); fails otherwise"),
                   in,
                   [](const Json& r) {
                     return str(r.at("cell"), "precision") == "float32" && theria_backend(str(r.at("cell"), "backend"));
                   },
                   [](const Json& r, std::string& why) {
                     why = str(r, "verdict");
                     return why.rfind("FULL safe", 0) == 0;
                   },
                   "no float32 cell of theria's backends");
}

Claim sixteen_bit_claim(const ContractInputs& in) {
  return over_rows(make("robustness.sixteen_bit_resolves_second_order", "14 robustness",
                        "In 16-bit precision (a bfloat16 or float16 model, or autocast), the FULL meta-gradient resolves "
                        "the second-order term at every measured regime",
                        "holds when every 16-bit whole-model or autocast cell of theria's backends that ran passes rule "
                        "T (FULL's error at most 0.5x FO's in every seed); fails otherwise"),
                   in,
                   [](const Json& r) {
                     const auto p = str(r.at("cell"), "precision");
                     return sixteen_bit(p) && !attention_only(p) && theria_backend(str(r.at("cell"), "backend")) &&
                            r.at("runs").get<bool>();
                   },
                   [](const Json& r, std::string& why) {
                     why = "FULL's largest error " + fmt(num(r, "max_error_full")) + ", FO's mean " +
                           fmt(num(r.at("error_fo"), "mean"));
                     return r.at("resolves_second_order").get<bool>();
                   },
                   "no 16-bit cell ran");
}

Claim attention_sixteen_bit_claim(const ContractInputs& in) {
  return over_rows(make("robustness.attention_double_backward_16bit_trustworthy", "14 robustness",
                        "Attention's own 16-bit double backward keeps the second-order signal: with the model in float32 "
                        "and attention alone in bfloat16 or float16, FULL resolves the second-order term at every "
                        "measured regime",
                        "holds when every attention-only cell of theria's backends passes rule T; fails otherwise"),
                   in,
                   [](const Json& r) {
                     return attention_only(str(r.at("cell"), "precision")) &&
                            theria_backend(str(r.at("cell"), "backend")) && r.at("runs").get<bool>();
                   },
                   [](const Json& r, std::string& why) {
                     why = "FULL's largest error " + fmt(num(r, "max_error_full"));
                     return r.at("resolves_second_order").get<bool>();
                   },
                   "no attention-only cell was measured");
}

Claim flash_claim(const ContractInputs& in) {
  return over_rows(make("robustness.pytorch_flash_cannot_serve_full_maml", "14 robustness",
                        "PyTorch's fused flash SDPA cannot serve FULL MAML: its backward has no derivative",
                        "holds when every pytorch_flash cell's verdict is 'FULL raises'; fails otherwise"),
                   in, [](const Json& r) { return str(r.at("cell"), "backend") == "pytorch_flash"; },
                   [](const Json& r, std::string& why) {
                     why = str(r, "verdict");
                     return why == "FULL raises";
                   },
                   "no pytorch_flash cell was measured");
}

Claim fused_accuracy_claim(const ContractInputs& in) {
  Claim c = make("robustness.fused_as_accurate_as_pytorch_math", "14 robustness",
                 "theria's fused kernels give a FULL meta-gradient as accurate as PyTorch's math SDPA in the same "
                 "precision",
                 "for every (run, T, D, precision) where both ran: fused's largest error over seeds is at most 2x PyTorch "
                 "math's, or both are within the dtype's tolerance; holds when every cell does, fails otherwise");
  if (in.robustness.empty()) return not_run(c, "robustness");
  c.evidence["files"] = files_of(in.robustness);
  std::vector<std::string> off;
  int64_t n = 0;
  for (size_t run = 0; run < in.robustness.size(); ++run) {
    std::map<std::string, std::pair<const Json*, const Json*>> pairs;  // fused, math
    for (const auto& r : in.robustness[run].json.at("rows")) {
      const auto& k = r.at("cell");
      const auto key = std::to_string(k.at("seq_len").get<int64_t>()) + "/" +
                       std::to_string(k.at("head_dim").get<int64_t>()) + "/" + str(k, "precision");
      if (str(k, "backend") == "fused") pairs[key].first = &r;
      if (str(k, "backend") == "pytorch_math") pairs[key].second = &r;
    }
    for (const auto& [key, p] : pairs) {
      if (p.first == nullptr || p.second == nullptr || !p.first->at("runs").get<bool>() ||
          !p.second->at("runs").get<bool>()) {
        continue;
      }
      ++n;
      const double f = num(*p.first, "max_error_full"), m = num(*p.second, "max_error_full");
      const double tol = num(*p.first, "tolerance");
      if (!(f <= 2.0 * m || (f <= tol && m <= tol))) off.push_back(cell_name(*p.first) + ": " + fmt(f) + " vs math " + fmt(m));
    }
  }
  c.evidence["numbers"]["cells"] = n;
  c.evidence["numbers"]["exceptions"] = off;
  c.verdict = n == 0 ? kNotSupported : off.empty() ? kHolds : kFails;
  c.reason = n == 0 ? "no cell with both fused and pytorch_math"
             : off.empty() ? "all " + std::to_string(n) + " cells"
                           : std::to_string(off.size()) + " of " + std::to_string(n) + " cells do not: " + join(off);
  return c;
}

// ---- Timing (Phase 10 / 15) and the operator.

Claim practical_claim(const ContractInputs& in) {
  return over_rows(make("timing.full_step_at_most_4x_fo", "15 timing",
                        "A FULL meta-step through theria's attention costs at most 4x an FO step (rule C)",
                        "holds when every cell of theria's backends whose cost was measured has FULL / FO <= 4; fails "
                        "otherwise"),
                   in,
                   [](const Json& r) {
                     return theria_backend(str(r.at("cell"), "backend")) && str(r, "cost_status") == "ok";
                   },
                   [](const Json& r, std::string& why) {
                     why = "FULL / FO = " + fmt(num(r, "full_over_fo"));
                     return num(r, "full_over_fo") <= kPracticalCostRatio;
                   },
                   "no cost was measured");
}

Claim hvp_speed_claim(const ContractInputs& in) {
  Claim c = make("timing.fused_hvp_faster_than_pytorch_math", "15 timing",
                 "theria's fused Hessian-vector product (double backward) is faster than PyTorch math's, the only "
                 "PyTorch SDPA backend that has one",
                 "holds when every HVP row of `theria bench` (impl theria) is faster than math in the same run; fails "
                 "when one is slower; not supported without a GPU bench");
  if (in.bench.empty()) return not_run(c, "bench (GPU)");
  c.evidence["files"] = files_of(in.bench);
  std::vector<std::string> rows, slower;
  for (const auto& r : all(in.bench, "results")) {
    if (str(r, "mode") != "hvp" || str(r, "impl") != "theria") continue;
    const double speedup = num(r, "vs_math");
    if (!std::isfinite(speedup)) continue;
    const auto what = std::to_string(r.at("batch").get<int64_t>()) + "x" + std::to_string(r.at("heads").get<int64_t>()) +
                      "x" + std::to_string(r.at("len").get<int64_t>()) + "x" +
                      std::to_string(r.at("dim").get<int64_t>()) + ": " + fmt(speedup) + "x";
    rows.push_back(what);
    if (speedup < 1.0) slower.push_back(what);
  }
  c.evidence["numbers"]["speedups"] = rows;
  c.verdict = rows.empty() ? kNotSupported : slower.empty() ? kHolds : kFails;
  c.reason = rows.empty() ? "no HVP row against math in the bench files" : slower.empty() ? join(rows) : join(slower);
  return c;
}

Claim verify_claim(const ContractInputs& in) {
  Claim c = make("operator.verify_passes", "operator",
                 "theria's operator matches the float64 reference at every order it offers (forward, backward, JVP, "
                 "double backward, third order) on every backend of this machine, within the tolerance table",
                 "holds when every row of `theria verify` passes; fails otherwise");
  if (in.verify.empty()) return not_run(c, "verify");
  c.evidence["files"] = files_of(in.verify);
  int64_t n = 0;
  std::vector<std::string> off;
  for (const auto& run : in.verify) {
    const Json rows = run.json.is_array() ? run.json : run.json.value("rows", Json::array());
    for (const auto& r : rows) {
      ++n;
      if (!r.value("pass", false)) {
        off.push_back(str(r, "device") + " " + str(r, "backend") + " " + str(r, "derivative") + " " + str(r, "dtype"));
      }
    }
  }
  c.evidence["numbers"]["rows"] = n;
  c.evidence["numbers"]["failed"] = off;
  c.verdict = n == 0 ? kNotSupported : off.empty() ? kHolds : kFails;
  c.reason = n == 0 ? "no verify rows" : off.empty() ? std::to_string(n) + " of " + std::to_string(n) + " pass"
                                                     : "failed: " + join(off);
  return c;
}

}  // namespace

std::vector<Claim> contract_claims(const ContractInputs& in) {
  return {
      taxonomy_verdict_claim(in, "taxonomy.exact_attention_is_safe",
                             "Explicit, exact attention derivatives give a safe FULL meta-gradient (second-order path, "
                             "error within tolerance)",
                             {"exact"}, "safe"),
      taxonomy_verdict_claim(in, "taxonomy.detach_is_unsafe",
                             "Detaching attention (its output, or running it under no-grad) makes FULL MAML unsafe",
                             {"detach_attention_output", "no_grad_attention"}, "unsafe"),
      taxonomy_verdict_claim(in, "taxonomy.frozen_statistics_are_conditional",
                             "Freezing the softmax statistics (stats_detach) is a conditional compromise: partly "
                             "second-order, close to the exact meta-gradient",
                             {"stats_detach"}, "conditional"),
      detector_claim(in),
      depth_claim(in),
      full_beats_fo_claim(in),
      implicit_memory_claim(in),
      operator_level_claim(in),
      hvp_path_claim(in),
      float32_claim(in),
      sixteen_bit_claim(in),
      attention_sixteen_bit_claim(in),
      fused_accuracy_claim(in),
      flash_claim(in),
      practical_claim(in),
      hvp_speed_claim(in),
      verify_claim(in),
  };
}

Json claim_json(const Claim& c) {
  return Json{{"id", c.id},         {"phase", c.phase},   {"statement", c.statement}, {"rule", c.rule},
              {"verdict", c.verdict}, {"reason", c.reason}, {"evidence", c.evidence}};
}

}  // namespace theria::lab
