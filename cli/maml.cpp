// `theria maml`: meta-trains the lab's transformer with MAML through theria attention, shows
// progress, and writes the learning curve (curve.csv), a summary with the diagnostics and the exact
// configuration (summary.json) and a plot of the curve (curve.png, matplotlib).
#include "commands.h"

#include "maml.h"
#include "trainer.h"

#include <ATen/ATen.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace theria::cli {
namespace {

using lab::MamlMode;

struct Options {
  lab::TrainConfig train;
  std::string out = "out/maml";
  std::vector<int64_t> diagnose_steps{1, 2, 4, 8};
  bool plot = true;
};

std::vector<int64_t> int_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoll(item));
  return out;
}

void usage() {
  std::printf(
      "usage: theria maml [options]\n"
      "  --backend auto|reference|explicit|fused   attention backend (default auto)\n"
      "  --mode full|fo|fo_strict                  MAML mode (default full)\n"
      "  --inner-steps N (2)   --inner-lr X (0.2)   --meta-lr X (0.003)\n"
      "  --meta-batch N (8)    --meta-steps N (300) --eval-every N (25)  --eval-tasks N (32)\n"
      "  --seq-len T (8)       --classes C (4, divides T)  --support N (16)  --query N (32)\n"
      "  --dim D (32) --heads H (2) --blocks B (1) --pooling attention|mean (attention)\n"
      "  --seed N (0)  --device cpu|cuda (cpu)  --dtype float32|float64|bfloat16 (float32)\n"
      "  --diagnose-steps 1,2,4,8   inner-step counts for rel_diff_full_vs_fo\n"
      "  --out DIR (out/maml)  --no-plot\n");
}

Options parse(const Args& args) {
  Options o;
  auto& t = o.train;
  std::string backend = "auto";
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    auto value = [&]() -> std::string {
      TORCH_CHECK(i + 1 < args.size(), "option ", a, " needs a value");
      return args[++i];
    };
    if (a == "--backend") backend = value();
    else if (a == "--mode") t.maml.mode = lab::parse_maml_mode(value());
    else if (a == "--inner-steps") t.maml.inner_steps = std::stoll(value());
    else if (a == "--inner-lr") t.maml.inner_lr = std::stod(value());
    else if (a == "--meta-lr") t.meta_lr = std::stod(value());
    else if (a == "--meta-batch") t.meta_batch = std::stoll(value());
    else if (a == "--meta-steps") t.meta_steps = std::stoll(value());
    else if (a == "--eval-every") t.eval_every = std::stoll(value());
    else if (a == "--eval-tasks") t.eval_tasks = std::stoll(value());
    else if (a == "--seq-len") t.tasks.seq_len = std::stoll(value());
    else if (a == "--classes") t.tasks.classes = std::stoll(value());
    else if (a == "--support") t.tasks.support = std::stoll(value());
    else if (a == "--query") t.tasks.query = std::stoll(value());
    else if (a == "--dim") t.model.dim = std::stoll(value());
    else if (a == "--heads") t.model.heads = std::stoll(value());
    else if (a == "--blocks") t.model.blocks = std::stoll(value());
    else if (a == "--pooling") {
      const auto p = value();
      TORCH_CHECK(p == "attention" || p == "mean", "--pooling must be attention or mean, got '", p, "'");
      t.model.pooling = p == "mean" ? lab::Pooling::Mean : lab::Pooling::Attention;
    } else if (a == "--seed") t.seed = std::stoull(value());
    else if (a == "--device") {
      const auto d = value();
      TORCH_CHECK(d == "cpu" || d == "cuda", "--device must be cpu or cuda, got '", d, "'");
      TORCH_CHECK(d == "cpu" || at::hasCUDA(), "--device cuda: no CUDA device available");
      t.device = d == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    } else if (a == "--dtype") {
      const auto d = value();
      if (d == "float32") t.dtype = at::kFloat;
      else if (d == "float64") t.dtype = at::kDouble;
      else if (d == "bfloat16") t.dtype = at::kBFloat16;
      else TORCH_CHECK(false, "--dtype must be float32, float64 or bfloat16, got '", d, "'");
    } else if (a == "--diagnose-steps") o.diagnose_steps = int_list(value());
    else if (a == "--out") o.out = value();
    else if (a == "--no-plot") o.plot = false;
    else if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else {
      TORCH_CHECK(false, "unknown option '", a, "' (see theria maml --help)");
    }
  }
  t.model.attention.backend(parse_backend(backend));
  t.model.seq_len = t.tasks.seq_len;
  t.model.classes = t.tasks.classes;
  TORCH_CHECK(t.maml.inner_steps >= 0 && t.meta_steps >= 0 && t.meta_batch >= 1 && t.eval_every >= 1 &&
                  t.eval_tasks >= 1,
              "inner/meta steps must be >= 0, meta-batch, eval-every and eval-tasks >= 1");
  return o;
}

void synchronize(const at::Device& device) {
#ifdef THERIA_WITH_FUSED
  if (device.is_cuda()) at::cuda::getCurrentCUDAStream().synchronize();
#endif
}

