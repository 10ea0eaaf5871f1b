#!/usr/bin/env bash
# Configures and builds blockserve into $BUILD_DIR (default: build/).
# Usage: scripts/build.sh [cmake configure args...] [-- build targets...]
# Env: BUILD_DIR, BUILD_TYPE (RelWithDebInfo), JOBS (nproc), CUDA (AUTO|ON|OFF).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
jobs="${JOBS:-$(nproc)}"
configure=()
targets=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; targets=("$@"); break; fi
  configure+=("$1"); shift
done
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  -DBLOCKSERVE_CUDA="${CUDA:-AUTO}" "${configure[@]}"
if [ ${#targets[@]} -gt 0 ]; then
  cmake --build "$build" -j "$jobs" --target "${targets[@]}"
else
  cmake --build "$build" -j "$jobs"
fi
