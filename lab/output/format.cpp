#include "output/format.h"

#include <cmath>
#include <cstdio>

namespace theria::lab {

std::string fmt(double x, const char* spec) {
  if (!std::isfinite(x)) return std::isnan(x) ? "—" : (x > 0 ? "inf" : "-inf");
  char buf[48];
  std::snprintf(buf, sizeof buf, spec, x);
  return buf;
}

std::string fmt(const Interval& i, const char* spec, const char* missing) {
  if (i.n == 0) return "—";
  std::string s = fmt(i.mean, spec);
  if (i.n >= 2) s += " [" + fmt(i.low, spec) + ", " + fmt(i.high, spec) + "]";
  if (i.non_finite > 0) s += " (" + std::to_string(i.non_finite) + " " + missing + ")";
  return s;
}

std::string csv_number(double x) { return std::isfinite(x) ? fmt(x, "%.6g") : std::string(); }

std::string csv_quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace theria::lab
