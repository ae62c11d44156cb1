// Resumable studies: each unit of work (one training run, one set of diagnostics) writes its result to
// DIR/parts/<key>.json with the fingerprint of the study's configuration. A re-run with the same
// configuration reads finished units back instead of running them again; a unit from another configuration
// is run again (and overwritten). Results go through nlohmann::json (to_json / from_json of the unit's type).
#pragma once

#include "output/json_file.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

namespace theria::lab {

class PartStore {
 public:
  // fingerprint: the configuration that the parts belong to (any JSON value; compared whole).
  PartStore(std::filesystem::path dir, Json fingerprint);

  // The value stored under `key` for this fingerprint, or nothing.
  bool read(const std::string& key, Json* value) const;
  void write(const std::string& key, const Json& value) const;

  // `compute()` unless `key` is stored; *resumed says which. T converts to and from JSON.
  template <class T>
  T get_or_compute(const std::string& key, const std::function<T()>& compute, bool* resumed) const {
    Json stored;
    if (read(key, &stored)) {
      *resumed = true;
      return stored.get<T>();
    }
    *resumed = false;
    T value = compute();
    write(key, Json(value));
    return value;
  }

 private:
  std::filesystem::path dir_;
  Json fingerprint_;
};

}  // namespace theria::lab
