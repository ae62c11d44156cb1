// Which backend serves a request. The one place where "auto" is decided and where a backend
// that cannot serve the inputs says so.
#pragma once

#include <theria/sdpa.h>

#include <ATen/core/Tensor.h>

#include <string>
#include <string_view>

namespace theria::core {

struct ResolvedBackend {
  Backend backend;
  std::string reason;
};

// Resolves `requested` for inputs living where `q` lives; throws a clear error when it cannot serve.
ResolvedBackend resolve_backend(Backend requested, const at::Tensor& q, const char* op);
ResolvedBackend resolve_backend(std::string_view requested, const at::Tensor& q, const char* op);

}  // namespace theria::core
