// The sweep's aggregation against hand-computed cases (docs/sweep.md): curve metrics, FULL - FO gaps paired by
// seed, the depth trend, and the regime rules.
#include "studies/sweep.h"
#include "studies/sweep_rules.h"

#include <gtest/gtest.h>

#include <cmath>

namespace theria::lab {
namespace {

CurvePoint point(int64_t step, double accuracy) {
  CurvePoint p;
  p.step = step;
  p.held_out.post_accuracy = accuracy;
  return p;
}

TEST(SweepMetrics, CurveMetricsOfAHandComputedCurve) {
  const auto m = curve_metrics({point(0, 0.25), point(25, 0.5), point(50, 0.95), point(100, 1.0)});
  EXPECT_DOUBLE_EQ(m.final_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(m.steps_to_90, 50.0);  // 90 % of the gain: 0.25 + 0.9 * 0.75 = 0.925, first reached at 50
  EXPECT_DOUBLE_EQ(m.area_under_curve, (0.375 * 25 + 0.725 * 25 + 0.975 * 50) / 100.0);
  // No gain: no step reaches 90 % of it.
  EXPECT_TRUE(std::isnan(curve_metrics({point(0, 0.3), point(50, 0.25)}).steps_to_90));
  // A diverged run (NaN at the end) has no metrics.
  EXPECT_TRUE(std::isnan(curve_metrics({point(0, 0.3), point(50, std::nan(""))}).final_accuracy));
}

SweepCell cell(int64_t steps, MamlMode mode, uint64_t seed, double accuracy) {
  SweepCell c;
  c.inner_steps = steps;
  c.mode = mode;
  c.backend = Backend::Explicit;
  c.seed = seed;
  c.metrics.final_accuracy = accuracy;
  c.metrics.area_under_curve = accuracy / 2;
  c.metrics.steps_to_90 = 10.0;
  return c;
}

TEST(SweepRules, GapsAndTrendArePairedBySeed) {
  SweepConfig c;
  c.inner_steps = {5, 1};  // the trend runs from the shallowest to the deepest whatever the order given
  c.modes = {MamlMode::Full, MamlMode::FirstOrder};
  c.backends = {Backend::Explicit};
  c.seeds = 3;
  SweepRaw raw;
  const double full1[] = {0.9, 0.8, 1.0}, fo1[] = {0.5, 0.6, 0.55}, full5[] = {0.9, 0.9, 0.9}, fo5[] = {0.9, 0.85, 0.95};
  for (uint64_t s = 0; s < 3; ++s) {
    raw.cells.push_back(cell(1, MamlMode::Full, s, full1[s]));
    raw.cells.push_back(cell(1, MamlMode::FirstOrder, s, fo1[s]));
    raw.cells.push_back(cell(5, MamlMode::Full, s, full5[s]));
    raw.cells.push_back(cell(5, MamlMode::FirstOrder, s, fo5[s]));
  }
  const auto summary = summarize_sweep(c, raw);
  ASSERT_EQ(summary.rows.size(), 4u);
  ASSERT_EQ(summary.gaps.size(), 2u);
  const auto& g5 = summary.gaps[0];
  const auto& g1 = summary.gaps[1];
  ASSERT_EQ(g1.inner_steps, 1);
  // Differences 0.4, 0.2, 0.45: mean 0.35, sd sqrt(0.0175), half-width 4.303 sd / sqrt(3).
  const double half1 = 4.303 * std::sqrt(0.0175) / std::sqrt(3.0);
  EXPECT_NEAR(g1.final_accuracy.mean, 0.35, 1e-12);
  EXPECT_NEAR(g1.final_accuracy.low, 0.35 - half1, 1e-12);
  EXPECT_EQ(g1.regime, "FULL better");
  EXPECT_NEAR(g5.final_accuracy.mean, 0.0, 1e-12);
  EXPECT_EQ(g5.regime, "no difference detected");
  // Unpaired, the depth-1 arms overlap (FULL 0.9 +- 0.25, FO 0.55 +- 0.12 on their own): pairing is what separates.
  ASSERT_EQ(summary.trends.size(), 1u);
  const auto& t = summary.trends[0];
  EXPECT_EQ(t.from_steps, 1);
  EXPECT_EQ(t.to_steps, 5);
  // gap(5) - gap(1) = -0.4, -0.15, -0.5: mean -0.35, sd sqrt(0.0325).
  EXPECT_NEAR(t.change.mean, -0.35, 1e-12);
  EXPECT_NEAR(t.change.high, -0.35 + 4.303 * std::sqrt(0.0325) / std::sqrt(3.0), 1e-12);
  EXPECT_EQ(t.verdict, "no change detected");
}

TEST(SweepRules, RegimesFollowTheInterval) {
  Interval i;
  i.n = 5;
  i.mean = 0.1;
  i.low = 0.02;
  i.high = 0.18;
  EXPECT_EQ(gap_regime(i), "FULL better");
  i.low = -0.02;
  EXPECT_EQ(gap_regime(i), "no difference detected");
  i.mean = -0.1;
  i.low = -0.2;
  i.high = -0.01;
  EXPECT_EQ(gap_regime(i), "FO better");
  EXPECT_EQ(trend_verdict(i), "gap shrinks with depth");
  i.n = 1;
  EXPECT_EQ(gap_regime(i), "too few seeds");
}

// One depth, FULL and FO, three seeds.
SweepConfig one_depth_three_seeds() {
  SweepConfig c;
  c.inner_steps = {1};
  c.modes = {MamlMode::Full, MamlMode::FirstOrder};
  c.backends = {Backend::Explicit};
  c.seeds = 3;
  return c;
}

TEST(SweepRules, ADivergedSeedLeavesItsPairOut) {
  const auto c = one_depth_three_seeds();
  SweepRaw raw;
  const double full[] = {0.9, std::nan(""), 1.0}, fo[] = {0.5, 0.6, 0.55};
  for (uint64_t s = 0; s < 3; ++s) {
    raw.cells.push_back(cell(1, MamlMode::Full, s, full[s]));
    raw.cells.push_back(cell(1, MamlMode::FirstOrder, s, fo[s]));
  }
  const auto summary = summarize_sweep(c, raw);
  EXPECT_EQ(summary.rows[0].diverged, 1);
  EXPECT_EQ(summary.gaps[0].final_accuracy.n, 2);
  EXPECT_EQ(summary.gaps[0].final_accuracy.non_finite, 1);
  EXPECT_NEAR(summary.gaps[0].final_accuracy.mean, (0.4 + 0.45) / 2, 1e-12);
}

// A run that stopped where it diverged keeps the finite accuracy of its last evaluation in its cell, but is counted
// as diverged and left out of the pairs like one that ended in NaN (the MQAR sweep's fused FULL seed 2 at depth 10:
// stopped at meta-step 40 of 150).
TEST(SweepRules, ARunStoppedByDivergenceIsDivergedEvenWithAFiniteLastAccuracy) {
  const auto c = one_depth_three_seeds();
  SweepRaw raw;
  for (uint64_t s = 0; s < 3; ++s) {
    raw.cells.push_back(cell(1, MamlMode::Full, s, 0.9 + 0.01 * s));
    raw.cells.push_back(cell(1, MamlMode::FirstOrder, s, 0.5));
  }
  raw.cells[2].metrics.final_accuracy = 0.07;  // full, seed 1
  raw.cells[2].status = "meta-training diverged at meta-step 40: inner loop diverged at step 9 of 10 (task 1)";
  const auto summary = summarize_sweep(c, raw);
  EXPECT_EQ(summary.rows[0].diverged, 1);
  EXPECT_NEAR(summary.rows[0].final_accuracy.mean, 0.91, 1e-12);  // seeds 0 and 2
  EXPECT_EQ(summary.gaps[0].final_accuracy.n, 2);
  EXPECT_NEAR(summary.gaps[0].final_accuracy.mean, 0.41, 1e-12);
  EXPECT_EQ(summary.rows[0].area_under_curve.n, 2);
}

}  // namespace
}  // namespace theria::lab
