#include "output/resume.h"

namespace theria::lab {

PartStore::PartStore(std::filesystem::path dir, Json fingerprint)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)) {
  std::filesystem::create_directories(dir_);
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
