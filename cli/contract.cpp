// `theria contract` (docs/contract_report.md): the SDPA meta-learning safety contract in one command. It runs the
// lab's studies and the operator check as child processes of this program (each shows its own progress and resumes
// from its parts), or reuses their result files from --from DIR, judges every claim (lab/contract/claims.h), writes
// contract.json and renders index.html with scripts/report_contract.py.
#include "commands.h"
#include "plot_script.h"
#include "run_program.h"
#include "study_common.h"

#include "contract/claims.h"
#include "output/json_file.h"

#include <ATen/Context.h>
#include <CLI/CLI.hpp>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#endif

namespace theria::cli {
namespace {

namespace fs = std::filesystem;
using lab::Json;

struct ContractOptions {
  bool quick = false, full = false, no_report = false;
  int shards = 1;
  std::string from, out = "out/contract";
};

// One run of a study in the contract: where its results go (out/<name>, or out/<name>/<run> where a study runs
// more than once), the file the claims read, and its command. The claims read every result file under out/<name>.
struct Step {
  std::string name, file;
  std::vector<lab::StudyRuns> lab::ContractInputs::*runs;  // where the claims read its result files
  std::vector<std::string> args;  // after the program name; "{dir}" is replaced by the step's directory
  std::string run = "";           // a sub-folder of out/<name> for this run ("": out/<name> itself)
};
using In = lab::ContractInputs;

// The quick tier: CPU, small shapes, every study of the lab (about 3 minutes on 2 cores).
std::vector<Step> quick_steps() {
  return {
      {"verify", "verify.json", &In::verify, {"verify", "--quick", "--device", "cpu", "--json", "{dir}/verify.json"}},
      {"taxonomy", "taxonomy.json", &In::taxonomy, {"study", "taxonomy", "--quick", "--out", "{dir}"}},
      {"sweep", "sweep.json", &In::sweep, {"study", "sweep", "--quick", "--out", "{dir}"}},
      {"metagrad", "metagrad.json", &In::metagrad,
       {"study", "metagrad", "--quick", "--backend", "explicit", "--out", "{dir}"}},
      {"robustness", "robustness.json", &In::robustness, {"study", "robustness", "--quick", "--out", "{dir}"}},
  };
}

// The full tier's sweep of one task family at T = 256 (docs/sweep.md): both backends, 5 seeds, depths 1 to 20.
Step sweep_step(const std::string& run, const std::vector<std::string>& family) {
  std::vector<std::string> args{"study", "sweep", "--device", "cuda"};
  args.insert(args.end(), family.begin(), family.end());
  for (const char* a : {"--seq-len", "256", "--smeared-keys", "--seeds", "5", "--meta-steps", "150", "--eval-tasks",
                        "32", "--meta-batch", "8", "--lr-grid", "0.8,0.3,0.1,0.03", "--search-meta-steps", "100",
                        "--search-seeds", "1", "--dim", "64", "--heads", "2", "--backends", "reference,fused",
                        "--inner-steps", "1,5,10,20", "--modes", "full,fo", "--out", "{dir}"}) {
    args.emplace_back(a);
  }
  return {"sweep", "sweep.json", &In::sweep, args, run};
}

// The full tier: the GPU, the settings of the committed results (docs/results/*, each with its command).
std::vector<Step> full_steps() {
  return {
      {"verify", "verify.json", &In::verify, {"verify", "--json", "{dir}/verify.json"}},
      {"taxonomy", "taxonomy.json", &In::taxonomy,
       {"study", "taxonomy", "--device", "cuda", "--backend", "fused", "--dtype", "bfloat16", "--out", "{dir}"}},
      sweep_step("induction_T256_reference_fused", {"--task", "induction", "--markers", "4", "--fillers", "8"}),
      sweep_step("mqar_T256_reference_fused", {"--task", "mqar", "--pairs", "8", "--keys", "16", "--values", "16"}),
      {"metagrad", "metagrad.json", &In::metagrad,
       {"study", "metagrad", "--device", "cuda", "--backend", "fused", "--dtype", "bfloat16", "--out", "{dir}"}},
      {"robustness", "robustness.json", &In::robustness,
       {"study", "robustness", "--device", "cuda", "--seq-lens", "256,1024,2048,4096", "--head-dims", "64,128",
        "--precisions", "float32,bfloat16,float16,autocast_bfloat16,attention_bfloat16", "--seeds", "3", "--tasks", "2",
        "--support", "4", "--query", "4", "--out", "{dir}"},
       "T256_T4096"},
      // T = 16384 at head dim 32 with 2 + 2 examples a task: the float64 oracle and PyTorch math's L x S matrices
      // (129 GiB in float32 on the H200) fit on one 141 GB GPU.
      {"robustness", "robustness.json", &In::robustness,
       {"study", "robustness", "--device", "cuda", "--seq-lens", "16384", "--head-dims", "32", "--precisions",
        "float32,bfloat16,float16,autocast_bfloat16", "--seeds", "3", "--tasks", "2", "--support", "2", "--query", "2",
        "--out", "{dir}"},
       "T16384"},
      {"bench", "bench.json", &In::bench,
       {"bench", "--preset", "medium", "--head-dim", "64,128", "--mode", "fwd,fwd_bwd,jvp,hvp", "--impl",
        "theria,flash,math", "--json", "{dir}/bench.json"}},
  };
}

// Every file called `file` under dir (a study run, or several runs of it side by side), in path order.
std::vector<fs::path> result_files(const fs::path& dir, const std::string& file) {
  std::vector<fs::path> found;
  if (!fs::is_directory(dir)) return found;
  for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink)) {
    if (e.is_regular_file() && e.path().filename() == file) found.push_back(e.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The studies with --shard I/N (cli/study_sweep.cpp, cli/study_robustness.cpp): their shards share the units, and
// the unsharded run that follows reads every part back, times the costs alone and writes the files (docs/sweep.md).
bool takes_shards(const Step& s) { return s.name == "sweep" || s.name == "robustness"; }

// A study's argv as n processes side by side, each with OMP_NUM_THREADS at its share of the cores (a shard's CPU
// work is small; n processes of every core each would oversubscribe them). A shard that fails is reported; the
// unsharded run after it redoes whatever the shard left.
void run_shards(const std::vector<std::string>& argv, int n) {
  std::vector<std::vector<std::string>> argvs;
  for (int i = 0; i < n; ++i) {
    argvs.push_back(argv);
    argvs.back().insert(argvs.back().end(), {"--shard", std::to_string(i) + "/" + std::to_string(n)});
  }
  const char* before = std::getenv("OMP_NUM_THREADS");
  const std::string saved = before ? before : "";
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / static_cast<unsigned>(n))).c_str(), 1);
  const auto exits = run_programs(argvs);
  if (before) setenv("OMP_NUM_THREADS", saved.c_str(), 1);
  else unsetenv("OMP_NUM_THREADS");
  for (int i = 0; i < n; ++i) {
    if (!exits[i].ok()) std::fprintf(stderr, "[contract] shard %d/%d ended with %s\n", i, n, exits[i].describe().c_str());
  }
}

