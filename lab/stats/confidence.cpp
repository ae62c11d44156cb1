#include "stats/confidence.h"

#include <cmath>
#include <limits>

namespace theria::lab {

double t_quantile_975(int64_t df) {
  // Student's t, two-sided 95 %: exact to 3 decimals up to 30 degrees of freedom, then the normal
  // approximation with the first Cornish-Fisher correction (error below 1e-3 from 31 on).
  static constexpr double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                     2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                     2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (df < 1) return std::numeric_limits<double>::quiet_NaN();
  if (df <= 30) return table[df - 1];
  const double z = 1.959964, d = static_cast<double>(df);
  return z + (z * z * z + z) / (4.0 * d);
}

Interval mean_interval(const std::vector<double>& values) {
  Interval r;
  double sum = 0.0;
  for (const double x : values) {
    if (std::isfinite(x)) {
      sum += x;
      ++r.n;
    } else {
      ++r.non_finite;
    }
  }
  if (r.n == 0) {
    r.mean = r.low = r.high = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  r.mean = sum / static_cast<double>(r.n);
  if (r.n == 1) {
    r.low = r.high = r.mean;
    return r;
  }
  double ss = 0.0;
  for (const double x : values) {
    if (std::isfinite(x)) ss += (x - r.mean) * (x - r.mean);
  }
  const double half = t_quantile_975(r.n - 1) * std::sqrt(ss / static_cast<double>(r.n - 1) / static_cast<double>(r.n));
  r.low = r.mean - half;
  r.high = r.mean + half;
  return r;
}

Interval paired_interval(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d;
  int64_t dropped = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::isfinite(a[i]) && std::isfinite(b[i])) d.push_back(a[i] - b[i]);
    else ++dropped;
  }
  Interval r = mean_interval(d);
  r.non_finite = dropped;
  return r;
}

}  // namespace theria::lab
