#include "studies/robustness.h"

#include "diagnostics/second_order.h"
#include "output/resume.h"
#include "output/robustness_json.h"
#include "tasks/families.h"
#include "variants/pytorch_attention.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

namespace theria::lab {
namespace {

// Autocast on `device` in `dtype` for the scope's lifetime (nothing when dtype is empty), restored after, also on a
// throw; the cast cache is cleared on leaving the outermost scope, as torch.autocast does.
class AutocastScope {
 public:
  AutocastScope(const at::Device& device, std::optional<at::ScalarType> dtype) : type_(device.type()), on_(dtype) {
    if (!on_) return;
    was_enabled_ = at::autocast::is_autocast_enabled(type_);
    was_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, *dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, was_enabled_);
    at::autocast::set_autocast_dtype(type_, was_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType type_;
  bool on_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

// What every cell of one (T, D, seed) shares: the tasks, the model's shape, the float32 initial weights.
struct Setup {
  ModelConfig model;
  std::vector<Task> tasks;
  Weights w32;
};

Setup setup(const RobustnessConfig& c, int64_t seq_len, int64_t head_dim, uint64_t seed) {
  TaskConfig tc = c.train.tasks;
  tc.seq_len = seq_len;
  const auto family = make_task_family(tc, seed + 1000);  // apart from any training stream (seed, seed + 1)
  Setup s;
  s.model = fit_model_to(c.train.model, family->io());
  s.model.dim = c.train.model.heads * head_dim;
  for (int64_t i = 0; i < c.diagnostic_tasks; ++i) s.tasks.push_back(family->task(i, c.train.device));
  s.w32 = init_weights(s.model, seed, at::TensorOptions().dtype(at::kFloat).device(c.train.device));
  return s;
}

// The initial weights in a precision's weight dtype, as fresh leaves (the same numbers, rounded).
Weights weights_in(const Weights& w32, at::ScalarType dtype) {
  Weights w;
  for (const auto& t : w32) w.push_back(t.detach().to(dtype).requires_grad_());
  return w;
}

// The model of a cell: theria::sdpa with the backend named, or one of PyTorch's SDPA backends; with an
// attention-only precision, that call in its dtype inside a float32 model.
ModelConfig cell_model(ModelConfig model, const std::string& backend, const Precision& precision) {
  if (backend == "pytorch_math") {
    model.attend = pytorch_attention(PytorchSdpa::Math);
  } else if (backend == "pytorch_flash") {
    model.attend = pytorch_attention(PytorchSdpa::Flash);
  } else {
    model.attention.backend(parse_backend(backend));
  }
  if (precision.attention) {
    const AttentionFn inner = model.attend ? model.attend
                                           : AttentionFn([](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                            const SdpaOptions& o) { return sdpa(q, k, v, o); });
    const auto dtype = *precision.attention;
    model.attend = [inner, dtype](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& o) {
      return inner(q.to(dtype), k.to(dtype), v.to(dtype), o).to(q.scalar_type());
    };
  }
  return model;
}

// The first line of an error, without the C++ backtrace PyTorch appends.
std::string first_line(const c10::Error& e) {
  const std::string what = e.what_without_backtrace();
  return what.substr(0, what.find('\n'));
}

// Runs `f`; an allocation failure or an error becomes the status (the cell's result), anything else propagates.
template <class F>
std::string run_recording_failure(F&& f) {
  try {
    f();
    return "ok";
  } catch (const c10::OutOfMemoryError&) {
    return "out of memory";
  } catch (const c10::Error& e) {
    return "raises: " + first_line(e);
  }
}

// The float64 FULL meta-gradient of a cell's problem, or why there is none (the status).
struct Oracle {
  MetaGradient g;
  std::string status = "ok";
};

RobustnessMeasure measure(const RobustnessConfig& c, const RobustnessCellKey& key, uint64_t seed, const Setup& s,
                          const Weights& w, const Oracle& oracle) {
  RobustnessMeasure m;
  m.cell = key;
  m.seed = seed;
  const auto nan = std::nan("");
  m.second_order_share = m.rel_diff_full_vs_fo = m.error_full = m.cosine_full = m.error_fo = nan;
  if (oracle.status != "ok") {
    m.status = "oracle: " + oracle.status;  // the map cannot judge the cell, and says so
    return m;
  }
  const Precision precision = parse_precision(key.precision);
  const ModelConfig model = cell_model(s.model, key.backend, precision);
  MamlConfig full = c.train.maml, fo = c.train.maml;
  full.mode = MamlMode::Full;
  fo.mode = MamlMode::FirstOrder;
  m.status = run_recording_failure([&] {
    const AutocastScope autocast(c.train.device, precision.autocast);
    const MetaGradient g = meta_gradient(model, full, w, s.tasks);
    const MetaGradient f = meta_gradient(model, fo, w, s.tasks);
    const Divergence& d = g.divergence.found() ? g.divergence : f.divergence;
    if (d.found()) {
      m.non_finite = true;
      m.status = d.describe();
      return;
    }
    if (g.loss_graph.defined()) m.graph_nodes = attention_second_order_nodes(g.loss_graph);
    const auto share = attention_second_order_share(model, full, w, s.tasks, g);
    m.second_order_share = share.share;
    m.rel_diff_full_vs_fo = flat_distance(g.grads, f.grads) / flat_norm(g.grads);
    const auto e_full = gradient_error(g.grads, oracle.g.grads);
    m.error_full = e_full.rel_l2;
    m.cosine_full = e_full.cosine;
    m.error_fo = gradient_error(f.grads, oracle.g.grads).rel_l2;
  });
  if (m.status.rfind("raises", 0) == 0 || m.status == "out of memory") m.graph_nodes.clear();
  return m;
}

RobustnessCost cost(const RobustnessConfig& c, const RobustnessCellKey& key) {
  const Setup s = setup(c, key.seq_len, key.head_dim, 0);
  const Precision precision = parse_precision(key.precision);
  TrainConfig t = c.train;
  t.model = cell_model(s.model, key.backend, precision);
  const Weights w = weights_in(s.w32, precision.weights);
  RobustnessCost r;
  r.cell = key;
  r.status = run_recording_failure([&] {
    const AutocastScope autocast(c.train.device, precision.autocast);
    r.full = time_meta_step(t, MamlMode::Full, w, s.tasks);
    r.fo = time_meta_step(t, MamlMode::FirstOrder, w, s.tasks);
  });
  return r;
}

}  // namespace

Precision parse_precision(const std::string& name) {
  if (name == "float32") return {name, at::kFloat, std::nullopt, std::nullopt};
  if (name == "float64") return {name, at::kDouble, std::nullopt, std::nullopt};
  if (name == "bfloat16") return {name, at::kBFloat16, std::nullopt, std::nullopt};
  if (name == "float16") return {name, at::kHalf, std::nullopt, std::nullopt};
  if (name == "autocast_bfloat16") return {name, at::kFloat, at::kBFloat16, std::nullopt};
  if (name == "autocast_float16") return {name, at::kFloat, at::kHalf, std::nullopt};
  if (name == "attention_bfloat16") return {name, at::kFloat, std::nullopt, at::kBFloat16};
  if (name == "attention_float16") return {name, at::kFloat, std::nullopt, at::kHalf};
  TORCH_CHECK(false, "robustness: unknown precision '", name, "': expected one of float32, float64, bfloat16, float16, ",
              "autocast_bfloat16, autocast_float16, attention_bfloat16, attention_float16");
}

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names{"float32",           "float64",          "bfloat16",
                                              "float16",           "autocast_bfloat16", "autocast_float16",
                                              "attention_bfloat16", "attention_float16"};
  return names;
}

const std::vector<std::string>& robustness_backend_names() {
  static const std::vector<std::string> names{"reference", "explicit", "fused", "pytorch_math", "pytorch_flash"};
  return names;
}

std::vector<std::string> backends_on(const at::Device& device) {
  if (device.is_cuda()) return {"reference", "fused", "pytorch_math", "pytorch_flash"};
  return {"reference", "explicit", "pytorch_math", "pytorch_flash"};
}

std::string RobustnessCellKey::id() const {
  return "T" + std::to_string(seq_len) + "_D" + std::to_string(head_dim) + "_" + precision + "_" + backend;
}

std::vector<RobustnessCellKey> robustness_cells(const RobustnessConfig& c) {
  const auto backends = c.backends.empty() ? backends_on(c.train.device) : c.backends;
  std::vector<RobustnessCellKey> cells;
  for (const auto t : c.seq_lens) {
    for (const auto d : c.head_dims) {
      for (const auto& p : c.precisions) {
        for (const auto& b : backends) cells.push_back({t, d, p, b});
      }
    }
  }
  return cells;
}

Json robustness_config_json(const RobustnessConfig& c) {
  const auto& t = c.train;
  std::vector<std::string> backends;
  for (const auto& cell : robustness_cells(c)) {
    if (std::find(backends.begin(), backends.end(), cell.backend) == backends.end()) backends.push_back(cell.backend);
  }
  // parts_version: the layout of the resumable parts; a change of it makes earlier parts run again.
  return Json{{"parts_version", 1},
              {"seq_lens", c.seq_lens},
              {"head_dims", c.head_dims},
              {"precisions", c.precisions},
              {"backends", backends},
              {"seeds", c.seeds},
              {"device", t.device.str()},
              {"task", {{"family", t.tasks.family}, {"classes", t.tasks.classes}, {"support", t.tasks.support},
                        {"query", t.tasks.query}}},
              {"model", {{"heads", t.model.heads}, {"blocks", t.model.blocks}}},
              {"maml", {{"inner_steps", t.maml.inner_steps}, {"inner_lr", t.maml.inner_lr}}},
              {"diagnostic_tasks", c.diagnostic_tasks},
              {"oracle_reference_max_len", c.oracle_reference_max_len}};
}

RobustnessRaw run_robustness(const RobustnessConfig& c, const std::filesystem::path& parts_dir, Shard shard,
                             const Communicator* comm) {
  const auto cells = robustness_cells(c);
  TORCH_CHECK(!cells.empty() && c.seeds > 0, "robustness: nothing to measure");
  for (const auto& cell : cells) {
    parse_precision(cell.precision);  // an unknown name fails before any work
    TORCH_CHECK(std::find(robustness_backend_names().begin(), robustness_backend_names().end(), cell.backend) !=
                    robustness_backend_names().end(),
                "robustness: unknown backend '", cell.backend, "'");
  }
  // Work in (T / 32)^2 x head dim, the attention's share, for the ETA only.
  const auto work = [](int64_t t, int64_t d) { return (t / 32.0) * (t / 32.0) * d / 32.0 + 1.0; };
  const PartStore parts(parts_dir, robustness_config_json(c), shard, comm);
  double total = 0.0;
  for (const auto& cell : cells) total += (c.seeds + (shard.count > 1 ? 0 : 2)) * work(cell.seq_len, cell.head_dim);
  Progress progress("robustness", total);
  RobustnessRaw raw;

  // 1. The measures. One unit per (T, D, seed): its cells share the tasks, the weights and the float64 oracles (one
  // per weight dtype), which cost more than a cell at long sequences.
  std::vector<Unit<std::vector<RobustnessMeasure>>> groups;
  for (const auto t : c.seq_lens) {
    for (const auto d : c.head_dims) {
      std::vector<RobustnessCellKey> group;
      for (const auto& cell : cells) {
        if (cell.seq_len == t && cell.head_dim == d) group.push_back(cell);
      }
      for (uint64_t seed = 0; seed < static_cast<uint64_t>(c.seeds); ++seed) {
        groups.push_back({"measures_T" + std::to_string(t) + "_D" + std::to_string(d) + "_seed" + std::to_string(seed),
                          work(t, d) * static_cast<double>(group.size()), [&c, group, t, d, seed] {
                            const Setup s = setup(c, t, d, seed);
                            const bool short_seq = t <= c.oracle_reference_max_len;
                            const at::Device oracle_device = short_seq ? at::Device(at::kCPU) : c.train.device;
                            const Backend oracle_backend = short_seq ? Backend::Reference
                                                           : c.train.device.is_cuda() ? Backend::Fused
                                                                                      : Backend::Explicit;
                            std::map<at::ScalarType, std::pair<Weights, Oracle>> by_dtype;
                            std::vector<RobustnessMeasure> out;
                            for (const auto& cell : group) {
                              const auto dtype = parse_precision(cell.precision).weights;
                              if (!by_dtype.count(dtype)) {
                                Weights w = weights_in(s.w32, dtype);
                                Oracle oracle;
                                oracle.status = run_recording_failure([&] {
                                  oracle.g = oracle_meta_gradient(s.model, c.train.maml, w, s.tasks, oracle_device,
                                                                  oracle_backend);
                                });
                                if (oracle.status == "ok" && oracle.g.divergence.found()) {
                                  oracle.status = oracle.g.divergence.describe();
                                }
                                by_dtype.emplace(dtype, std::make_pair(std::move(w), std::move(oracle)));
                              }
                              const auto& [w, oracle] = by_dtype.at(dtype);
                              out.push_back(measure(c, cell, seed, s, w, oracle));
                            }
                            return out;
                          }});
      }
    }
  }
  auto measured = parts.run_phase(groups, progress);
  if (shard.count > 1) {
    progress.finish();
    return raw;  // costs are timed by the unsharded run, on a machine no other shard shares
  }
  // Out of memory is a result only when nothing else held the device: a group that ran out of memory (perhaps while
  // other shards shared the GPU) is measured again here, alone, and its part rewritten.
  // (Among ranks, rank 0 alone: it writes the files.)
  const bool measures_again = comm == nullptr || comm->is_root();
  for (size_t u = 0; u < groups.size() && measures_again; ++u) {
    const bool oom = std::any_of(measured[u].begin(), measured[u].end(), [](const RobustnessMeasure& m) {
      return m.status == "out of memory" || m.status == "oracle: out of memory";
    });
    if (!oom) continue;
    progress.begin(groups[u].key + " (again, alone: it ran out of memory)");
    measured[u] = groups[u].compute();
    parts.write(groups[u].key, part_json(measured[u]));
    progress.end(0.0, false);
  }
  for (const auto& group : measured) raw.measures.insert(raw.measures.end(), group.begin(), group.end());

  // 2. The cost of a FULL and an FO meta-step per cell.
  std::vector<Unit<RobustnessCost>> costs;
  for (const auto& cell : cells) {
    costs.push_back({"cost_" + cell.id(), 2.0 * work(cell.seq_len, cell.head_dim), [&c, cell] { return cost(c, cell); }});
  }
  raw.costs = parts.run_phase(costs, progress, Placement::Root);  // timed on a device no other rank shares
  progress.finish();
  return raw;
}

}  // namespace theria::lab
