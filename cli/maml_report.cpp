#include "maml_report.h"

#include "output/task_json.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <fstream>

namespace theria::cli {
namespace {

using lab::Divergence;

const char* where_name(Divergence::Where where) {
  switch (where) {
    case Divergence::Where::None: return "none";
    case Divergence::Where::SupportLoss: return "support_loss";
    case Divergence::Where::FastWeights: return "fast_weights";
    case Divergence::Where::QueryLoss: return "query_loss";
    case Divergence::Where::MetaGradient: return "meta_gradient";
  }
  return "?";
}

// A number for the console: "—" with the reason when it has none.
std::string console_number(double x, const char* format, const std::string& why = "") {
  if (!std::isfinite(x)) return why.empty() ? "\u2014" : "\u2014 (" + why + ")";
  char s[64];
  std::snprintf(s, sizeof s, format, x);
  return s;
}

// `s` padded with spaces to `width` columns (the em dash is three bytes and one column).
std::string pad_right(const std::string& s, size_t width) {
  size_t columns = 0;
  for (const char c : s) columns += (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // UTF-8 lead bytes
  return s + std::string(width > columns ? width - columns : 0, ' ');
}

// A CSV field: quoted when it holds a separator or a quote (RFC 4180).
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (const char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string csv_number(double x) {
  if (!std::isfinite(x)) return "";
  char s[32];
  std::snprintf(s, sizeof s, "%.9g", x);
  return s;
}

Json evaluation_json(const lab::Evaluation& e, const std::string& failed_because) {
  std::string status = "ok";
  if (e.divergence.found()) status = e.divergence.describe();
  else if (!failed_because.empty()) status = "failed: " + failed_because;
  return {{"pre_accuracy", number_or_null(e.pre_accuracy)},
          {"post_accuracy", number_or_null(e.post_accuracy)},
          {"pre_loss", number_or_null(e.pre_loss)},
          {"post_loss", number_or_null(e.post_loss)},
          {"status", status}};
}

Json divergence_json(const lab::TrainResult& r, bool continued) {
  if (!r.divergence.found()) return nullptr;
  const auto& d = r.divergence;
  return {{"phase", d.phase},
          {"meta_step", d.meta_step},
          {"task", d.at.task},
          {"where", where_name(d.at.where)},
          {"inner_step", d.at.where == Divergence::Where::MetaGradient ? Json(nullptr) : Json(d.at.inner_step)},
          {"inner_steps", d.at.inner_steps},
          {"message", d.describe()},
          {"continued", continued},
          {"applied_meta_steps", r.applied_meta_steps},
          {"skipped_meta_steps", r.skipped_meta_steps}};
}


Json gpu_busy_json(const lab::GpuBusy& g) {
  Json top = Json::array();
  for (const auto& k : g.top) top.push_back({{"name", k.name}, {"ms", k.ms}, {"count", k.count}});
  return {{"wall_ms", g.wall_ms},   {"profiled_wall_ms", g.profiled_wall_ms}, {"busy_ms", g.busy_ms},
          {"share", g.share()},     {"gpu_activities", g.activities},         {"longest", top}};
}

Json diagnostics_json(const MamlDiagnostics& d) {
  Json steps = Json::array(), values = Json::array(), cosines = Json::array(), statuses = Json::array();
  for (const auto& r : d.rel_diff) {
    steps.push_back(r.inner_steps);
    values.push_back(number_or_null(r.value));
    cosines.push_back(number_or_null(r.cosine));
    statuses.push_back(r.divergence.found() ? r.divergence.describe() : finite_status(r.value));
  }
  const auto& p = d.path;
  return {{"second_order_path", p.reaches_backward_nodes},
          {"second_order_nodes", p.nodes},
          {"second_order_norm", number_or_null(p.second_order_norm)},
          {"second_order_norm_status",
           p.divergence.found() ? p.divergence.describe() : finite_status(p.second_order_norm)},
          {"rel_diff_full_vs_fo", {{"inner_steps", steps}, {"value", values}, {"status", statuses}}},
          {"cosine_full_fo", {{"inner_steps", steps}, {"value", cosines}, {"status", statuses}}},
          {"full_meta_step_ms", number_or_null(d.full.ms)},
          {"fo_meta_step_ms", number_or_null(d.fo.ms)},
          {"full_" + d.full.memory_kind, number_or_null(d.full.peak_mib)},
          {"fo_" + d.fo.memory_kind, number_or_null(d.fo.peak_mib)},
          {"full_meta_step_gpu_busy", d.full_gpu ? gpu_busy_json(*d.full_gpu) : Json(nullptr)},
          {"full_meta_gradient_cuda_graph",
           {{"status", d.full_graph_status},
            {"eager_ms", d.full_graph ? Json(d.full_graph->eager_ms) : Json(nullptr)},
            {"graph_ms", d.full_graph ? Json(d.full_graph->graph_ms) : Json(nullptr)},
            {"max_rel_diff", d.full_graph ? Json(d.full_graph->max_rel_diff) : Json(nullptr)},
            {"eager_repeat_rel_diff", d.full_graph ? Json(d.full_graph->eager_repeat_rel_diff) : Json(nullptr)}}}};
}

}  // namespace

Json config_json(const MamlRun& run) {
  const auto& t = run.config;
  return {{"task", lab::task_json(*lab::make_task_family(t.tasks, t.seed))},
          {"backend", backend_name(t.model.attention.backend_)},
          {"resolved_backend", backend_name(run.resolved_backend)},
          {"mode", lab::maml_mode_name(t.maml.mode)},
          {"estimator", t.estimator.empty() ? Json(nullptr) : Json(t.estimator)},
          {"cuda_graph", t.cuda_graph},
          {"inner_steps", t.maml.inner_steps},
          {"inner_lr", t.maml.inner_lr},
          {"inner_grad_clip", t.maml.inner_grad_clip > 0 ? Json(t.maml.inner_grad_clip) : Json(nullptr)},
          {"meta_lr", t.meta_lr},
          {"meta_batch", t.meta_batch},
          {"meta_steps", t.meta_steps},
          {"eval_every", t.eval_every},
          {"eval_tasks", t.eval_tasks},
          {"seq_len", t.model.seq_len},
          {"classes", t.model.classes},
          {"support", t.tasks.support},
          {"query", t.tasks.query},
          {"dim", t.model.dim},
          {"heads", t.model.heads},
          {"blocks", t.model.blocks},
          {"pooling", t.model.pooling == lab::Pooling::Mean ? "mean" : "attention"},
          {"smeared_keys", t.model.smeared_keys},
          {"seed", t.seed},
          {"device", t.device.str()},
          {"dtype", c10::toString(t.dtype)},
          {"continue_on_divergence", t.continue_on_divergence}};
}

void write_curve_csv(const std::string& path, const std::vector<lab::CurvePoint>& curve) {
  std::ofstream csv(path);
  TORCH_CHECK(csv, "cannot write ", path);
  // Empty meta_loss: no meta-step yet (step 0) or a meta-step that diverged; empty post_accuracy:
  // the held-out inner loop diverged (status says where).
  csv << "step,meta_loss,pre_accuracy,post_accuracy,pre_loss,post_loss,status\n";
  for (const auto& p : curve) {
    const auto& e = p.held_out;
    csv << p.step << "," << (p.meta_loss ? csv_number(*p.meta_loss) : "") << "," << csv_number(e.pre_accuracy) << ","
        << csv_number(e.post_accuracy) << "," << csv_number(e.pre_loss) << "," << csv_number(e.post_loss) << ","
        << csv_field(e.divergence.describe()) << "\n";
  }
  TORCH_CHECK(csv.good(), "cannot write ", path);
}

Json summary_json(const MamlRun& run) {
  const auto& r = run.result;
  const std::string failed = r.divergence.found() ? r.divergence.describe() : "";
  const auto io = lab::make_task_family(run.config.tasks, run.config.seed)->io();
  Json plot{{"status", run.plot.status},
            {"file", run.plot.status == "written" ? Json("curve.png") : Json(nullptr)},
            {"exit_status", run.plot.exit && run.plot.exit->started && run.plot.exit->signal == 0
                                ? Json(run.plot.exit->exit_status)
                                : Json(nullptr)}};
  return {{"status", r.divergence.found() ? "diverged" : "ok"},
          {"divergence", divergence_json(r, run.config.continue_on_divergence)},
          {"config", config_json(run)},
          {"held_out",
           {{"before_training", evaluation_json(r.before, "")},
            {"after_training", evaluation_json(r.after, failed)},
            {"metric", io.metric()},
            {"chance", io.chance}}},
          {"diagnostics", diagnostics_json(run.diagnostics)},
          {"train_seconds", r.seconds},
          {"plot", plot}};
}

void print_progress(const lab::CurvePoint& p, int64_t meta_steps, const char* metric, double seconds) {
  const auto& e = p.held_out;
  std::fprintf(stderr, "[maml] step %5lld/%lld  meta-loss %s  held-out %s: before %.3f  after %s  (%.1f s)\n",
               (long long)p.step, (long long)meta_steps,
               pad_right(console_number(p.meta_loss.value_or(std::nan("")), "%.4f"), 8).c_str(), metric, e.pre_accuracy,
               console_number(e.post_accuracy, "%.3f", e.divergence.found() ? e.divergence.describe() : "").c_str(),
               seconds);
}

void print_summary(const MamlRun& run, const std::string& out_dir) {
  const auto& t = run.config;
  const auto& r = run.result;
  const auto& d = run.diagnostics;
  const std::string what = t.estimator.empty() ? std::string(lab::maml_mode_name(t.maml.mode)) + " MAML"
                                                : "MAML, estimator " + t.estimator + ",";
  std::printf("theria maml: %s backend %s (%s), %lld of %lld meta-steps applied in %.1f s\n",
              (what + (t.estimator.empty() ? "," : "")).c_str(), backend_name(t.model.attention.backend_),
              backend_name(run.resolved_backend), (long long)r.applied_meta_steps, (long long)t.meta_steps, r.seconds);
  if (r.divergence.found()) {
    std::printf("  DIVERGED: %s%s\n", r.divergence.describe().c_str(),
                t.continue_on_divergence ? " (continued: diverged meta-steps skipped)" : " (training stopped)");
  }
  const auto io = lab::make_task_family(t.tasks, t.seed)->io();
  std::printf("  %s: held-out query %s (chance %.3f): untrained %.3f -> %s after %lld inner steps; "
              "meta-trained %.3f -> %s\n",
              t.tasks.family.c_str(), io.metric(), io.chance, r.before.pre_accuracy,
              console_number(r.before.post_accuracy, "%.3f").c_str(), (long long)t.maml.inner_steps,
              r.after.pre_accuracy, console_number(r.after.post_accuracy, "%.3f").c_str());
  std::printf("  held-out query loss: untrained %.4f -> %s; meta-trained %.4f -> %s\n", r.before.pre_loss,
              console_number(r.before.post_loss, "%.4f").c_str(), r.after.pre_loss,
              console_number(r.after.post_loss, "%.4f").c_str());
  const std::string norm_why = d.path.divergence.found() ? d.path.divergence.describe() : "";
  std::printf("  second_order_path %s (%zu node kinds), ||g_FULL - g_FO|| = %s\n",
              d.path.reaches_backward_nodes ? "true" : "false", d.path.nodes.size(),
              console_number(d.path.second_order_norm, "%.3e", norm_why).c_str());
  std::printf("  rel_diff_full_vs_fo:");
  for (const auto& x : d.rel_diff) {
    const std::string why = x.divergence.found() ? x.divergence.describe() : "";
    std::printf(" %lld steps %s (cosine %s);", (long long)x.inner_steps, console_number(x.value, "%.3e", why).c_str(),
                console_number(x.cosine, "%.3f", "").c_str());
  }
  std::printf("\n  meta-step: FULL %.1f ms, FO %.1f ms; peak memory (%s): FULL %.1f MiB, FO %.1f MiB\n", d.full.ms,
              d.fo.ms, d.full.memory_kind.c_str(), d.full.peak_mib, d.fo.peak_mib);
  if (d.full_gpu) {
    std::printf("  GPU busy %.0f %% of a FULL meta-step (%.2f ms of kernels and copies, %lld of them, in %.2f ms; "
                "profiled %.2f ms); longest:\n",
                100.0 * d.full_gpu->share(), d.full_gpu->busy_ms, (long long)d.full_gpu->activities,
                d.full_gpu->wall_ms, d.full_gpu->profiled_wall_ms);
    for (const auto& k : d.full_gpu->top) {
      std::printf("    %8.3f ms  %5lld x  %.100s\n", k.ms, (long long)k.count, k.name.c_str());
    }
  }
  if (d.full_graph) {
    std::printf("  FULL meta-gradient as a CUDA graph: %.2f ms per replay, eager %.2f ms (%.1fx); max rel diff %.1e "
                "(eager against eager: %.1e)\n",
                d.full_graph->graph_ms, d.full_graph->eager_ms, d.full_graph->eager_ms / d.full_graph->graph_ms,
                d.full_graph->max_rel_diff, d.full_graph->eager_repeat_rel_diff);
  } else if (d.full_graph_status != "not run (CPU)") {
    std::printf("  FULL meta-gradient as a CUDA graph: %s\n", d.full_graph_status.c_str());
  }
  std::printf("  wrote %s/curve.csv, %s/summary.json, plot: %s\n", out_dir.c_str(), out_dir.c_str(),
              run.plot.status.c_str());
}

}  // namespace theria::cli
