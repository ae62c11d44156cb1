// `theria bench`: times theria's fused backend against PyTorch's own SDPA backends in the same run
// (flash for first order; math, the only PyTorch backend with higher derivatives, for JVP / HVP),
// with CUDA events, warm-up, the median over many iterations, and input sets rotated so that
// timings do not come from L2. Reports ms, TFLOP/s and the peak memory a call adds. --kv-heads (grouped-query
// attention) and --mask key-padding time the same work on every implementation; PyTorch's backends then run
// through at::scaled_dot_product_attention with only the named backend enabled (its own mask handling, and
// an error rather than another backend where it cannot serve the call: flash takes no mask).
#include "commands.h"
#include "json_out.h"

#include <theria/sdpa.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <CLI/CLI.hpp>

#ifdef THERIA_WITH_FUSED
#include "forward_ad_level.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/autograd/autograd.h>
#endif

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>

namespace theria::cli {
namespace {

struct Shape {
  int64_t batch, heads, len, dim;
};

// Presets of (B, H, L=S) at each head dim.
const std::map<std::string, Shape> kPresets{
    {"small", {2, 8, 512, 0}}, {"medium", {8, 16, 2048, 0}}, {"large", {2, 16, 8192, 0}}};

const std::map<std::string, at::ScalarType> kDtypes{{"bf16", at::kBFloat16}, {"bfloat16", at::kBFloat16},
                                                    {"fp16", at::kHalf},     {"float16", at::kHalf},
                                                    {"fp32", at::kFloat},    {"float32", at::kFloat}};

struct Options {
  std::string preset = "medium";
  std::vector<std::string> shape_list;  // "B,H,L,D" each; replaces the preset when given
  std::vector<int64_t> head_dims{64};
  std::string dtype = "bf16";
  bool causal = false;
  std::vector<std::string> modes{"fwd", "fwd_bwd"};
  std::vector<std::string> impls{"theria", "flash", "math"};
  int warmup = 10, iters = 50, input_sets = 3;
  std::string json;
  std::string float32_precision = "highest";  // torch.set_float32_matmul_precision for the whole run
  int64_t kv_heads = 0;                        // key/value heads (grouped-query attention); 0: as many as query
  std::string mask = "none";                   // none, or key-padding: half the batch has its last half of keys padded
  std::string hvp_form = "vjp";                // how the HVP hands autograd its direction u (--hvp-form)

