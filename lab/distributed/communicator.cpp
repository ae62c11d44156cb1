#include "distributed/communicator.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

namespace theria::lab {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = env(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  TORCH_CHECK(end != v && *end == '\0', "environment variable ", name, "='", v, "' is not an integer");
  return x;
}

}  // namespace

RankInfo rank_info_from_environment(int64_t default_timeout_s) {
  RankInfo r;
  r.world_size = static_cast<int>(env_int("WORLD_SIZE", 1));
  TORCH_CHECK(r.world_size >= 1, "WORLD_SIZE=", r.world_size, ": expected at least 1");
  r.rank = static_cast<int>(env_int("RANK", 0));
  TORCH_CHECK(r.rank >= 0 && r.rank < r.world_size, "RANK=", r.rank, " with WORLD_SIZE=", r.world_size,
              ": expected 0 <= RANK < WORLD_SIZE");
  r.local_rank = static_cast<int>(env_int("LOCAL_RANK", r.rank));
  TORCH_CHECK(r.local_rank >= 0, "LOCAL_RANK=", r.local_rank, ": expected >= 0");
  if (const char* a = env("MASTER_ADDR")) r.master_addr = a;
  r.master_port = static_cast<int>(env_int("MASTER_PORT", r.master_port));
  TORCH_CHECK(r.master_port > 0 && r.master_port < 65536, "MASTER_PORT=", r.master_port, ": not a port");
  if (env("WORLD_SIZE") != nullptr) {
    TORCH_CHECK(env("MASTER_ADDR") && env("MASTER_PORT"), "WORLD_SIZE=", r.world_size,
                " needs MASTER_ADDR and MASTER_PORT (torchrun sets them; docs/distributed.md)");
  }
  const int64_t timeout_s = env_int("THERIA_DIST_TIMEOUT_S", default_timeout_s);
  TORCH_CHECK(timeout_s > 0, "THERIA_DIST_TIMEOUT_S=", timeout_s, ": expected seconds > 0");
  r.timeout = std::chrono::milliseconds(timeout_s * 1000);
  return r;
}

Block block_of(int64_t count, int rank, int world) {
  const int64_t base = count / world, extra = count % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

c10::Device rank_device(c10::DeviceType type) {
  if (type != c10::kCUDA) return c10::Device(type);
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(rank_info_from_environment().local_rank));
}

struct Communicator::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  c10::Device device = c10::Device(c10::kCPU);  // where the collectives' tensors live
  const char* name = "none";
};

Communicator::Communicator(RankInfo info, std::unique_ptr<Group> group)
    : info_(std::move(info)), group_(std::move(group)) {}
Communicator::~Communicator() = default;

const Communicator& Communicator::single() {
  static const Communicator one(RankInfo{}, nullptr);
  return one;
}

std::unique_ptr<Communicator> Communicator::from_environment(c10::DeviceType device_type, int64_t default_timeout_s) {
  RankInfo info = rank_info_from_environment(default_timeout_s);
  // A launcher's world of one (torchrun --nproc-per-node 1) still gets its process group, as torch.distributed gives
  // it: the collectives run, only without peers. No launcher (no WORLD_SIZE): none.
  if (env("WORLD_SIZE") == nullptr) return std::unique_ptr<Communicator>(new Communicator(info, nullptr));
  auto group = std::make_unique<Group>();
  // Under torchrun the agent already serves a store at MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE): every
  // rank joins it as a client, and a restart's keys are kept apart by its restart count, as torch.distributed does.
  const char* agent_store = env("TORCHELASTIC_USE_AGENT_STORE");
  const bool use_agent = agent_store != nullptr && std::strcmp(agent_store, "True") == 0;
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(info.master_port);
  so.isServer = !use_agent && info.rank == 0;
  so.numWorkers = use_agent ? std::nullopt : std::optional<size_t>(info.world_size);
  so.waitWorkers = !use_agent;
  so.timeout = info.timeout;
  try {
    auto tcp = c10::make_intrusive<c10d::TCPStore>(info.master_addr, so);
    group->store = c10::make_intrusive<c10d::PrefixStore>(
        "theria/" + std::to_string(env_int("TORCHELASTIC_RESTART_COUNT", 0)), tcp);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", info.rank, " of ", info.world_size, ": cannot reach the rendezvous store at ",
                info.master_addr, ":", info.master_port, " within ", info.timeout.count() / 1000, " s: ", e.what());
  }
  if (device_type == c10::kCUDA) {
#ifdef USE_C10D_NCCL
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(info.local_rank));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = info.timeout;
    group->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, info.rank, info.world_size, opts);
    group->device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(info.local_rank));
    group->name = "nccl";
#else
    TORCH_CHECK(false, "this build of theria has no NCCL process group (a CPU build, or nccl.h was not found when it "
                       "was configured): distributed runs on CUDA need it");
#endif
  } else {
#ifdef USE_C10D_GLOO
    auto opts = c10d::ProcessGroupGloo::Options::create(info.timeout);
    // As torch.distributed: GLOO_SOCKET_IFNAME names the interface, else this host's name (or the loopback).
    const char* ifname = env("GLOO_SOCKET_IFNAME");
    opts->devices.push_back(ifname != nullptr ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                              : c10d::ProcessGroupGloo::createDefaultDevice());
    group->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, info.rank, info.world_size, opts);
    group->name = "gloo";
#else
    TORCH_CHECK(false, "this build of theria has no Gloo process group (gloo's headers, Debian's libgloo-dev, were "
                       "not found when it was configured): distributed runs on the CPU need it");
#endif
  }
  return std::unique_ptr<Communicator>(new Communicator(info, std::move(group)));
}

