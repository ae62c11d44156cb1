#!/usr/bin/env bash
# ctest `package_pip` (label cpu): `pip install --no-build-isolation .` into a fresh virtual environment that already
# has the pinned torch (a .pth file names the site-packages of PYTHON, whose torch and scikit-build-core it sees), then,
# from another directory and with no PYTHONPATH or THERIA_LIBRARY: import theria (its library inside the package),
# a double backward through theria.sdpa, and the `theria` console command. CPU-only build (THERIA_CUDA=OFF): the
# package, not the kernels, is under test, and CI has no GPU.
#   tests/package/pip_install_test.sh PYTHON
set -euo pipefail
py=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m venv "$work/venv"
venv_site=$("$work/venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
"$py" -c 'import site; print(site.getsitepackages()[0])' >"$venv_site/pinned_torch.pth"
# A unity build (CMake batches the library's and the lab's files; the program's stay apart): 165 s instead of 238 s
# on 2 cores, for CI's 30 minutes. The package's contents do not depend on it.
"$work/venv/bin/python" -m pip install --quiet --no-build-isolation -C cmake.define.THERIA_CUDA=OFF \
  -C cmake.define.CMAKE_UNITY_BUILD=ON \
  -C build-dir="$work/build" "$root" >"$work/pip.log" 2>&1 || { tail -n 60 "$work/pip.log"; exit 1; }
cd "$work"
env -u PYTHONPATH -u THERIA_LIBRARY "$work/venv/bin/python" - <<'PY'
import pathlib
import torch
import theria
package = pathlib.Path(theria.__file__).parent
assert pathlib.Path(theria._library_path).parent == package, theria._library_path  # the library inside the package
q = torch.randn(2, 3, 5, 8, dtype=torch.double, requires_grad=True)
k, v = torch.randn(2, 3, 7, 8, dtype=torch.double), torch.randn(2, 3, 7, 8, dtype=torch.double)
g, = torch.autograd.grad(theria.sdpa(q, k, v).pow(2).sum(), q, create_graph=True)
h, = torch.autograd.grad(g.sum(), q)
assert h.isfinite().all()
print("import theria", theria.__version__, "from", package)
PY
env -u PYTHONPATH -u THERIA_LIBRARY "$work/venv/bin/theria" verify --quick | tail -n 1
