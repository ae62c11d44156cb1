#include "autograd/kernels.h"

#include <torch/library.h>

TORCH_LIBRARY_IMPL(theria, Autograd, m) {
  m.impl("sdpa", &theria::autograd::sdpa);
  m.impl("sdpa_bwd", &theria::autograd::sdpa_bwd);
  m.impl("sdpa_fwd", &theria::autograd::sdpa_fwd);
  m.impl("sdpa_jvp", &theria::autograd::sdpa_jvp);
  m.impl("sdpa_bwd_jvp", &theria::autograd::sdpa_bwd_jvp);
}