  std::vector<Shape> shapes() const {
    std::vector<Shape> s;
    for (const auto& text : shape_list) {
      Shape shape{};
      TORCH_CHECK(std::sscanf(text.c_str(), "%ld,%ld,%ld,%ld", &shape.batch, &shape.heads, &shape.len, &shape.dim) == 4 &&
                      shape.batch > 0 && shape.heads > 0 && shape.len > 0 && shape.dim > 0,
                  "--shape takes B,H,L,D with positive sizes, got '", text, "'");
      s.push_back(shape);
    }
    if (!s.empty()) return s;
    for (const int64_t d : head_dims) {
      Shape shape = kPresets.at(preset);
      shape.dim = d;
      s.push_back(shape);
    }
    return s;
  }
  at::ScalarType scalar_type() const { return kDtypes.at(dtype); }
};

int run_bench(const Options& o);

}  // namespace

Run add_bench(CLI::App& command) {
  auto o = std::make_shared<Options>();
  command.add_option("--preset", o->preset, "shapes (B, H, L=S): small (2, 8, 512), medium (8, 16, 2048), large (2, 16, 8192)")
      ->check(CLI::IsMember({"small", "medium", "large"}))
      ->capture_default_str();
  command.add_option("--shape", o->shape_list, "B,H,L,D (L = S); repeat for several; replaces --preset / --head-dim")
      ->type_name("B,H,L,D");
  command.add_option("--head-dim", o->head_dims, "head dims, comma-separated")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->default_str("64");
  command.add_option("--dtype", o->dtype, "element type")
      ->check(CLI::IsMember({"bf16", "bfloat16", "fp16", "float16", "fp32", "float32"}))
      ->capture_default_str();
  command.add_flag("--causal", o->causal, "causal attention (top-left aligned)");
  command.add_option("--mode", o->modes,
                     "fwd; fwd_bwd; jvp (forward AD); hvp (backward with create_graph, then the gradient of g "
                     "along u: --hvp-form)")
      ->delimiter(',')
      ->check(CLI::IsMember({"fwd", "fwd_bwd", "jvp", "hvp"}))
      ->default_str("fwd,fwd_bwd");
  command.add_option("--impl", o->impls,
                     "theria (backend fused), theria_det (the same under torch.use_deterministic_algorithms), "
                     "theria_auto (backend auto), "
                     "flash / efficient / math (PyTorch's own SDPA backends)")
      ->delimiter(',')
      ->check(CLI::IsMember({"theria", "theria_det", "theria_auto", "flash", "efficient", "math"}))
      ->default_str("theria,flash,math");
  command.add_option("--iters", o->iters, "timed iterations (the median is reported)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command.add_option("--warmup", o->warmup, "untimed iterations first")->check(CLI::NonNegativeNumber)->capture_default_str();
  command.add_option("--float32-precision", o->float32_precision,
                     "torch.set_float32_matmul_precision for the run (highest: full fp32; high: TF32 in cuBLAS, "
                     "theria's fused fp32 on scaled float16 copies at head dims 64 and 128, bfloat16-split "
                     "products at 32 and 96; medium: bfloat16 products)")
      ->check(CLI::IsMember({"highest", "high", "medium"}))
      ->capture_default_str();
  command.add_option("--kv-heads", o->kv_heads,
                     "key/value heads, a divisor of H (grouped-query attention, enable_gqa); 0: H")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command.add_option("--mask", o->mask,
                     "attn_mask: none; key-padding (a bool (B, 1, 1, S) mask: the second half of the batch has its "
                     "last half of keys padded); or causal-padding (a bool (B, 1, L, S) mask as a decoder passes a "
                     "left-padded batch: query i sees keys j <= i, and the second half of the batch has its first "
                     "quarter of keys padded; FLOPs counted as causal); or bias-grad (an additive (1, H, L, S) "
                     "bias, as a relative-position bias, that requires grad: fwd+bwd also takes its gradient, the "
                     "JVP a tangent of it, the HVP its row and column too)")
      ->check(CLI::IsMember({"none", "key-padding", "causal-padding", "bias-grad"}))
      ->capture_default_str();
  command.add_option("--hvp-form", o->hvp_form,
                     "how the HVP hands autograd its direction u: vjp (the backward of g = dL/dx with grad_outputs "
                     "u, as torch.autograd.functional.hvp and a MAML meta-gradient do) or dot (the gradient of the "
                     "scalar <g, u>: PyTorch's element-wise products, sums and their backward besides)")
      ->check(CLI::IsMember({"vjp", "dot"}))
      ->capture_default_str();
  command.add_option("--json", o->json, "also write the results to FILE as JSON")->type_name("FILE");
  return [o] { return run_bench(*o); };
}

namespace {

#ifndef THERIA_WITH_FUSED
int run_bench(const Options&) {
  std::fprintf(stderr, "theria bench: this build has no CUDA kernels; build with a CUDA toolkit and run on a GPU\n");
  return 2;
}
#else
using at::Tensor;

// (q, k, v, attn_mask): the mask undefined without one.
using Attention = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>;

// Only PyTorch's named SDPA backend enabled for its lifetime (flash, efficient or math), as before after.
struct OnlyBackend {
  at::Context& ctx = at::globalContext();
  bool flash = ctx.userEnabledFlashSDP(), efficient = ctx.userEnabledMemEfficientSDP(), math = ctx.userEnabledMathSDP(),
       cudnn = ctx.userEnabledCuDNNSDP();
  explicit OnlyBackend(const std::string& impl) {
    ctx.setSDPUseFlash(impl == "flash");
    ctx.setSDPUseMemEfficient(impl == "efficient");
    ctx.setSDPUseMath(impl == "math");
    ctx.setSDPUseCuDNN(false);
  }
  ~OnlyBackend() {
    ctx.setSDPUseFlash(flash);
    ctx.setSDPUseMemEfficient(efficient);
    ctx.setSDPUseMath(math);
    ctx.setSDPUseCuDNN(cudnn);
  }
};

// Deterministic algorithms on for its lifetime (the ordered dQ adds of the fused backward), as before after.
struct DeterministicScope {
  bool was = at::globalContext().deterministicAlgorithms();
  bool was_warn_only = at::globalContext().deterministicAlgorithmsWarnOnly();
  DeterministicScope() { at::globalContext().setDeterministicAlgorithms(true, false); }
  ~DeterministicScope() { at::globalContext().setDeterministicAlgorithms(was, was_warn_only); }
};

// masked: the calls take an attn_mask; gqa: key/value have fewer heads than query.
Attention implementation(const std::string& impl, bool causal, bool masked, bool gqa) {
  if (impl == "theria" || impl == "theria_auto") {  // theria_auto: what a call that names no backend gets
    const Backend backend = impl == "theria" ? Backend::Fused : Backend::Auto;
    return [=](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) {
      SdpaOptions options = SdpaOptions().causal(causal).backend(backend).enable_gqa(gqa);
      if (mask.defined()) options.attn_mask(mask);
      return sdpa(q, k, v, options);
    };
  }
  if (masked || gqa) {
    TORCH_CHECK(impl == "flash" || impl == "efficient" || impl == "math", "--impl takes theria, theria_det, "
                "theria_auto, flash, efficient, math; got ", impl);
    return [=](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) {
      const OnlyBackend only(impl);
      return at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<Tensor>(mask) : std::nullopt,
                                              0.0, causal, std::nullopt, gqa);
    };
  }
  if (impl == "efficient") {
    return [causal](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&) {
      return std::get<0>(at::_scaled_dot_product_efficient_attention(q, k, v, {}, /*compute_log_sumexp=*/q.requires_grad(),
                                                                     0.0, causal));
    };
  }
  if (impl == "flash") {
    return [causal](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&) {
      return std::get<0>(at::_scaled_dot_product_flash_attention(q, k, v, 0.0, causal));
    };
  }
  if (impl == "math") {
    return [causal](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&) {
      return std::get<0>(at::_scaled_dot_product_attention_math(q, k, v, {}, 0.0, causal));
    };
  }
  TORCH_CHECK(false, "--impl takes theria, theria_det, theria_auto, flash, efficient, math; got ", impl);
}

struct Inputs {
  Tensor q, k, v, dout, t_q, t_k, t_v;  // t_*: JVP tangents, and the HVP direction
};

struct Result {
  Shape shape;
  std::string mode, impl;
  double ms = 0, tflops = 0, peak_mib = 0;
  std::string error;
};

// FLOPs counted as matrix products of L x S x D, each 2 L S D (FlashAttention's convention):
//   fwd 2 (QK^T, PV); backward 5; JVP 6 (S, S_dot from 3 products; out, out_dot from 3);
//   HVP = fwd + backward + double backward (a tangent pass of 5 products from the saved out and lse,
//   then the backward-JVP's 10 without a dout tangent) = 22. Elementwise work is not counted.
double flops(const Shape& s, bool causal, const std::string& mode) {
  const double product = 2.0 * s.batch * s.heads * s.len * s.len * s.dim * (causal ? 0.5 : 1.0);
  if (mode == "fwd") return 2 * product;
  if (mode == "fwd_bwd") return 7 * product;
  if (mode == "jvp") return 6 * product;
  return 22 * product;
}

Result measure(const Options& o, const Shape& s, const std::string& mode, const std::string& impl) {
  Result r;
  r.shape = s;
  r.mode = mode;
  r.impl = impl;
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(o.scalar_type());
  const int64_t kv_heads = o.kv_heads > 0 ? o.kv_heads : s.heads;
  TORCH_CHECK(s.heads % kv_heads == 0, "--kv-heads (", kv_heads, ") must divide the heads H (", s.heads, ")");
  std::vector<Inputs> sets;
  for (int i = 0; i < o.input_sets; ++i) {
    auto r = [&](int64_t heads) { return at::randn({s.batch, heads, s.len, s.dim}, opts); };
    sets.push_back({r(s.heads), r(kv_heads), r(kv_heads), r(s.heads), r(s.heads), r(kv_heads), r(kv_heads)});
  }
  Tensor mask;
  if (o.mask == "key-padding") {
    mask = at::ones({s.batch, 1, 1, s.len}, opts.dtype(at::kBool));
    mask.narrow(0, s.batch / 2, s.batch - s.batch / 2).narrow(3, s.len / 2, s.len - s.len / 2).fill_(false);
  } else if (o.mask == "causal-padding") {
    mask = at::ones({s.len, s.len}, opts.dtype(at::kBool)).tril().expand({s.batch, 1, s.len, s.len}).contiguous();
    mask.narrow(0, s.batch / 2, s.batch - s.batch / 2).narrow(3, 0, s.len / 4).fill_(false);
  }
  // A bias that requires grad: a leaf of every call, differentiated like q, k, v (its tangent: t_b).
  const bool bias_grad = o.mask == "bias-grad";
  Tensor t_b;
  if (bias_grad) {
    mask = at::randn({1, s.heads, s.len, s.len}, opts) * 0.5;
    t_b = at::randn_like(mask);
  }
  const Attention f = implementation(impl == "theria_det" ? "theria" : impl, o.causal, mask.defined(),
                                     kv_heads != s.heads);
  auto run_once = [&](const Inputs& in) {
    std::optional<DeterministicScope> deterministic;
    if (impl == "theria_det") deterministic.emplace();
    if (mode == "fwd") {
      at::AutoGradMode no_grad(false);
      f(in.q, in.k, in.v, mask);
      return;
    }
    if (mode == "jvp") {
      at::AutoGradMode no_grad(false);
      const ForwardAdLevel level;
      const Tensor m = bias_grad ? at::_make_dual(mask, t_b, level.index()) : mask;
      const Tensor out = f(at::_make_dual(in.q, in.t_q, level.index()), at::_make_dual(in.k, in.t_k, level.index()),
                           at::_make_dual(in.v, in.t_v, level.index()), m);
      std::get<1>(at::_unpack_dual(out, level.index()));
      return;
    }
    std::vector<Tensor> x{in.q.detach().requires_grad_(), in.k.detach().requires_grad_(),
                          in.v.detach().requires_grad_()};
    if (bias_grad) x.push_back(mask.detach().requires_grad_());
    const Tensor out = f(x[0], x[1], x[2], bias_grad ? x[3] : mask);
    if (mode == "fwd_bwd") {
      torch::autograd::grad({out}, x, {in.dout});
      return;
    }
    // HVP: backward with create_graph, then the gradient of g along u (the same product H u either way).
    const auto g = torch::autograd::grad({out}, x, {in.dout}, /*retain_graph=*/true, /*create_graph=*/true);
    std::vector<Tensor> u{in.t_q, in.t_k, in.t_v};
    if (bias_grad) u.push_back(t_b);
    if (o.hvp_form == "vjp") {
      torch::autograd::grad(g, x, u);
      return;
    }
    Tensor gu = (g[0] * u[0]).sum();
    for (size_t i = 1; i < g.size(); ++i) gu = gu + (g[i] * u[i]).sum();
    torch::autograd::grad({gu}, x);
  };
  try {
    for (int i = 0; i < o.warmup; ++i) run_once(sets[i % sets.size()]);
    at::cuda::getCurrentCUDAStream().synchronize();
    const auto device = at::cuda::current_device();
    c10::cuda::CUDACachingAllocator::resetPeakStats(device);
    const auto base = c10::cuda::CUDACachingAllocator::getDeviceStats(device)
                          .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
                          .current;
    std::vector<float> times;
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    const auto stream = at::cuda::getCurrentCUDAStream().stream();
    for (int i = 0; i < o.iters; ++i) {
      cudaEventRecord(start, stream);
      run_once(sets[i % sets.size()]);
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    const auto peak = c10::cuda::CUDACachingAllocator::getDeviceStats(device)
                          .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
                          .peak;
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    r.ms = times[times.size() / 2];
    r.tflops = flops(s, o.causal || o.mask == "causal-padding", mode) / (r.ms * 1e-3) / 1e12;
    r.peak_mib = static_cast<double>(peak - base) / (1024.0 * 1024.0);
  } catch (const c10::Error& e) {
    r.error = e.what_without_backtrace();
    r.error = r.error.substr(0, r.error.find('\n'));
  }
  sets.clear();
  c10::cuda::CUDACachingAllocator::emptyCache();
  return r;
}

const char* dtype_name(at::ScalarType t) {
  return t == at::kBFloat16 ? "bf16" : t == at::kHalf ? "fp16" : "fp32";
}

// Speed of `r` relative to `impl` on the same shape and mode: none when that impl was not run for
// it or failed (flash has no forward AD nor double backward, for one).
std::optional<double> speedup_over(const std::vector<Result>& results, const Result& r, const std::string& impl) {
  if (!r.error.empty()) return std::nullopt;
  for (const auto& f : results) {
    if (f.impl == impl && f.mode == r.mode && f.shape.batch == r.shape.batch && f.shape.heads == r.shape.heads &&
        f.shape.len == r.shape.len && f.shape.dim == r.shape.dim && f.error.empty())
      return f.ms / r.ms;
  }
  return std::nullopt;
}

std::string ratio_cell(const std::optional<double>& ratio) {
  if (!ratio) return "\u2014";  // an em dash: not measured, not a zero
  char cell[32];
  std::snprintf(cell, sizeof cell, "%.2fx", *ratio);
  return cell;
}

Json ratio_json(const std::optional<double>& ratio) { return ratio ? number_or_null(*ratio) : Json(nullptr); }

Json result_json(const std::vector<Result>& results, const Result& r) {
  const bool ok = r.error.empty();
  return {{"batch", r.shape.batch},
          {"heads", r.shape.heads},
          {"len", r.shape.len},
          {"dim", r.shape.dim},
          {"mode", r.mode},
          {"impl", r.impl},
          {"ms", ok ? number_or_null(r.ms) : Json(nullptr)},
          {"tflops", ok ? number_or_null(r.tflops) : Json(nullptr)},
          {"peak_mib", ok ? number_or_null(r.peak_mib) : Json(nullptr)},
          // null: flash (math) was not run for this shape and mode, or failed.
          {"vs_flash", ratio_json(speedup_over(results, r, "flash"))},
          {"vs_efficient", ratio_json(speedup_over(results, r, "efficient"))},
          {"vs_math", ratio_json(speedup_over(results, r, "math"))},
          {"error", ok ? Json(nullptr) : Json(r.error)}};
}

int run_bench(const Options& o) {
  TORCH_CHECK(at::hasCUDA(), "theria bench needs a CUDA device");
  at::globalContext().setFloat32MatmulPrecision(o.float32_precision);
  const auto dtype = o.scalar_type();
  std::vector<Result> results;
  for (const auto& s : o.shapes()) {
    for (const auto& mode : o.modes) {
      for (const auto& impl : o.impls) {
        std::fprintf(stderr, "[bench] B=%lld H=%lld L=S=%lld D=%lld %s %s %s ...\n", (long long)s.batch,
                     (long long)s.heads, (long long)s.len, (long long)s.dim, dtype_name(dtype), mode.c_str(),
                     impl.c_str());
        results.push_back(measure(o, s, mode, impl));
      }
    }
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, at::cuda::current_device());
  const bool hvp = std::find(o.modes.begin(), o.modes.end(), "hvp") != o.modes.end();
  const std::string work = (o.kv_heads > 0 ? ", " + std::to_string(o.kv_heads) + " key/value heads (GQA)" : "") +
                           (o.mask == "none" ? "" : ", attn_mask " + o.mask) +
                           (dtype == at::kFloat ? ", float32 matmul precision " + o.float32_precision : "") +
                           (hvp ? ", HVP form " + o.hvp_form : "");
  std::printf("theria bench on %s: %s, %s, median of %d iterations after %d warm-up, %d input sets%s\n\n", prop.name,
              dtype_name(dtype), o.causal ? "causal" : "non-causal", o.iters, o.warmup, o.input_sets, work.c_str());
  std::printf("%-24s %-8s %-10s %10s %9s %11s %10s %9s %9s\n", "shape (B,H,L=S,D)", "mode", "impl", "ms", "TFLOP/s",
              "peak MiB", "vs flash", "vs eff", "vs math");
  for (const auto& r : results) {
    char shape[64];
    std::snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld", (long long)r.shape.batch, (long long)r.shape.heads,
                  (long long)r.shape.len, (long long)r.shape.dim);
    if (!r.error.empty()) {
      std::printf("%-24s %-8s %-10s  error: %s\n", shape, r.mode.c_str(), r.impl.c_str(), r.error.c_str());
      continue;
    }
    // The dash is 3 bytes and one column: pad the ratio cells by hand.
    const auto flash = ratio_cell(speedup_over(results, r, "flash")), math = ratio_cell(speedup_over(results, r, "math")),
               efficient = ratio_cell(speedup_over(results, r, "efficient"));
    auto pad = [](const std::string& cell, int width) {
      const int columns = cell.rfind("\u2014", 0) == 0 ? 1 : static_cast<int>(cell.size());
      return std::string(std::max(0, width - columns), ' ') + cell;
    };
    std::printf("%-24s %-8s %-10s %10.3f %9.1f %11.1f %s %s %s\n", shape, r.mode.c_str(), r.impl.c_str(), r.ms,
                r.tflops, r.peak_mib, pad(flash, 10).c_str(), pad(efficient, 9).c_str(), pad(math, 9).c_str());
  }
  if (!o.json.empty()) {
    Json rows = Json::array();
    for (const auto& r : results) rows.push_back(result_json(results, r));
    write_json(o.json, Json{{"device", prop.name},
                            {"dtype", dtype_name(dtype)},
                            {"causal", o.causal},
                            {"float32_matmul_precision", o.float32_precision},
                            {"kv_heads", o.kv_heads},
                            {"mask", o.mask},
                            {"hvp_form", o.hvp_form},
                            {"results", rows}});
  }
  return 0;
}
#endif

}  // namespace
}  // namespace theria::cli
