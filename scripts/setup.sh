#!/usr/bin/env bash
# One-time (idempotent) set-up: a Python with torch 2.11, then a CMake/Ninja build of theria.
# Prints nothing but progress; leaves the interpreter path in build/python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${THERIA_BUILD_DIR:-build}

have_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.__version__.startswith("2.11.") else 1)' >/dev/null 2>&1; }

# A machine that already has torch 2.11 (the GPU machine: nothing can be downloaded there) uses it;
# anywhere else the project gets its own virtual environment with pinned versions.
if [ -x .venv/bin/python ] && have_torch .venv/bin/python; then
  py=$root/.venv/bin/python
elif [ -z "${THERIA_FORCE_VENV:-}" ] && have_torch python3; then
  py=$(command -v python3)
else
  echo "[setup] creating .venv and installing requirements.txt (torch 2.11.0 included)"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  py=$root/.venv/bin/python
fi
echo "[setup] python: $py ($("$py" -c 'import torch; print("torch", torch.__version__)'))"

# Header-only libraries of the `theria` program: JSON (nlohmann/json) and option parsing (CLI11); and Gloo's
# headers (libgloo-dev), which c10d's ProcessGroupGloo header includes (Gloo itself is inside libtorch): the lab's
# distributed runs on the CPU (docs/distributed.md).
# Debian packages, installed only when missing (the package index is refreshed only then). The GPU
# machine has no package access: scripts/device/prepare.sh carries the headers there and the build is
# pointed at them with -DTHERIA_THIRD_PARTY_INCLUDE, so nothing is tried.
missing=()
[ -f /usr/include/nlohmann/json.hpp ] || missing+=(nlohmann-json3-dev)
[ -f /usr/include/CLI/CLI.hpp ] || missing+=(libcli11-dev)
[ -f /usr/include/gloo/algorithm.h ] || missing+=(libgloo-dev)
if [ ${#missing[@]} -gt 0 ] && [[ "${THERIA_CMAKE_ARGS:-}" != *THERIA_THIRD_PARTY_INCLUDE* ]]; then
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "[setup] installing ${missing[*]}"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1; then
    echo "[setup] could not install ${missing[*]} (apt-get); CMake needs -DTHERIA_THIRD_PARTY_INCLUDE" >&2
  fi
fi

for tool in cmake ninja; do
  command -v "$tool" >/dev/null || "$py" -m pip install --quiet "$tool"
done

# Python packages added after a .venv may have been made, pinned as in requirements.txt, installed when missing: the
# contract report's Markdown renderer (scripts/report_contract.py), the model library of the drop-in's tests
# (tests/python/test_sdpa_override.py: a decoder built from a config, no weights downloaded) and the build backend of
# the pip package (tests/package/pip_install_test.sh). Where nothing can be installed (the GPU machine) the report is
# rendered elsewhere (theria contract --from) and those tests skip or fail and say why.
for module in markdown:markdown transformers:transformers scikit_build_core:scikit-build-core; do
  if ! "$py" -c "import ${module%%:*}" 2>/dev/null; then
    "$py" -m pip install --quiet "$(grep "^${module##*:}==" requirements.txt)" 2>/dev/null ||
      echo "[setup] could not install ${module##*:}" >&2
  fi
done

prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
if [ ! -f "$build/build.ninja" ]; then
  # Where no GPU can run the kernels (CI, a laptop) they are compiled to PTX only: every template is still
  # instantiated and checked, in about half the time (no machine-code assembler). THERIA_CMAKE_ARGS may say otherwise;
  # scripts/device/pack_build.sh refuses such a build for the GPU machine.
  arch=()
  if [[ "${THERIA_CMAKE_ARGS:-}" != *THERIA_CUDA_ARCHITECTURES* ]] &&
     ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "[setup] no CUDA device here: the fused kernels compile to PTX only (THERIA_CUDA_ARCHITECTURES=90a-virtual)"
    arch=(-DTHERIA_CUDA_ARCHITECTURES=90a-virtual)
  fi
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DPython_EXECUTABLE="$py" "${arch[@]}" ${THERIA_CMAKE_ARGS:-}
fi
cmake --build "$build" -j "${THERIA_JOBS:-$(nproc)}"
echo "$py" > "$build/python"
