#include "output/resume.h"

#include <c10/util/Exception.h>

#include <algorithm>
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

PartStore::PartStore(std::filesystem::path dir, Json fingerprint, Shard shard, const Communicator* comm)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)), shard_(shard), comm_(comm) {
  TORCH_CHECK(shard_.count == 1 || comm_ == nullptr || !comm_->distributed(),
              "--shard and a distributed run (WORLD_SIZE > 1) do not go together: the ranks are the shards");
  std::filesystem::create_directories(dir_);
}

std::vector<Json> PartStore::run_on_ranks(const std::vector<std::string>& keys, const std::vector<double>& work,
                                          const std::function<Json(size_t)>& compute, Progress& progress,
                                          Placement placement) const {
  const int rank = comm_->rank(), world = comm_->world_size();
  // 1. The parts stored in rank 0's folder are every rank's.
  Json stored = Json::object();
  if (rank == 0) {
    for (const auto& key : keys) {
      Json value;
      if (read(key, &value)) stored[key] = value;
    }
  }
  const Json agreed = Json::parse(comm_->all_gather(rank == 0 ? stored.dump() : "", "stored study parts")[0]);
  std::vector<Json> values(keys.size());
  std::vector<size_t> pending;
  for (size_t u = 0; u < keys.size(); ++u) {
    if (agreed.contains(keys[u])) {
      values[u] = agreed[keys[u]];
      progress.begin(keys[u]);
      progress.end(work[u], /*resumed=*/true);
    } else {
      pending.push_back(u);
    }
  }
  // 2. The rest shared out round-robin (or all on rank 0); each rank writes what it computed.
  Json mine = Json::object();
  double others_work = 0.0;
  for (size_t i = 0; i < pending.size(); ++i) {
    const size_t u = pending[i];
    const int owner = placement == Placement::Root ? 0 : static_cast<int>(i % world);
    if (owner != rank) {
      others_work += work[u];
      continue;
    }
    progress.begin(keys[u]);
    values[u] = compute(u);
    write(keys[u], values[u]);
    mine[keys[u]] = values[u];
    progress.end(work[u], /*resumed=*/false);
  }
  // 3. Every rank's values on every rank; rank 0 keeps a part of each.
  progress.begin("waiting for the other ranks");
  for (const auto& text : comm_->all_gather(mine.dump(), "study results")) {
    const Json theirs = Json::parse(text);
    for (auto it = theirs.begin(); it != theirs.end(); ++it) {
      const auto at = std::find(keys.begin(), keys.end(), it.key());
      TORCH_CHECK(at != keys.end(), "study: a rank sent the unknown part ", it.key());
      values[at - keys.begin()] = it.value();
      Json on_disk;
      if (rank == 0 && !read(it.key(), &on_disk)) write(it.key(), it.value());
    }
  }
  progress.end(others_work, /*resumed=*/true);
  return values;
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
