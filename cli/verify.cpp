// `theria verify`: for every available device and backend and a table of shapes (masks and grouped-query heads
// among them) and dtypes,
// compares forward, backward, JVP, double backward (HVP) and third order against the float64
// reference (plain ATen composition differentiated by PyTorch on the same rounded inputs), and
// prints backend x derivative x dtype with the worst relative error over the shapes.
#include "commands.h"
#include "forward_ad_level.h"
#include "json_out.h"

#include "reference/reference.h"

#include <theria/sdpa.h>
#include <theria/tolerances.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>

namespace theria::cli {
namespace {

using at::Tensor;
using TensorList = std::vector<Tensor>;

// kLearnedBias: an additive (H, L, S) bias differentiated with q, k, v (its gradient, its row and column of the
// Hessian, its tangent and third-order terms checked with theirs).
enum class Mask { kNone, kKeyPadding, kBias, kCausalPadding, kLearnedBias };

struct Shape {
  std::vector<int64_t> lead;
  int64_t len_q, len_kv, dim_qk, dim_v;
  bool causal;
  int64_t kv_heads = 0;  // grouped-query attention: key/value heads (a divisor of lead.back()); 0: as query
  Mask mask = Mask::kNone;
};

// Odd sizes on purpose: L = 1, L != S both ways, E != Ev, tails that fill no tile; the tensor-core head dims;
// grouped-query heads with a key-padding mask (one batch element sees no key past its first few), with an
// additive mask and under the causal mask; a causal mask passed as a tensor with left padding (whole tiles hidden,
// plain and mixed: the kernels' tile map); a learned bias whose rows are 16-byte multiples (the forward folds it from
// shared memory) beside a partial last key block.
const std::vector<Shape>& shapes(bool quick) {
  static const std::vector<Shape> all{
      {{2, 3}, 5, 7, 4, 6, false},  {{1, 2}, 1, 9, 8, 8, true},     {{2}, 17, 11, 16, 12, true},
      {{2, 3}, 9, 13, 8, 6, false, 1, Mask::kKeyPadding},
      {{1, 2}, 33, 70, 32, 24, false}, {{1, 1}, 64, 64, 64, 64, true}, {{3}, 70, 33, 8, 5, true},
      {{2, 2}, 77, 129, 64, 64, false}, {{1, 3}, 100, 100, 128, 128, true},  // tensor-core head dims
      {{2, 4}, 33, 150, 64, 64, false, 2, Mask::kKeyPadding},
      {{1, 6}, 50, 90, 128, 128, false, 3, Mask::kBias},
      {{2, 4}, 130, 130, 64, 64, true, 2},
      {{2, 3}, 150, 150, 128, 128, false, 0, Mask::kCausalPadding},
      {{2, 4}, 33, 136, 64, 64, false, 0, Mask::kLearnedBias},
  };
  static const std::vector<Shape> few(all.begin(), all.begin() + 4);
  return quick ? few : all;
}

enum Check { kForward, kBackward, kJvp, kDoubleBackward, kThirdOrder, kNumChecks };
constexpr std::array<const char*, kNumChecks> kCheckNames{"forward", "backward", "jvp", "double backward",
                                                          "third order"};
constexpr std::array<Derivative, kNumChecks> kCheckOrder{Derivative::Forward, Derivative::FirstOrder,
                                                         Derivative::FirstOrder, Derivative::SecondOrder,
                                                         Derivative::ThirdOrder};

struct Inputs {
  Tensor q, k, v, dout, u_q, u_k, u_v, w_q, w_k, w_v, t_q, t_k, t_v;
  Tensor mask;  // undefined, bool, or additive in the inputs' dtype
  bool learned = false;  // the mask is differentiated too, along u_m, w_m, t_m
  Tensor u_m, w_m, t_m;
  Inputs to(at::ScalarType dtype, at::Device device) const {
    auto c = [&](const Tensor& t) { return t.defined() ? t.to(device, dtype) : t; };
    const Tensor m = !mask.defined() ? mask : mask.scalar_type() == at::kBool ? mask.to(device) : c(mask);
    return {c(q), c(k), c(v), c(dout), c(u_q), c(u_k), c(u_v), c(w_q), c(w_k), c(w_v), c(t_q), c(t_k), c(t_v), m,
            learned, c(u_m), c(w_m), c(t_m)};
  }
};

Inputs random_inputs(const Shape& s, uint64_t seed) {
  at::manual_seed(seed);
  auto shape = [&](int64_t rows, int64_t cols, bool key_side) {
    auto v = s.lead;
    if (key_side && s.kv_heads > 0) v.back() = s.kv_heads;
    v.push_back(rows);
    v.push_back(cols);
    return v;
  };
  auto r = [&](int64_t rows, int64_t cols) { return at::randn(shape(rows, cols, false), at::kDouble); };
  auto kv = [&](int64_t cols) { return at::randn(shape(s.len_kv, cols, true), at::kDouble); };
  Inputs in{r(s.len_q, s.dim_qk), kv(s.dim_qk),         kv(s.dim_v),  r(s.len_q, s.dim_v), r(s.len_q, s.dim_qk),
            kv(s.dim_qk),         kv(s.dim_v),          r(s.len_q, s.dim_qk), kv(s.dim_qk), kv(s.dim_v),
            r(s.len_q, s.dim_qk), kv(s.dim_qk),         kv(s.dim_v),  Tensor(), false, Tensor(), Tensor(), Tensor()};
  if (s.mask == Mask::kKeyPadding) {  // (lead[0], 1, ..., 1, S): element b keeps its first S - 7 b keys, the last one 3
    std::vector<int64_t> m(s.lead.size() + 2, 1);
    m[0] = s.lead[0];
    m.back() = s.len_kv;
    in.mask = at::ones(m, at::kBool);
    for (int64_t b = 0; b < s.lead[0]; ++b) {
      const int64_t keep = b + 1 == s.lead[0] ? 3 : std::max<int64_t>(1, s.len_kv - 7 * b);
      in.mask.select(0, b).narrow(-1, keep, s.len_kv - keep).fill_(false);
    }
  } else if (s.mask == Mask::kBias) {
    in.mask = at::randn({s.len_q, s.len_kv}, at::kDouble);
  } else if (s.mask == Mask::kLearnedBias) {
    const auto bias = [&] { return at::randn({s.lead.back(), s.len_q, s.len_kv}, at::kDouble); };
    in.mask = bias();
    in.learned = true;
    in.u_m = bias();
    in.w_m = bias();
    in.t_m = bias();
  } else if (s.mask == Mask::kCausalPadding) {  // (lead[0], 1, ..., L, S): query i sees keys j <= i; the last
    std::vector<int64_t> m(s.lead.size() + 2, 1);  // element's first 40 keys are padding
    m[0] = s.lead[0];
    m[m.size() - 2] = s.len_q;
    m.back() = s.len_kv;
    in.mask = at::ones({s.len_q, s.len_kv}, at::kBool).tril().expand(m).contiguous();
    in.mask.select(0, s.lead[0] - 1).narrow(-1, 0, std::min<int64_t>(40, s.len_kv)).fill_(false);
  }
  return in;
}

// (q, k, v, attn_mask): the mask undefined without one.
using Attention = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>;

Tensor inner(const TensorList& a, const TensorList& b) {
  Tensor s = (a[0] * b[0]).sum();
  for (size_t i = 1; i < a.size(); ++i) s = s + (a[i] * b[i]).sum();
  return s;
}

// Every derivative the checks compare, computed through `f` on the given inputs (a learned bias differentiated
// with q, k, v).
std::array<TensorList, kNumChecks> derivatives(const Attention& f, const Inputs& in) {
  std::array<TensorList, kNumChecks> r;
  TensorList x{in.q.detach().requires_grad_(), in.k.detach().requires_grad_(), in.v.detach().requires_grad_()};
  TensorList u{in.u_q, in.u_k, in.u_v}, w{in.w_q, in.w_k, in.w_v};
  if (in.learned) {
    x.push_back(in.mask.detach().requires_grad_());
    u.push_back(in.u_m);
    w.push_back(in.w_m);
  }
  const Tensor out = f(x[0], x[1], x[2], in.learned ? x[3] : in.mask);
  r[kForward] = {out.detach()};
  const auto g = torch::autograd::grad({out}, x, {in.dout}, /*retain_graph=*/true, /*create_graph=*/true);
  r[kBackward] = g;
  // Double backward as an HVP takes it (no graph kept): this is the explicit path. Keeping the
  // graph of the HVP for the third order takes the exact path instead (src/autograd/exact_path.cpp).
  const Tensor gu = inner(g, u);
  r[kDoubleBackward] = torch::autograd::grad({gu}, x, {}, /*retain_graph=*/true, /*create_graph=*/false);
  const auto h = torch::autograd::grad({gu}, x, {}, /*retain_graph=*/true, /*create_graph=*/true);
  r[kThirdOrder] = torch::autograd::grad({inner(h, w)}, x);

  const ForwardAdLevel level;
  const Tensor dual = f(at::_make_dual(in.q, in.t_q, level.index()), at::_make_dual(in.k, in.t_k, level.index()),
                        at::_make_dual(in.v, in.t_v, level.index()),
                        in.learned ? at::_make_dual(in.mask, in.t_m, level.index()) : in.mask);
  r[kJvp] = {std::get<1>(at::_unpack_dual(dual, level.index())).clone()};
  return r;
}

struct Row {
  std::string device, backend, check, dtype;
  double error, tolerance;
  bool pass() const { return error <= tolerance; }
};

struct Options {
  bool quick = false;
  std::string device = "all";
  std::string json;
};

Json row_json(const Row& r) {
  return {{"device", r.device},
          {"backend", r.backend},
          {"derivative", r.check},
          {"dtype", r.dtype},
          {"max_rel_error", number_or_null(r.error)},
          {"tolerance", r.tolerance},
          {"pass", r.pass()},
          // Says why when max_rel_error is null: the error was NaN or infinite.
          {"status", r.pass() ? "pass"
                     : std::isfinite(r.error) ? "fail: error above tolerance"
                                              : "fail: error is " + finite_status(r.error)}};
}

// A dtype, and for float32 the torch.set_float32_matmul_precision setting it runs under: the fused kernels serve
// float32 at "high" (TF32-class: scaled float16 copies or bfloat16-split products) and at "medium" on bfloat16
// ones, each held to its own row.
struct DtypeCase {
  at::ScalarType dtype;
  std::string float32_precision = "highest";
  std::string label() const {
    return dtype == at::kFloat && float32_precision != "highest" ? std::string("float32@") + float32_precision
                                                                 : dtype_name(dtype);
  }
  double tolerance_for(Derivative order) const {
    return dtype == at::kFloat ? float32_tolerance(float32_products_named(float32_precision), order).max_rel_error
                               : tolerance(dtype, order).max_rel_error;
  }
};

// Sets the float32 matmul precision for a scope, and puts the previous one back.
class MatmulPrecision {
 public:
  explicit MatmulPrecision(const std::string& setting) : before_(at::globalContext().float32MatmulPrecision()) {
    at::globalContext().setFloat32MatmulPrecision(setting);
  }
  ~MatmulPrecision() {
    at::globalContext().setFloat32MatmulPrecision(before_ == at::Float32MatmulPrecision::MEDIUM ? "medium"
                                                  : before_ == at::Float32MatmulPrecision::HIGH ? "high"
                                                                                                : "highest");
  }
  MatmulPrecision(const MatmulPrecision&) = delete;
  MatmulPrecision& operator=(const MatmulPrecision&) = delete;

