// `theria bench`: times theria's fused backend against PyTorch's own SDPA backends in the same run
// (flash for first order; math, the only PyTorch backend with higher derivatives, for JVP / HVP),
// with CUDA events, warm-up, the median over many iterations, and input sets rotated so that
// timings do not come from L2. Reports ms, TFLOP/s and the peak memory a call adds.
#include "commands.h"

#include <theria/sdpa.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/forward_grad.h>
#endif

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

namespace theria::cli {

#ifndef THERIA_WITH_FUSED
int bench(const Args&) {
  std::fprintf(stderr, "theria bench: this build has no CUDA kernels; build with a CUDA toolkit and run on a GPU\n");
  return 2;
}
#else
namespace {

using at::Tensor;

struct Shape {
  int64_t batch, heads, len, dim;
};

struct Options {
  std::vector<Shape> shapes;
  at::ScalarType dtype = at::kBFloat16;
  bool causal = false;
  std::vector<std::string> modes{"fwd", "fwd_bwd"};
  std::vector<std::string> impls{"theria", "flash", "math"};
  int warmup = 10, iters = 50, input_sets = 3;
  std::string json;
};

std::vector<Shape> preset(const std::string& name, const std::vector<int64_t>& dims) {
  std::vector<Shape> s;
  for (const int64_t d : dims) {
    if (name == "small") s.push_back({2, 8, 512, d});
    else if (name == "medium") s.push_back({8, 16, 2048, d});
    else if (name == "large") s.push_back({2, 16, 8192, d});
    else TORCH_CHECK(false, "--preset must be small, medium or large, got '", name, "'");
  }
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

Options parse(const Args& args) {
  Options o;
  std::string preset_name = "medium";
  std::vector<int64_t> dims{64};
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    auto value = [&]() -> std::string {
      TORCH_CHECK(i + 1 < args.size(), "option ", a, " needs a value");
      return args[++i];
    };
    if (a == "--preset") preset_name = value();
    else if (a == "--head-dim") {
      dims.clear();
      for (const auto& d : split(value())) dims.push_back(std::stoll(d));
    } else if (a == "--dtype") {
      const auto d = value();
      if (d == "bf16" || d == "bfloat16") o.dtype = at::kBFloat16;
      else if (d == "fp16" || d == "float16") o.dtype = at::kHalf;
      else if (d == "fp32" || d == "float32") o.dtype = at::kFloat;
      else TORCH_CHECK(false, "--dtype must be bf16, fp16 or fp32, got '", d, "'");
    } else if (a == "--causal") o.causal = true;
    else if (a == "--mode") o.modes = split(value());
    else if (a == "--impl") o.impls = split(value());
    else if (a == "--iters") o.iters = std::stoi(value());
    else if (a == "--warmup") o.warmup = std::stoi(value());
    else if (a == "--json") o.json = value();
    else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: theria bench [--preset small|medium|large] [--head-dim 64,128] [--dtype bf16|fp16|fp32]\n"
          "                    [--causal] [--mode fwd,fwd_bwd,jvp,hvp] [--impl theria,flash,math] [--iters N]\n"
          "                    [--warmup N] [--json FILE]\n"
          "  presets (B, H, L=S): small (2, 8, 512), medium (8, 16, 2048), large (2, 16, 8192)\n"
          "  impl: theria (backend fused), flash / math (PyTorch's own SDPA backends)\n"
          "  mode: fwd; fwd_bwd; jvp (forward AD); hvp (backward with create_graph, then grad of <g, u>)\n");
      std::exit(0);
    } else {
      TORCH_CHECK(false, "unknown option '", a, "' (see theria bench --help)");
    }
  }
  o.shapes = preset(preset_name, dims);
  for (const auto& m : o.modes) {
    TORCH_CHECK(m == "fwd" || m == "fwd_bwd" || m == "jvp" || m == "hvp", "--mode takes fwd, fwd_bwd, jvp, hvp; got ", m);
  }
  return o;
}

using Attention = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

// A forward-AD level released even when the timed call throws (PyTorch allows one level at a time).
struct DualLevel {
  uint64_t level = torch::autograd::ForwardADLevel::get_next_idx();
  ~DualLevel() { torch::autograd::ForwardADLevel::release_idx(level); }
};