// Peak memory of one call: the CUDA allocator's peak above what was allocated before (GPU), or
// the process's peak resident set so far, VmHWM (CPU; it only grows).
struct Memory {
  explicit Memory(const at::Device& device) : device_(device) {
#ifdef THERIA_WITH_FUSED
    if (device.is_cuda()) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
      base_ = stat().current;
    }
#endif
  }
  double peak_mib() const {
#ifdef THERIA_WITH_FUSED
    if (device_.is_cuda()) return static_cast<double>(stat().peak - base_) / (1 << 20);
#endif
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
    }
    return 0.0;
  }
  const char* kind() const { return device_.is_cuda() ? "cuda_allocator_peak_mib" : "process_peak_rss_mib"; }

 private:
#ifdef THERIA_WITH_FUSED
  c10::CachingAllocator::Stat stat() const {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index())
        .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  }
  int64_t base_ = 0;
#endif
  at::Device device_;
};

struct StepCost {
  double ms = 0.0, peak_mib = 0.0;
  std::string memory_kind;
};

StepCost time_meta_step(const lab::TrainConfig& t, MamlMode mode, const lab::Weights& w,
                        const std::vector<lab::Task>& tasks) {
  lab::MamlConfig maml = t.maml;
  maml.mode = mode;
  lab::meta_gradient(t.model, maml, w, tasks);  // warm-up
  synchronize(t.device);
  const Memory memory(t.device);
  std::vector<double> ms;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    lab::meta_gradient(t.model, maml, w, tasks);
    synchronize(t.device);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[1], memory.peak_mib(), memory.kind()};
}

std::string json_list(const std::vector<double>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

std::string json_list(const std::vector<int64_t>& v) {
  return json_list(std::vector<double>(v.begin(), v.end()));
}

std::string executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// The Python that has matplotlib: THERIA_PYTHON, else the one scripts/setup.sh recorded beside us.
std::string plotting_python() {
  if (const char* env = std::getenv("THERIA_PYTHON")) return env;
  std::ifstream recorded(executable_dir() + "/python");
  std::string path;
  if (recorded && std::getline(recorded, path) && !path.empty()) return path;
  return "python3";
}

}  // namespace

