#include "output/json_file.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <fstream>

namespace theria::lab {

Json number_or_null(double x) { return std::isfinite(x) ? Json(x) : Json(nullptr); }

double number_from(const Json& value) {
  return value.is_null() ? std::nan("") : value.get<double>();
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
