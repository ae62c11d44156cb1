#!/usr/bin/env bash
# The main job: set-up and build if needed, then the `theria` program, by default `theria contract` (the safety
# contract's report: the quick tier on a CPU-only machine, the full tier where a GPU is present; it ends with the path
# of index.html).
#   scripts/main.sh                 # theria contract
#   scripts/main.sh verify --quick  # any theria subcommand and options
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${THERIA_BUILD_DIR:-build}
bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- contract; fi
exec "$build/theria" "$@"