int maml(const Args& args) {
  const Options o = parse(args);
  const auto& t = o.train;
  std::filesystem::create_directories(o.out);
  std::fprintf(stderr, "[maml] backend %s, mode %s, %lld inner steps (lr %g), %lld meta-steps of %lld tasks, T=%lld, %s %s\n",
               backend_name(t.model.attention.backend_), lab::maml_mode_name(t.maml.mode),
               (long long)t.maml.inner_steps, t.maml.inner_lr, (long long)t.meta_steps, (long long)t.meta_batch,
               (long long)t.tasks.seq_len, t.device.str().c_str(), c10::toString(t.dtype));
  const auto start = std::chrono::steady_clock::now();
  const auto result = lab::meta_train(t, [&](const lab::CurvePoint& p) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "[maml] step %5lld/%lld  meta-loss %-8.4f  held-out accuracy: before %.3f  after %.3f  (%.1f s)\n",
                 (long long)p.step, (long long)t.meta_steps, p.meta_loss, p.pre_accuracy, p.post_accuracy, s);
  });

  // Diagnostics on one meta-batch of held-out tasks, at the meta-trained weights.
  std::fprintf(stderr, "[maml] diagnostics ...\n");
  lab::Weights w;
  for (const auto& x : result.weights) w.push_back(x.detach().requires_grad_());
  const auto tasks = lab::held_out_tasks(t, t.meta_batch);
  lab::MamlConfig full = t.maml;
  full.mode = MamlMode::Full;
  const auto path = lab::second_order_path(t.model, full, w, tasks);
  const auto rel = lab::rel_diff_full_vs_fo(t.model, t.maml.inner_lr, w, tasks, o.diagnose_steps);
  const auto cost_full = time_meta_step(t, MamlMode::Full, w, tasks);
  const auto cost_fo = time_meta_step(t, MamlMode::FirstOrder, w, tasks);

  {
    std::ofstream csv(o.out + "/curve.csv");
    csv << "step,meta_loss,pre_accuracy,post_accuracy\n";
    for (const auto& p : result.curve) {
      csv << p.step << "," << p.meta_loss << "," << p.pre_accuracy << "," << p.post_accuracy << "\n";
    }
  }
  std::string plot_status = "skipped (--no-plot)";
  if (o.plot) {
    const std::string cmd = plotting_python() + " " + THERIA_SOURCE_DIR "/scripts/plot_curve.py " + o.out +
                            "/curve.csv " + o.out + "/curve.png --chance " + std::to_string(1.0 / t.tasks.classes) +
                            " --title 'theria maml: " + lab::maml_mode_name(t.maml.mode) + ", " +
                            backend_name(t.model.attention.backend_) + "'";
    plot_status = std::system(cmd.c_str()) == 0 ? "curve.png" : "failed: " + cmd;
    if (plot_status != "curve.png") std::fprintf(stderr, "[maml] plot %s\n", plot_status.c_str());
  }
  // The backend `auto` (or any request) resolves to for this model's attention inputs.
  const auto probe = at::empty({1, t.model.heads, t.tasks.seq_len + 1, t.model.dim / t.model.heads},
                               at::TensorOptions().dtype(t.dtype).device(t.device));
  const auto resolved = select_backend(probe, probe, probe, t.model.attention);
  {
    std::ofstream js(o.out + "/summary.json");
    js << "{\n  \"config\": {\"backend\": \"" << backend_name(t.model.attention.backend_)
       << "\", \"resolved_backend\": \"" << backend_name(resolved.backend) << "\", \"mode\": \""
       << lab::maml_mode_name(t.maml.mode) << "\", \"inner_steps\": " << t.maml.inner_steps
       << ", \"inner_lr\": " << t.maml.inner_lr << ", \"meta_lr\": " << t.meta_lr
       << ", \"meta_batch\": " << t.meta_batch << ", \"meta_steps\": " << t.meta_steps
       << ", \"eval_every\": " << t.eval_every << ", \"eval_tasks\": " << t.eval_tasks
       << ", \"seq_len\": " << t.tasks.seq_len << ", \"classes\": " << t.tasks.classes
       << ", \"support\": " << t.tasks.support << ", \"query\": " << t.tasks.query << ", \"dim\": " << t.model.dim
       << ", \"heads\": " << t.model.heads << ", \"blocks\": " << t.model.blocks << ", \"pooling\": \""
       << (t.model.pooling == lab::Pooling::Mean ? "mean" : "attention") << "\", \"seed\": " << t.seed
       << ", \"device\": \"" << t.device.str() << "\", \"dtype\": \"" << c10::toString(t.dtype) << "\"},\n";
    js << "  \"held_out\": {\"before_training\": {\"pre_accuracy\": " << result.before.pre_accuracy
       << ", \"post_accuracy\": " << result.before.post_accuracy << "}, \"after_training\": {\"pre_accuracy\": "
       << result.after.pre_accuracy << ", \"post_accuracy\": " << result.after.post_accuracy
       << ", \"post_loss\": " << result.after.post_loss << "}, \"chance\": " << 1.0 / t.tasks.classes << "},\n";
    js << "  \"diagnostics\": {\"second_order_path\": " << (path.reaches_backward_nodes ? "true" : "false")
       << ", \"second_order_nodes\": [";
    for (size_t i = 0; i < path.nodes.size(); ++i) js << (i ? ", " : "") << "\"" << path.nodes[i] << "\"";
    js << "], \"second_order_norm\": " << path.second_order_norm << ", \"rel_diff_full_vs_fo\": {\"inner_steps\": "
       << json_list(o.diagnose_steps) << ", \"value\": " << json_list(rel) << "}, \"full_meta_step_ms\": "
       << cost_full.ms << ", \"fo_meta_step_ms\": " << cost_fo.ms << ", \"full_" << cost_full.memory_kind
       << "\": " << cost_full.peak_mib << ", \"fo_" << cost_fo.memory_kind << "\": " << cost_fo.peak_mib << "},\n";
    js << "  \"train_seconds\": " << result.seconds << ",\n  \"plot\": \"" << plot_status << "\"\n}\n";
  }

  std::printf("theria maml: %s MAML, backend %s (%s), %lld meta-steps in %.1f s\n", lab::maml_mode_name(t.maml.mode),
              backend_name(t.model.attention.backend_), backend_name(resolved.backend), (long long)t.meta_steps,
              result.seconds);
  std::printf("  held-out query accuracy (chance %.3f): untrained %.3f -> %.3f after %lld inner steps; "
              "meta-trained %.3f -> %.3f\n",
              1.0 / t.tasks.classes, result.before.pre_accuracy, result.before.post_accuracy,
              (long long)t.maml.inner_steps, result.after.pre_accuracy, result.after.post_accuracy);
  std::printf("  second_order_path %s (%zu node kinds), ||g_FULL - g_FO|| = %.3e\n",
              path.reaches_backward_nodes ? "true" : "false", path.nodes.size(), path.second_order_norm);
  std::printf("  rel_diff_full_vs_fo:");
  for (size_t i = 0; i < rel.size(); ++i) std::printf(" %lld steps %.3e;", (long long)o.diagnose_steps[i], rel[i]);
  std::printf("\n  meta-step: FULL %.1f ms, FO %.1f ms; peak memory (%s): FULL %.1f MiB, FO %.1f MiB\n", cost_full.ms,
              cost_fo.ms, cost_full.memory_kind.c_str(), cost_full.peak_mib, cost_fo.peak_mib);
  std::printf("  wrote %s/curve.csv, %s/summary.json, plot: %s\n", o.out.c_str(), o.out.c_str(), plot_status.c_str());
  return 0;
}

}  // namespace theria::cli
