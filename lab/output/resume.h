// Resumable studies: each unit of work (one training run, one set of diagnostics) writes its result to
// DIR/parts/<key>.json with the fingerprint of the study's configuration. A re-run with the same
// configuration reads finished units back instead of running them again; a unit from another configuration
// is run again (and overwritten). Results go through nlohmann::json (to_json / from_json of the unit's type).
//
// Shards: N processes (on one machine, sharing DIR) can run one study together. Its units come in phases (a phase's
// units depend only on earlier phases): in each phase, shard i runs units i, i + N, i + 2N, ... and then reads the
// others' parts as they appear. A run without a shard is shard 0 of 1; run once more unsharded after the shards,
// it reads every part back and writes the study's files.
//
// Ranks (docs/distributed.md): under torchrun the processes of a run share each phase through c10d instead of the
// folder — the parts rank 0 holds are everyone's, the rest are shared out round-robin (or all run on rank 0: the
// timings), each rank writes the parts it computed, and an all-gather gives every rank every value (rank 0 writes
// the parts its folder lacks). Machines need not share a folder.
#pragma once

#include "distributed/communicator.h"
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

// Where a phase's units run among the ranks: shared out, or all on rank 0 (timings, which other work on the same
// machine would disturb; the other ranks wait).
enum class Placement { Spread, Root };

class PartStore {
 public:
  // fingerprint: the configuration that the parts belong to (any JSON value; compared whole). comm: the ranks that
  // share the phases (null or one process: this process alone, or `shard` of a folder-sharded run).
  PartStore(std::filesystem::path dir, Json fingerprint, Shard shard = {}, const Communicator* comm = nullptr);

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
  std::vector<T> run_phase(const std::vector<Unit<T>>& units, Progress& progress,
                           Placement placement = Placement::Spread) const {
    if (comm_ != nullptr && comm_->distributed()) {
      std::vector<std::string> keys;
      std::vector<double> work;
      for (const auto& u : units) {
        keys.push_back(u.key);
        work.push_back(u.work);
      }
      const auto json = run_on_ranks(keys, work, [&](size_t u) { return part_json(units[u].compute()); }, progress,
                                     placement);
      std::vector<T> values;
      for (const auto& j : json) values.push_back(part_value<T>(j));
      return values;
    }
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
  std::vector<Json> run_on_ranks(const std::vector<std::string>& keys, const std::vector<double>& work,
                                 const std::function<Json(size_t)>& compute, Progress& progress,
                                 Placement placement) const;

  std::filesystem::path dir_;
  Json fingerprint_;
  Shard shard_;
  const Communicator* comm_ = nullptr;
};

}  // namespace theria::lab
