#!/usr/bin/env bash
# On the device: unpack .device/prebuilt.tar.xz (made by pack_build.sh) into build-prebuilt/ and print
# the environment that lets it find the machine's own libtorch:  eval "$(bash scripts/device/use_build.sh)"
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$root/build-prebuilt"
tar -C "$root/build-prebuilt" -xJf "$root/.device/prebuilt.tar.xz"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
echo "export LD_LIBRARY_PATH=$root/build-prebuilt:$torch_lib:/usr/local/cuda/lib64:\${LD_LIBRARY_PATH:-}"
echo "export THERIA_LIBRARY=$root/build-prebuilt/libtheria.so"
