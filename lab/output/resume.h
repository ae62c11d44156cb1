// Resumable studies: each unit of work (one training run, one set of diagnostics) writes its result to
// DIR/parts/<key>.json with the fingerprint of the study's configuration. A re-run with the same
// configuration reads finished units back instead of running them again; a unit from another configuration
// is run again (and overwritten). Results go through nlohmann::json (to_json / from_json of the unit's type).
//
// Shards: N processes (on one machine, sharing DIR) can run one study together. Its units come in phases (a phase's
// units depend only on earlier phases): in each phase, shard i runs units i, i + N, i + 2N, ... and then reads the
// others' parts as they appear. A run without a shard is shard 0 of 1; run once more unsharded after the shards,
// it reads every part back and writes the study's files.
#pragma once

#include "output/json_file.h"
#include "output/progress.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace theria::lab {

// A part's value to and from JSON: T's to_json / from_json, and a double through number_or_null (JSON has no NaN:
// a diverged run's score is written as null and read back as NaN).
template <class T>
Json part_json(const T& value) {
  return Json(value);
}
template <>
inline Json part_json<double>(const double& value) {
  return number_or_null(value);
}
template <class T>
T part_value(const Json& j) {
  return j.get<T>();
}
template <>
inline double part_value<double>(const Json& j) {
  return number_from(j);
}

struct Shard {
  int64_t index = 0, count = 1;
};
Shard parse_shard(const std::string& text);  // "I/N", 0 <= I < N; an error naming the form otherwise

// One unit of a phase: its part's key, its estimated work (for the progress bar) and how to compute it.
template <class T>
struct Unit {
  std::string key;
  double work = 1.0;
  std::function<T()> compute;
};

class PartStore {
 public:
  // fingerprint: the configuration that the parts belong to (any JSON value; compared whole).
  PartStore(std::filesystem::path dir, Json fingerprint, Shard shard = {});

  // The value stored under `key` for this fingerprint, or nothing.
  bool read(const std::string& key, Json* value) const;
  void write(const std::string& key, const Json& value) const;

  // `compute()` unless `key` is stored; *resumed says which. T converts to and from JSON.
  template <class T>
  T get_or_compute(const std::string& key, const std::function<T()>& compute, bool* resumed) const {
    Json stored;
    if (read(key, &stored)) {
      *resumed = true;
      return part_value<T>(stored);
    }
    *resumed = false;
    T value = compute();
    write(key, part_json(value));
    return value;
  }

  // A phase: this shard's units computed (or resumed), then every unit's value in order, the other shards' read
  // as their parts appear (polled; a shard that never writes one stops the wait only by its own timeout).
  template <class T>
  std::vector<T> run_phase(const std::vector<Unit<T>>& units, Progress& progress) const {
    std::vector<T> values(units.size());
    std::vector<bool> have(units.size(), false);
    for (size_t u = 0; u < units.size(); ++u) {
      if (static_cast<int64_t>(u) % shard_.count != shard_.index) continue;
      bool resumed = false;
      progress.begin(units[u].key);
      values[u] = get_or_compute<T>(units[u].key, units[u].compute, &resumed);
      progress.end(units[u].work, resumed);
      have[u] = true;
    }
    for (size_t u = 0; u < units.size(); ++u) {
      if (have[u]) continue;
      progress.begin("waiting for " + units[u].key);
      values[u] = part_value<T>(wait_for(units[u].key));
      progress.end(units[u].work, /*resumed=*/true);
    }
    return values;
  }

 private:
  Json wait_for(const std::string& key) const;

  std::filesystem::path dir_;
  Json fingerprint_;
  Shard shard_;
};

}  // namespace theria::lab
