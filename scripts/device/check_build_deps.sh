#!/usr/bin/env bash
# Fails (listing them) when an object of the ninja build BUILD has no dependency record in ninja's log
# (`ninja -t deps`: "#deps 0"): ninja then rebuilds it only when its own source changes, never for a header it
# includes. Six kernel objects stood so for a day, built from an older SdpaFwdParams, and a packed build ran them with
# the new one (docs/performance.md, "issue 18, item 1, tenth pass"). pack_build.sh and variants.sh call it.
#   bash scripts/device/check_build_deps.sh [BUILD]     (default: build/)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
stale=$(ninja -C "$build" -t deps 2>/dev/null | grep -E '^[^ ].*\.o: #deps 0' | cut -d: -f1)
if [ -n "$stale" ]; then
  echo "$build: objects with no recorded dependencies (delete them and build again):" >&2
  echo "$stale" >&2
  exit 1
fi