const char* Communicator::backend_name() const { return group_ ? group_->name : "none"; }

template <class Fn>
void Communicator::collective(const std::string& what, Fn&& fn) const {
  auto fail = [&](const char* why) {
    TORCH_CHECK(false, "rank ", info_.rank, " of ", info_.world_size, ": the collective '", what, "' (",
                backend_name(), ") failed: another rank has exited or did not join it within ",
                info_.timeout.count() / 1000, " s (THERIA_DIST_TIMEOUT_S); that rank's output says why. ", why);
  };
  try {
    fn();
  } catch (const c10::Error& e) {
    fail(e.what_without_backtrace());
  } catch (const std::exception& e) {
    fail(e.what());
  }
}

void Communicator::all_reduce_sum(std::vector<at::Tensor>& tensors, const std::string& what) const {
  if (!group_) return;
  // Buckets: runs of consecutive tensors of one dtype, at most kBucketBytes each (a longer tensor goes alone).
  size_t begin = 0;
  while (begin < tensors.size()) {
    size_t end = begin + 1;
    int64_t bytes = tensors[begin].numel() * tensors[begin].element_size();
    while (end < tensors.size() && tensors[end].scalar_type() == tensors[begin].scalar_type() &&
           bytes + tensors[end].numel() * tensors[end].element_size() <= kBucketBytes) {
      bytes += tensors[end].numel() * tensors[end].element_size();
      ++end;
    }
    std::vector<at::Tensor> flat_parts;
    for (size_t i = begin; i < end; ++i) flat_parts.push_back(tensors[i].reshape(-1));
    std::vector<at::Tensor> message{at::cat(flat_parts).to(group_->device)};
    collective(what, [&] { group_->backend->allreduce(message)->wait(); });
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(message[0].narrow(0, offset, n).view(tensors[i].sizes()));
      offset += n;
    }
    begin = end;
  }
}

std::vector<double> Communicator::all_reduce_sum(const std::vector<double>& values, const std::string& what) const {
  if (!group_ || values.empty()) return values;
  std::vector<at::Tensor> t{at::tensor(values, at::kDouble)};
  all_reduce_sum(t, what);
  const auto cpu = t[0].cpu();
  return std::vector<double>(cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel());
}

std::vector<std::string> Communicator::all_gather(const std::string& text, const std::string& what) const {
  if (!group_) return {text};
  const auto opts = at::TensorOptions().device(group_->device);
  const int world = info_.world_size;
  // The lengths first, then every text padded to the longest.
  std::vector<at::Tensor> mine{at::full({1}, static_cast<int64_t>(text.size()), opts.dtype(at::kLong))};
  std::vector<std::vector<at::Tensor>> lengths(1);
  for (int r = 0; r < world; ++r) lengths[0].push_back(at::empty({1}, opts.dtype(at::kLong)));
  collective(what, [&] { group_->backend->allgather(lengths, mine)->wait(); });
  std::vector<int64_t> n(world);
  int64_t longest = 1;
  for (int r = 0; r < world; ++r) longest = std::max(longest, n[r] = lengths[0][r].item<int64_t>());
  auto bytes = at::zeros({longest}, at::kByte);
  std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), text.size());
  std::vector<at::Tensor> payload{bytes.to(group_->device)};
  std::vector<std::vector<at::Tensor>> gathered(1);
  for (int r = 0; r < world; ++r) gathered[0].push_back(at::empty({longest}, opts.dtype(at::kByte)));
  collective(what, [&] { group_->backend->allgather(gathered, payload)->wait(); });
  std::vector<std::string> out;
  for (int r = 0; r < world; ++r) {
    const auto cpu = gathered[0][r].cpu();
    out.emplace_back(reinterpret_cast<const char*>(cpu.data_ptr<uint8_t>()), static_cast<size_t>(n[r]));
  }
  return out;
}

void Communicator::barrier(const std::string& what) const {
  if (!group_) return;
  // A one-number all-reduce: c10d's NCCL barrier guesses a device, this names the rank's own.
  all_reduce_sum(std::vector<double>{0.0}, what);
}

void Communicator::check_identical(const std::vector<at::Tensor>& tensors, const std::string& what) const {
  if (!group_) return;
  // Per tensor: its sum and a position-weighted sum (a permutation changes the second), in float64; then the
  // element-wise max of (c, -c) over the ranks: max(c) == -max(-c) exactly when every rank has the same c.
  std::vector<double> c;
  for (const auto& t : tensors) {
    const auto x = t.detach().to(at::kDouble).reshape(-1);
    const auto weight = at::arange(1, x.numel() + 1, x.options()).remainder(97).add_(1);
    c.push_back(x.sum().item<double>());
    c.push_back((x * weight).sum().item<double>());
  }
  const size_t n = c.size();
  for (size_t i = 0; i < n; ++i) c.push_back(-c[i]);
  std::vector<at::Tensor> t{at::tensor(c, at::kDouble).to(group_->device)};
  c10d::AllreduceOptions max;
  max.reduceOp = c10d::ReduceOp::MAX;
  collective(what, [&] { group_->backend->allreduce(t, max)->wait(); });
  const auto r = t[0].cpu();
  const double* v = r.data_ptr<double>();
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(v[i] == -v[n + i], "rank ", info_.rank, " of ", info_.world_size, ": ", what,
                ": the ranks' replicas differ (tensor ", i / 2, ": checksum from ", -v[n + i], " to ", v[i], ")");
  }
}

EndTogether::~EndTogether() {
  if (std::uncaught_exceptions() > exceptions_) return;
  try {
    comm_.barrier("the end of the run");
  } catch (const std::exception&) {
  }
}

}  // namespace theria::lab
