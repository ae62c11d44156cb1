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

// Resolves `requested` for query q and value v (their device and head dims); throws a clear error
// when the requested backend cannot serve them.
ResolvedBackend resolve_backend(Backend requested, const at::Tensor& q, const at::Tensor& v, const char* op);
ResolvedBackend resolve_backend(std::string_view requested, const at::Tensor& q, const at::Tensor& v,
                                const char* op);

}  // namespace theria::core