 private:
  at::Float32MatmulPrecision before_;
};

int run_verify(const Options& opt) {
  struct Target {
    at::Device device;
    Backend backend;
    std::vector<DtypeCase> dtypes;
  };
  std::vector<Target> targets;
  std::vector<std::string> notes;
  if (opt.device != "cuda") {
    for (auto b : {Backend::Reference, Backend::Explicit}) {
      targets.push_back({at::kCPU, b, {{at::kDouble}, {at::kFloat}, {at::kBFloat16}}});
    }
  }
  if (opt.device != "cpu") {
    if (at::hasCUDA()) {
      const std::vector<DtypeCase> gpu_dtypes{{at::kDouble}, {at::kFloat}, {at::kHalf}, {at::kBFloat16}};
      targets.push_back({at::Device(at::kCUDA, 0), Backend::Reference, gpu_dtypes});
      if (fused_kernels_built()) {
        auto fused_dtypes = gpu_dtypes;
        fused_dtypes.push_back({at::kFloat, "high"});
        fused_dtypes.push_back({at::kFloat, "medium"});
        targets.push_back({at::Device(at::kCUDA, 0), Backend::Fused, fused_dtypes});
      } else {
        notes.push_back("cuda/fused: not checked, this build has no fused CUDA kernels");
      }
    } else {
      notes.push_back("cuda: not checked, no CUDA device available");
    }
  }

  std::vector<Row> rows;
  const auto& cases = shapes(opt.quick);
  for (const auto& target : targets) {
    for (const auto& dtype_case : target.dtypes) {
      const at::ScalarType dtype = dtype_case.dtype;
      const MatmulPrecision precision(dtype_case.float32_precision);
      std::array<double, kNumChecks> worst{};
      for (size_t c = 0; c < cases.size(); ++c) {
        const Shape& s = cases[c];
        const Inputs base = random_inputs(s, 1000 + c);
        const Inputs in = base.to(dtype, target.device);
        // The oracle sees exactly the rounded inputs the backend sees.
        const Inputs ref_in = in.to(at::kDouble, at::kCPU);
        const double scale = 1.0 / std::sqrt(static_cast<double>(s.dim_qk));
        const auto got = derivatives(
            [&](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& m) {
              auto options = SdpaOptions().causal(s.causal).backend(target.backend).enable_gqa(s.kv_heads > 0);
              if (m.defined()) options.attn_mask(m);
              return sdpa(q, k, v, options);
            },
            in);
        const auto want = derivatives(
            [&](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& m) {
              return reference::sdpa_math(q, k, v, s.causal, scale,
                                          m.defined() ? std::optional<Tensor>(m) : std::nullopt);
            },
            ref_in);
        for (int ch = 0; ch < kNumChecks; ++ch) {
          worst[ch] = std::max(worst[ch], max_relative_error(got[ch], want[ch]));
        }
      }
      for (int ch = 0; ch < kNumChecks; ++ch) {
        rows.push_back({target.device.is_cuda() ? "cuda" : "cpu", backend_name(target.backend), kCheckNames[ch],
                        dtype_case.label(), worst[ch], dtype_case.tolerance_for(kCheckOrder[ch])});
      }
      std::fprintf(stderr, "[verify] %s %s %s done\n", target.device.is_cuda() ? "cuda" : "cpu",
                   backend_name(target.backend), dtype_case.label().c_str());
    }
  }

  std::printf("theria verify: %zu shapes per row, error = max|x - ref| / max(max|ref|, 1) against float64\n\n",
              cases.size());
  std::printf("%-6s %-10s %-16s %-14s %13s %11s  %s\n", "device", "backend", "derivative", "dtype",
              "max rel err", "tolerance", "result");
  int failed = 0;
  for (const auto& r : rows) {
    std::printf("%-6s %-10s %-16s %-14s %13.3e %11.1e  %s\n", r.device.c_str(), r.backend.c_str(), r.check.c_str(),
                r.dtype.c_str(), r.error, r.tolerance, r.pass() ? "pass" : "FAIL");
    failed += r.pass() ? 0 : 1;
  }
  for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
  if (!opt.json.empty()) {
    Json table = Json::array();
    for (const auto& r : rows) table.push_back(row_json(r));
    write_json(opt.json, table);
  }
  std::printf("\nverify: %d passed, %d failed\n", static_cast<int>(rows.size()) - failed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace

Run add_verify(CLI::App& command) {
  auto o = std::make_shared<Options>();
  command.add_flag("--quick", o->quick, "four shapes instead of all " + std::to_string(shapes(false).size()));
  command.add_option("--device", o->device, "which devices to check (all: every available one)")
      ->check(CLI::IsMember({"cpu", "cuda", "all"}))
      ->capture_default_str();
  command.add_option("--json", o->json, "also write the table to FILE as JSON")->type_name("FILE");
  return [o] { return run_verify(*o); };
}

}  // namespace theria::cli
