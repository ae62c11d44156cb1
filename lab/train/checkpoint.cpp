#include "train/checkpoint.h"

#include "output/train_json.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace theria::lab {
namespace {

// The file is one tuple (kMagic, state JSON, weights, initial weights, Adam m, Adam v, CPU generator state), each list
// of tensors a tuple too: tuples, strings and tensors are what torch.load(weights_only=True) reads without being told
// of any other type.
constexpr const char* kMagic = "theria-checkpoint-1";

c10::IValue cpu_tuple(const std::vector<at::Tensor>& xs) {
  std::vector<c10::IValue> out;
  for (const auto& x : xs) out.emplace_back(x.detach().cpu().clone());
  return c10::ivalue::Tuple::create(std::move(out));
}

std::vector<at::Tensor> tensors_from(const c10::IValue& v, const at::TensorOptions& options) {
  std::vector<at::Tensor> out;
  for (const auto& t : v.toTupleRef().elements()) out.push_back(t.toTensor().to(options));
  return out;
}

// The file's tuple, or nothing when there is no file; an error when it is not a theria checkpoint.
std::optional<c10::IValue> read_checkpoint_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  c10::IValue v;
  try {
    v = torch::jit::pickle_load(bytes);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "the checkpoint ", path, " does not load (", e.what(), "): remove it to start afresh");
  }
  const bool ours = v.isTuple() && v.toTupleRef().elements().size() == 7 &&
                    v.toTupleRef().elements()[0].isString() && v.toTupleRef().elements()[0].toStringRef() == kMagic;
  TORCH_CHECK(ours, "the file ", path, " is not a theria meta-training checkpoint: remove it to start afresh");
  return v;
}

}  // namespace

void save_checkpoint(const std::string& path, const TrainCheckpoint& c) {
  Json state{{"fingerprint", c.fingerprint},
             {"step", c.step},
             {"next_task", c.next_task},
             {"adam", {{"lr", c.adam.lr}, {"beta1", c.adam.beta1}, {"beta2", c.adam.beta2}, {"eps", c.adam.eps},
                       {"t", c.adam.t}}},
             {"curve", c.so_far.curve},
             {"before", c.so_far.before},
             {"after", c.so_far.after},
             {"divergence", c.so_far.divergence},
             {"applied_meta_steps", c.so_far.applied_meta_steps},
             {"skipped_meta_steps", c.so_far.skipped_meta_steps},
             {"seconds", c.so_far.seconds}};
  const auto file = c10::ivalue::Tuple::create(
      {c10::IValue(kMagic), c10::IValue(state.dump()), cpu_tuple(c.weights), cpu_tuple(c.so_far.initial),
       cpu_tuple(c.adam.m), cpu_tuple(c.adam.v), c10::IValue(at::detail::getDefaultCPUGenerator().get_state())});
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(file));
  const std::string tmp = path + ".partial";
  {
    std::ofstream f(tmp, std::ios::binary);
    TORCH_CHECK(f, "cannot write the checkpoint ", tmp);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    TORCH_CHECK(f.good(), "cannot write the checkpoint ", tmp);
  }
  std::filesystem::rename(tmp, path);
}

std::optional<TrainCheckpoint> load_checkpoint(const std::string& path, const std::string& fingerprint,
                                               const at::TensorOptions& options) {
  const auto v = read_checkpoint_file(path);
  if (!v) return std::nullopt;
  const auto& d = v->toTupleRef().elements();
  const Json state = Json::parse(d[1].toStringRef());
  TORCH_CHECK(state.at("fingerprint").get<std::string>() == fingerprint, "the checkpoint ", path,
              " belongs to another configuration of the run: resume with the options that wrote it, or remove it");
  TrainCheckpoint c;
  c.fingerprint = fingerprint;
  c.step = state.at("step").get<int64_t>();
  c.next_task = state.at("next_task").get<uint64_t>();
  const auto& a = state.at("adam");
  c.adam.lr = a.at("lr").get<double>();
  c.adam.beta1 = a.at("beta1").get<double>();
  c.adam.beta2 = a.at("beta2").get<double>();
  c.adam.eps = a.at("eps").get<double>();
  c.adam.t = a.at("t").get<int64_t>();
  c.weights = tensors_from(d[2], options);
  c.so_far.initial = tensors_from(d[3], options);
  c.adam.m = tensors_from(d[4], options);
  c.adam.v = tensors_from(d[5], options);
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();
  cpu_generator.set_state(d[6].toTensor());
  c.so_far.curve = state.at("curve").get<std::vector<CurvePoint>>();
  c.so_far.before = state.at("before").get<Evaluation>();
  c.so_far.after = state.at("after").get<Evaluation>();
  c.so_far.divergence = state.at("divergence").get<RunDivergence>();
  c.so_far.applied_meta_steps = state.at("applied_meta_steps").get<int64_t>();
  c.so_far.skipped_meta_steps = state.at("skipped_meta_steps").get<int64_t>();
  c.so_far.seconds = state.at("seconds").get<double>();
  return c;
}

Weights load_checkpoint_weights(const std::string& path, const at::TensorOptions& options) {
  const auto v = read_checkpoint_file(path);
  TORCH_CHECK(v, "no checkpoint at ", path);
  return tensors_from(v->toTupleRef().elements()[2], options);
}

}  // namespace theria::lab