Json read_json(const fs::path& p) {
  std::ifstream in(p);
  TORCH_CHECK(in, "theria contract: cannot read ", p.string());
  return Json::parse(in);
}

// The commit of the checkout the program was built in (the first folder above the executable with a .git), read from
// .git itself: no git program or shell needed. "unknown" for a build outside a checkout.
std::string git_commit() {
  for (fs::path dir = fs::path(executable_path()).parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    const fs::path git = dir / ".git";
    if (!fs::is_directory(git)) continue;
    std::ifstream head(git / "HEAD");
    std::string line;
    std::getline(head, line);
    if (line.rfind("ref: ", 0) != 0) return line.substr(0, 12);  // a detached head names the commit itself
    const std::string ref = line.substr(5);
    std::ifstream loose(git / ref);
    if (std::getline(loose, line)) return line.substr(0, 12);
    std::ifstream packed(git / "packed-refs");
    while (std::getline(packed, line)) {
      if (line.size() > 41 && line.compare(41, std::string::npos, ref) == 0) return line.substr(0, 12);
    }
    return "unknown";
  }
  return "unknown";
}

Json environment(const std::string& tier) {
  Json env{{"tier", tier}, {"torch", TORCH_VERSION}, {"commit", git_commit()}, {"cuda_available", at::hasCUDA()}};
#ifdef THERIA_WITH_FUSED
  if (at::hasCUDA()) {
    const auto* p = at::cuda::getDeviceProperties(0);
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    env["gpu"] = p->name;
    env["gpu_memory_mib"] = p->totalGlobalMem >> 20;
    env["cuda_driver"] = std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
    env["cuda_runtime"] = std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10);
  }
