// 95 % confidence intervals of a mean over seeds (Student's t), and of a paired difference: the studies'
// one way of saying how sure a number is. Non-finite values (a diverged run) are not averaged in: they are
// counted, and the interval is over the finite ones.
#pragma once

#include <cstdint>
#include <vector>

namespace theria::lab {

struct Interval {
  double mean = 0.0, low = 0.0, high = 0.0;  // NaN when no finite value; low == high == mean for one value
  int64_t n = 0;                             // finite values used
  int64_t non_finite = 0;                    // values left out
  bool above(double x) const { return n >= 2 && low > x; }  // the whole interval is above x
  bool below(double x) const { return n >= 2 && high < x; }
};

// The two-sided 97.5 % quantile of Student's t with `df` degrees of freedom (df >= 1).
double t_quantile_975(int64_t df);

// mean ± t(0.975, n-1) · sd / sqrt(n) over the finite values.
Interval mean_interval(const std::vector<double>& values);

// The interval of the mean of a[i] - b[i] over the pairs where both are finite (the same seed in two arms).
Interval paired_interval(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace theria::lab
