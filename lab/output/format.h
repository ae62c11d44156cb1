// Numbers as the studies' Markdown and CSV files show them: a non-finite value never prints as a number.
#pragma once

#include "stats/confidence.h"

#include <string>

namespace theria::lab {

// printf-formatted x, or "—" for NaN and "inf" / "-inf".
std::string fmt(double x, const char* spec = "%.3g");
// "0.912 [0.871, 0.953]", the mean alone for one value, "—" for none; "(k <missing>)" when values were left out.
std::string fmt(const Interval& i, const char* spec = "%.3g", const char* missing = "diverged");
// A CSV field: x with full precision, or empty when not finite.
std::string csv_number(double x);
// A CSV field in double quotes, quotes doubled.
std::string csv_quote(const std::string& s);

}  // namespace theria::lab