Attention implementation(const std::string& impl, bool causal) {
  if (impl == "theria") {
    return [causal](const Tensor& q, const Tensor& k, const Tensor& v) {
      return sdpa(q, k, v, SdpaOptions().causal(causal).backend(Backend::Fused));
    };
  }
  if (impl == "flash") {
    return [causal](const Tensor& q, const Tensor& k, const Tensor& v) {
      return std::get<0>(at::_scaled_dot_product_flash_attention(q, k, v, 0.0, causal));
    };
  }
  if (impl == "math") {
    return [causal](const Tensor& q, const Tensor& k, const Tensor& v) {
      return std::get<0>(at::_scaled_dot_product_attention_math(q, k, v, {}, 0.0, causal));
    };
  }
  TORCH_CHECK(false, "--impl takes theria, flash, math; got ", impl);
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
  Result r{s, mode, impl};
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(o.dtype);
  std::vector<Inputs> sets;
  for (int i = 0; i < o.input_sets; ++i) {
    auto r = [&] { return at::randn({s.batch, s.heads, s.len, s.dim}, opts); };
    sets.push_back({r(), r(), r(), r(), r(), r(), r()});
  }
  const Attention f = implementation(impl, o.causal);
  auto run_once = [&](const Inputs& in) {
    if (mode == "fwd") {
      at::AutoGradMode no_grad(false);
      f(in.q, in.k, in.v);
      return;
    }
    if (mode == "jvp") {
      at::AutoGradMode no_grad(false);
      const DualLevel dual;
      const Tensor out = f(at::_make_dual(in.q, in.t_q, dual.level), at::_make_dual(in.k, in.t_k, dual.level),
                           at::_make_dual(in.v, in.t_v, dual.level));
      std::get<1>(at::_unpack_dual(out, dual.level));
      return;
    }
    const Tensor q = in.q.detach().requires_grad_(), k = in.k.detach().requires_grad_(),
                 v = in.v.detach().requires_grad_();
    const Tensor out = f(q, k, v);
    if (mode == "fwd_bwd") {
      torch::autograd::grad({out}, {q, k, v}, {in.dout});
      return;
    }
    // HVP as MAML takes it: backward with create_graph, then the gradient of <g, u>.
    const auto g = torch::autograd::grad({out}, {q, k, v}, {in.dout}, /*retain_graph=*/true, /*create_graph=*/true);
    const Tensor gu = (g[0] * in.t_q).sum() + (g[1] * in.t_k).sum() + (g[2] * in.t_v).sum();
    torch::autograd::grad({gu}, {q, k, v});
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
    r.tflops = flops(s, o.causal, mode) / (r.ms * 1e-3) / 1e12;
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

}  // namespace

int bench(const Args& args) {
  const Options o = parse(args);
  TORCH_CHECK(at::hasCUDA(), "theria bench needs a CUDA device");
  std::vector<Result> results;
  for (const auto& s : o.shapes) {
    for (const auto& mode : o.modes) {
      for (const auto& impl : o.impls) {
        std::fprintf(stderr, "[bench] B=%lld H=%lld L=S=%lld D=%lld %s %s %s ...\n", (long long)s.batch,
                     (long long)s.heads, (long long)s.len, (long long)s.dim, dtype_name(o.dtype), mode.c_str(),
                     impl.c_str());
        results.push_back(measure(o, s, mode, impl));
      }
    }
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, at::cuda::current_device());
  std::printf("theria bench on %s: %s, %s, median of %d iterations after %d warm-up, %d input sets\n\n", prop.name,
              dtype_name(o.dtype), o.causal ? "causal" : "non-causal", o.iters, o.warmup, o.input_sets);
  std::printf("%-24s %-8s %-7s %10s %9s %11s %10s %9s\n", "shape (B,H,L=S,D)", "mode", "impl", "ms", "TFLOP/s",
              "peak MiB", "vs flash", "vs math");
  for (const auto& r : results) {
    char shape[64];
    std::snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld", (long long)r.shape.batch, (long long)r.shape.heads,
                  (long long)r.shape.len, (long long)r.shape.dim);
    if (!r.error.empty()) {
      std::printf("%-24s %-8s %-7s  error: %s\n", shape, r.mode.c_str(), r.impl.c_str(), r.error.c_str());
      continue;
    }
    // Speed relative to PyTorch's flash / math backends on the same shape and mode (0: not measured).
    auto ratio = [&](const char* impl) {
      for (const auto& f : results) {
        if (f.impl == impl && f.mode == r.mode && f.shape.dim == r.shape.dim && f.shape.len == r.shape.len &&
            f.error.empty())
          return f.ms / r.ms;
      }
      return 0.0;
    };
    std::printf("%-24s %-8s %-7s %10.3f %9.1f %11.1f %9.2fx %8.2fx\n", shape, r.mode.c_str(), r.impl.c_str(), r.ms,
                r.tflops, r.peak_mib, ratio("flash"), ratio("math"));
  }
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << "{\"device\": \"" << prop.name << "\", \"dtype\": \"" << dtype_name(o.dtype)
      << "\", \"causal\": " << (o.causal ? "true" : "false") << ", \"results\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      f << "  {\"batch\": " << r.shape.batch << ", \"heads\": " << r.shape.heads << ", \"len\": " << r.shape.len
        << ", \"dim\": " << r.shape.dim << ", \"mode\": \"" << r.mode << "\", \"impl\": \"" << r.impl
        << "\", \"ms\": " << r.ms << ", \"tflops\": " << r.tflops << ", \"peak_mib\": " << r.peak_mib
        << ", \"error\": \"" << r.error << "\"}" << (i + 1 < results.size() ? ",\n" : "\n");
    }
    f << "]}\n";
  }
  return 0;
}
#endif

}  // namespace theria::cli
