// JSON files of the lab and the `theria` program: every file is built as a nlohmann::json value and written by
// one function, so strings are escaped and nothing is written that a parser cannot read.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace theria::lab {

// Keys stay in the order they are added: the files read like the console output.
using Json = nlohmann::ordered_json;

// A result as a JSON number, or null when it is NaN or infinite (JSON has neither). Whoever writes
// a null also writes why, in a status field next to it (see finite_status).
Json number_or_null(double x);

// The inverse of number_or_null: null reads back as NaN.
double number_from(const Json& value);

// The same for a list of numbers.
Json numbers_or_null(const std::vector<double>& xs);
std::vector<double> numbers_from(const Json& j);

// "ok" for a finite number, else what it was: "nan", "inf" or "-inf".
std::string finite_status(double x);

// Writes `value` to `path` (indented, newline-terminated); throws when the file cannot be written.
void write_json(const std::string& path, const Json& value);

}  // namespace theria::lab