#endif
  return env;
}

int run_contract(const ContractOptions& o) {
  require_one_process("contract");
  const bool full = o.full || (!o.quick && at::hasCUDA());
  const std::string tier = full ? "full" : "quick";
  TORCH_CHECK(!full || !o.from.empty() || at::hasCUDA(), "theria contract --full: the full tier runs on a GPU; use "
              "--quick here, or --from DIR with the full tier's results");
  const fs::path out(o.out);
  fs::create_directories(out);
  const auto steps = full ? full_steps() : quick_steps();
  const auto start = std::chrono::steady_clock::now();
  lab::ContractInputs inputs;
  Json studies = Json::object(), ran_on = Json::object();
  std::vector<std::string> missing;  // studies this run started that left no result file
  const fs::path base = o.from.empty() ? out : fs::path(o.from);
  // 1. Each run whose folder holds no result file yet (a run cut off earlier resumes from its parts); none with --from.
  for (size_t i = 0; i < steps.size() && o.from.empty(); ++i) {
    const auto& s = steps[i];
    const fs::path dir = s.run.empty() ? base / s.name : base / s.name / s.run;
    auto files = result_files(dir, s.file);
    const std::string label = s.run.empty() ? s.name : s.name + "/" + s.run;
    if (files.empty()) {
      std::vector<std::string> argv{executable_path()};
      for (const auto& a : s.args) {
        const auto at = a.find("{dir}");
        argv.push_back(at == std::string::npos ? a : a.substr(0, at) + dir.string() + a.substr(at + 5));
      }
      fs::create_directories(dir);
      std::fprintf(stderr, "[contract] %zu/%zu %s: theria", i + 1, steps.size(), label.c_str());
      for (size_t k = 1; k < argv.size(); ++k) std::fprintf(stderr, " %s", argv[k].c_str());
      std::fprintf(stderr, "\n");
      if (o.shards > 1 && takes_shards(s)) run_shards(argv, o.shards);
      const auto exit = run_program(argv);
      // A study that ran but found a failure (verify's non-zero exit) still wrote its file: the claims judge it. One
      // that wrote nothing is the contract's own failure, not a result: the run ends non-zero.
      if (!exit.ok()) std::fprintf(stderr, "[contract] %s ended with %s\n", label.c_str(), exit.describe().c_str());
      if (result_files(dir, s.file).empty()) missing.push_back(label + " (" + exit.describe() + ")");
    } else {
      std::fprintf(stderr, "[contract] %zu/%zu %s: %zu result file(s) already in %s\n", i + 1, steps.size(),
                   label.c_str(), files.size(), dir.string().c_str());
    }
  }
  // 2. Every result file of each study, its runs' and any other run's put beside them (DIR/<study>/...).
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    if (studies.contains(s.name)) continue;
    std::string command;
    for (const auto& t : steps) {
      if (t.name != s.name) continue;
      command += command.empty() ? "theria" : "; theria";
      for (const auto& a : t.args) command += " " + a;
    }
    auto& runs = inputs.*s.runs;
    Json dirs = Json::array();
    std::set<std::string> machines;  // where the study ran, as its files say
    for (const auto& f : result_files(base / s.name, s.file)) {
      runs.push_back({read_json(f), f.string()});
      dirs.push_back(f.parent_path().string());
      const Json& j = runs.back().json;
      if (j.is_object() && j.contains("device_name")) machines.insert(j.at("device_name").get<std::string>());
      if (j.is_object() && j.contains("device")) machines.insert(j.at("device").get<std::string>());
    }
    ran_on[s.name] = std::vector<std::string>(machines.begin(), machines.end());
    studies[s.name] = Json{{"file", s.file}, {"directories", dirs}, {"command", command}};
    if (!o.from.empty()) {
      std::fprintf(stderr, "[contract] %s: %zu result file(s) reused from %s\n", s.name.c_str(), runs.size(),
                   (base / s.name).string().c_str());
    }
  }
  const auto claims = lab::contract_claims(inputs);
  Json claims_json = Json::array();
  Json counts{{lab::kHolds, 0}, {lab::kFails, 0}, {lab::kNotSupported, 0}};
  for (const auto& c : claims) {
    claims_json.push_back(lab::claim_json(c));
    counts[c.verdict] = counts[c.verdict].get<int>() + 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const fs::path contract_file = out / "contract.json";
  Json env = environment(tier);
  env["studies_ran_on"] = ran_on;
  if (!o.from.empty()) env["results_from"] = o.from;  // this machine only judged and rendered them
  lab::write_json(contract_file.string(), Json{{"contract", "SDPA meta-learning safety contract"},
                                               {"command", command_line()},
                                               {"seconds", seconds},
                                               {"environment", env},
                                               {"verdict_counts", counts},
                                               {"claims", claims_json},
                                               {"studies", studies},
                                               {"document", "docs/contract_report.md"}});
  std::printf("SDPA meta-learning safety contract (%s tier): %d hold, %d fail, %d not supported by the data\n\n",
              tier.c_str(), counts[lab::kHolds].get<int>(), counts[lab::kFails].get<int>(),
              counts[lab::kNotSupported].get<int>());
  for (const auto& c : claims) std::printf("  %-26s %s\n", c.verdict.c_str(), c.id.c_str());
  std::string report = "skipped (--no-report)";
  if (!o.no_report) {
    report = run_plot_script("report_contract.py", {contract_file.string(), (out / "index.html").string()}).status;
  }
  std::printf("\ncontract.json: %s\nindex.html: %s (%s)\n", contract_file.string().c_str(),
              (out / "index.html").string().c_str(), report.c_str());
  if (report != "written" && !o.no_report) {
    // A machine without the report's Python packages (the GPU machine has no package access) still has every result:
    // the report is rendered where they are installed.
    std::fprintf(stderr, "theria contract: the report needs Python with markdown (scripts/setup.sh installs it); "
                 "render it elsewhere with: theria contract --%s --from %s --out DIR\n", tier.c_str(),
                 (o.from.empty() ? out : fs::path(o.from)).string().c_str());
  }
  for (const auto& m : missing) std::fprintf(stderr, "theria contract: the study %s wrote no result file\n", m.c_str());
  return (report == "written" || o.no_report) && missing.empty() ? 0 : 1;
}

}  // namespace

Run add_contract(CLI::App& command) {
  auto o = std::make_shared<ContractOptions>();
  auto* tier = command.add_option_group("tier");
  tier->add_flag("--quick", o->quick, "CPU, small shapes: every study in about 3 minutes on 2 cores");
  tier->add_flag("--full", o->full, "the GPU tier (default where a GPU is present)");
  tier->require_option(0, 1);
  command.add_option("--from", o->from,
                     "reuse the studies' result files under DIR/<study>/ (verify, taxonomy, sweep, metagrad, robustness, "
                     "bench; several runs of a study may sit side by side) instead of running them")
      ->type_name("DIR")
      ->check(CLI::ExistingDirectory);
  command.add_option("--out", o->out, "report folder: contract.json, index.html, and the studies run here")
      ->type_name("DIR")
      ->capture_default_str();
  command.add_option("--shards", o->shards,
                     "run the sweep and robustness studies as N processes side by side (--shard I/N), then once "
                     "unsharded to time the costs and write the files: the lab's small models leave a GPU mostly idle")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  command.add_flag("--no-report", o->no_report, "write contract.json only (no index.html)");
  return [o] { return run_contract(*o); };
}

}  // namespace theria::cli
