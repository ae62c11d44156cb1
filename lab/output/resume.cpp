#include "output/resume.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <thread>

namespace theria::lab {

Shard parse_shard(const std::string& text) {
  Shard s;
  const auto slash = text.find('/');
  try {
    TORCH_CHECK(slash != std::string::npos, "");
    size_t used = 0;
    s.index = std::stoll(text.substr(0, slash), &used);
    TORCH_CHECK(used == slash, "");
    s.count = std::stoll(text.substr(slash + 1), &used);
    TORCH_CHECK(used == text.size() - slash - 1, "");
  } catch (const std::exception&) {
    TORCH_CHECK(false, "--shard '", text, "': expected I/N, the shard I (from 0) of N");
  }
  TORCH_CHECK(s.count >= 1 && s.index >= 0 && s.index < s.count, "--shard '", text, "': expected 0 <= I < N");
  return s;
}

PartStore::PartStore(std::filesystem::path dir, Json fingerprint, Shard shard)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)), shard_(shard) {
  std::filesystem::create_directories(dir_);
}

Json PartStore::wait_for(const std::string& key) const {
  Json value;
  while (!read(key, &value)) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return value;
}

bool PartStore::read(const std::string& key, Json* value) const {
  std::ifstream in(dir_ / (key + ".json"));
  if (!in) return false;
  // A part cut off by an interrupted run does not parse: it is run again.
  const Json part = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (part.is_discarded() || !part.contains("fingerprint") || part["fingerprint"] != fingerprint_) return false;
  *value = part["value"];
  return true;
}

void PartStore::write(const std::string& key, const Json& value) const {
  // Written beside the final name and renamed into place, so that a part on disk is always whole.
  const auto path = dir_ / (key + ".json");
  const auto tmp = dir_ / (key + ".json.partial");
  write_json(tmp.string(), Json{{"fingerprint", fingerprint_}, {"value", value}});
  std::filesystem::rename(tmp, path);
}

}  // namespace theria::lab
