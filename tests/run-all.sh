#!/usr/bin/env bash
# Every test: installs the dependencies (Debian 12 packages), builds, and runs
# the unit, component and real-cluster tests through CTest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$here/build}
[ -n "${PATROXY_DEPS_INSTALLED:-}" ] || "$here/deploy/install-deps.sh"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 600
