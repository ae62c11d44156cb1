// The distributed lab's parts that need no second process (docs/distributed.md): the task blocks, the rank
// environment's checks, one process's collectives, a checkpoint's round trip, and the evaluation sums that add
// across ranks. Several processes: tests/python/test_distributed.py.
#include "distributed/communicator.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace theria::lab {
namespace {

TEST(Distributed, BlocksCoverTheTasksInRankOrder) {
  for (int64_t count : {0, 1, 5, 8, 13}) {
    for (int world : {1, 2, 3, 8}) {
      int64_t next = 0, smallest = count, largest = 0;
      for (int r = 0; r < world; ++r) {
        const Block b = block_of(count, r, world);
        EXPECT_EQ(b.begin, next) << count << " tasks, rank " << r << " of " << world;
        next = b.end;
        smallest = std::min(smallest, b.size());
        largest = std::max(largest, b.size());
      }
      EXPECT_EQ(next, count);
      EXPECT_LE(largest - smallest, 1);  // balanced
    }
  }
}

using EnvVars = std::vector<std::pair<const char*, const char*>>;
struct ScopedEnv {
  explicit ScopedEnv(EnvVars vars) : vars_(std::move(vars)) {
    for (const auto& [k, v] : vars_) setenv(k, v, 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : vars_) unsetenv(k);
  }
  EnvVars vars_;
};

TEST(Distributed, RankEnvironmentErrorsNameTheVariable) {
  {
    ScopedEnv e(EnvVars{{"WORLD_SIZE", "2"}, {"RANK", "2"}});
    EXPECT_THROW(
        try { rank_info_from_environment(); } catch (const c10::Error& err) {
          EXPECT_NE(std::string(err.what()).find("RANK=2 with WORLD_SIZE=2"), std::string::npos) << err.what();
          throw;
        },
        c10::Error);
  }
  {
    ScopedEnv e(EnvVars{{"WORLD_SIZE", "two"}});
    EXPECT_THROW(rank_info_from_environment(), c10::Error);
  }
  {
    ScopedEnv e(EnvVars{{"THERIA_DIST_TIMEOUT_S", "0"}});
    EXPECT_THROW(rank_info_from_environment(), c10::Error);
  }
  const RankInfo alone = rank_info_from_environment();
  EXPECT_EQ(alone.world_size, 1);
  EXPECT_EQ(alone.rank, 0);
}

TEST(Distributed, OneProcessCollectivesReturnTheirInput) {
  const auto comm = Communicator::from_environment(c10::kCPU);
  EXPECT_FALSE(comm->distributed());
  EXPECT_STREQ(comm->backend_name(), "none");
  std::vector<at::Tensor> t{at::arange(5, at::kFloat), at::ones({2, 3}, at::kDouble)};
  const auto before = t[0].clone();
  comm->all_reduce_sum(t, "test");
  EXPECT_TRUE(at::equal(t[0], before));
  EXPECT_EQ(comm->all_reduce_sum({1.5, 2.5}, "test"), (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(comm->all_gather("text", "test"), std::vector<std::string>{"text"});
  comm->check_identical(t, "test");
}

TEST(Distributed, CheckpointRoundTripsEverythingTheRunNeeds) {
  const auto dir = std::filesystem::temp_directory_path() / ("theria_ckpt_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "checkpoint.pt").string();
  TrainCheckpoint c;
  c.fingerprint = "config A";
  c.step = 7;
  c.next_task = 56;
  c.weights = {at::randn({3, 4}), at::randn({5})};
  c.adam.lr = 0.01;
  c.adam.t = 7;
  c.adam.m = {at::randn({3, 4}), at::randn({5})};
  c.adam.v = {at::rand({3, 4}), at::rand({5})};
  c.so_far.initial = {at::randn({3, 4}), at::randn({5})};
  CurvePoint p;
  p.step = 5;
  p.meta_loss = 0.25;
  p.held_out.post_accuracy = std::nan("");  // a diverged evaluation: NaN survives as null
  p.held_out.divergence.where = Divergence::Where::FastWeights;
  p.held_out.divergence.task = 3;
  c.so_far.curve = {CurvePoint{0, std::nullopt, {}}, p};
  c.so_far.applied_meta_steps = 6;
  c.so_far.skipped_meta_steps = 1;
  c.so_far.divergence = {4, "meta-training", p.held_out.divergence};
  save_checkpoint(path, c);

  const auto back = load_checkpoint(path, "config A", at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->step, 7);
  EXPECT_EQ(back->next_task, 56u);
  EXPECT_EQ(back->adam.t, 7);
  EXPECT_DOUBLE_EQ(back->adam.lr, 0.01);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(at::equal(back->weights[i], c.weights[i]));
    EXPECT_TRUE(at::equal(back->adam.m[i], c.adam.m[i]));
    EXPECT_TRUE(at::equal(back->adam.v[i], c.adam.v[i]));
    EXPECT_TRUE(at::equal(back->so_far.initial[i], c.so_far.initial[i]));
  }
  ASSERT_EQ(back->so_far.curve.size(), 2u);
  EXPECT_FALSE(back->so_far.curve[0].meta_loss.has_value());
  EXPECT_DOUBLE_EQ(*back->so_far.curve[1].meta_loss, 0.25);
  EXPECT_TRUE(std::isnan(back->so_far.curve[1].held_out.post_accuracy));
  EXPECT_EQ(back->so_far.curve[1].held_out.divergence.task, 3);
  EXPECT_EQ(back->so_far.divergence.meta_step, 4);
  EXPECT_EQ(back->so_far.applied_meta_steps, 6);
  EXPECT_EQ(back->so_far.skipped_meta_steps, 1);

  EXPECT_THROW(load_checkpoint(path, "config B", at::TensorOptions()), c10::Error);  // another configuration
  EXPECT_FALSE(load_checkpoint((dir / "none.pt").string(), "config A", at::TensorOptions()).has_value());
  std::ofstream((dir / "junk.pt").string()) << "not a checkpoint";
  EXPECT_THROW(load_checkpoint((dir / "junk.pt").string(), "config A", at::TensorOptions()), c10::Error);
  for (const auto& f : std::filesystem::directory_iterator(dir)) std::filesystem::remove(f.path());
  std::filesystem::remove(dir);
}

TEST(Distributed, EvaluationSumsOfTwoBlocksGiveTheWholeEvaluation) {
  TrainConfig c;
  c.model.attention.backend(Backend::Explicit);
  c.eval_tasks = 6;
  const Weights w = init_weights(c.model, 0, at::TensorOptions().dtype(at::kFloat));
  const auto tasks = held_out_tasks(c, 6);
  const Evaluation whole = evaluate(c.model, c.maml, w, tasks);
  auto a = evaluation_sums(c.model, c.maml, w, {tasks.begin(), tasks.begin() + 2});
  const auto b = evaluation_sums(c.model, c.maml, w, {tasks.begin() + 2, tasks.end()});
  a.tasks += b.tasks;
  a.pre_hits += b.pre_hits;
  a.post_hits += b.post_hits;
  a.pre_loss += b.pre_loss;
  a.post_loss += b.post_loss;
  a.variance += b.variance;
  const Evaluation split = evaluation_from(a, c.model.target);
  EXPECT_NEAR(split.pre_accuracy, whole.pre_accuracy, 1e-12);
  EXPECT_NEAR(split.post_accuracy, whole.post_accuracy, 1e-12);
  EXPECT_NEAR(split.post_loss, whole.post_loss, 1e-6);
  EXPECT_NEAR(split.pre_loss, whole.pre_loss, 1e-6);
}

}  // namespace
}  // namespace theria::lab
