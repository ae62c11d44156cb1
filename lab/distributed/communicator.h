// The ranks of one lab run and the collectives they need (docs/distributed.md), on PyTorch's own distributed engine:
// c10d's ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL (CUDA tensors) over a TCPStore, configured from the
// environment that torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without WORLD_SIZE the run
// is one process with no process group, and every collective returns its input: the lab's code has one path. (A
// launcher's world of one has its process group, as torch.distributed gives it.)
//
// A collective that fails (a rank that died, or one that did not join within the timeout) throws an error that
// says which collective, on which rank, and what to look at; it never hangs longer than the timeout
// (THERIA_DIST_TIMEOUT_S; by default 1800 s, PyTorch's, for meta-training, whose ranks meet every meta-step, and
// longer for a study, whose ranks meet once per phase: it bounds how long a rank waits for the slowest). A rank that
// dies is noticed at once (its connections close); the timeout is for a rank that stalls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <exception>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace theria::lab {

// Where this process sits among the run's processes, as the environment says.
struct RankInfo {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{1800 * 1000};
};
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, THERIA_DIST_TIMEOUT_S; an error naming the variable when
// one does not parse or the ranks are inconsistent.
// default_timeout_s applies when THERIA_DIST_TIMEOUT_S is not set.
RankInfo rank_info_from_environment(int64_t default_timeout_s = 1800);

// Items [begin, end) of `count` that rank `rank` of `world` takes: contiguous blocks in rank order, the first
// count % world ranks one longer, so that the blocks' union in rank order is 0 .. count - 1.
struct Block {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Block block_of(int64_t count, int rank, int world);

// The device this process computes on: one GPU per rank, cuda:LOCAL_RANK (cuda:0 alone), or the CPU.
c10::Device rank_device(c10::DeviceType type);

class Communicator {
 public:
  // The process group of the environment, its collectives on `device_type`: CPU (Gloo) or CUDA (NCCL, this rank's
  // GPU cuda:LOCAL_RANK). No WORLD_SIZE: no process group at all.
  static std::unique_ptr<Communicator> from_environment(c10::DeviceType device_type, int64_t default_timeout_s = 1800);
  // This process alone.
  static const Communicator& single();

  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return info_.rank; }
  int world_size() const { return info_.world_size; }
  int local_rank() const { return info_.local_rank; }
  bool is_root() const { return info_.rank == 0; }
  // Whether there is a process group (the collectives run), even of one rank.
  bool distributed() const { return group_ != nullptr; }
  // "gloo", "nccl" or "none".
  const char* backend_name() const;

  // Sums `tensors` over the ranks, in place. Tensors of one dtype travel as one flat message per bucket of at most
  // kBucketBytes (few large messages, not one per tensor); `what` names the collective in an error.
  static constexpr int64_t kBucketBytes = 64ll << 20;
  void all_reduce_sum(std::vector<at::Tensor>& tensors, const std::string& what) const;
  // The same for a few numbers, in float64.
  std::vector<double> all_reduce_sum(const std::vector<double>& values, const std::string& what) const;
  // Every rank's `text`, in rank order, on every rank.
  std::vector<std::string> all_gather(const std::string& text, const std::string& what) const;
  void barrier(const std::string& what) const;

  // Throws unless every rank holds the same values (a checksum of each tensor, compared by an all-reduce of the
  // checksums and of their negations: max == min). The replicas' debug check of meta-training.
  void check_identical(const std::vector<at::Tensor>& tensors, const std::string& what) const;

 private:
  struct Group;
  Communicator(RankInfo info, std::unique_ptr<Group> group);
  // Runs one collective, turning c10d's failure into the error this header describes.
  template <class Fn>
  void collective(const std::string& what, Fn&& fn) const;

  RankInfo info_;
  std::unique_ptr<Group> group_;  // null for one process
};

// Holds the ranks together at the end of a run: its destructor waits until every rank gets there, so that no rank
// takes its connections down while another still uses them (a Gloo rank that tears down while its peer is still
// connected was measured to abort now and then: 2 in 15 runs of examples/distributed_maml.py under CPU load, 0 in 15
// with the final barrier). A failed wait is ignored: it means a rank is gone already, and the run is ending. Left by
// an exception, it does not wait: the other ranks may be inside another collective, which a barrier must not meet
// (a collective of another size can abort the peer); they see this rank's connections close instead.
class EndTogether {
 public:
  explicit EndTogether(const Communicator& comm) : comm_(comm), exceptions_(std::uncaught_exceptions()) {}
  ~EndTogether();
  EndTogether(const EndTogether&) = delete;
  EndTogether& operator=(const EndTogether&) = delete;

 private:
  const Communicator& comm_;
  int exceptions_;  // in flight at construction: more at destruction means unwinding
};

}  // namespace theria::lab
