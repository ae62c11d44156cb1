#include "output/json_file.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <fstream>

namespace theria::lab {

Json number_or_null(double x) { return std::isfinite(x) ? Json(x) : Json(nullptr); }

double number_from(const Json& value) {
  return value.is_null() ? std::nan("") : value.get<double>();
}

Json numbers_or_null(const std::vector<double>& xs) {
  Json out = Json::array();
  for (const double x : xs) out.push_back(number_or_null(x));
  return out;
}

std::vector<double> numbers_from(const Json& j) {
  std::vector<double> out;
  for (const auto& x : j) out.push_back(number_from(x));
  return out;
}

std::string finite_status(double x) {
  if (std::isfinite(x)) return "ok";
  if (std::isnan(x)) return "nan";
  return x > 0 ? "inf" : "-inf";
}

void write_json(const std::string& path, const Json& value) {
  std::ofstream f(path);
  TORCH_CHECK(f, "cannot write ", path);
  // Invalid UTF-8 (an error message from a system call, a user's path) is replaced, not thrown on.
  f << value.dump(2, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace) << "\n";
  TORCH_CHECK(f.good(), "cannot write ", path);
}

}  // namespace theria::lab
