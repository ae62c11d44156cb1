#!/usr/bin/env bash
# The main job: set-up and build if needed, then the `theria` program, by default `theria verify`.
#   scripts/main.sh                 # theria verify
#   scripts/main.sh verify --quick  # any theria subcommand and options
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${THERIA_BUILD_DIR:-build}
bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- verify; fi
exec "$build/theria" "$@"
