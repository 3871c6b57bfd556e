#!/usr/bin/env bash
# Every test: installs the dependencies (Debian 12 packages), builds, and runs
# the unit, component and real-cluster tests through CTest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$here/build}
[ -n "${PATROXY_DEPS_INSTALLED:-}" ] || "$here/deploy/install-deps.sh"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)"
rc=0
ctest --test-dir "$build" --output-on-failure --timeout 600 || rc=$?
if [ "$rc" -ne 0 ] && [ -s "$build/Testing/Temporary/LastTestsFailed.log" ]; then
    # A digest last, where a CI log that keeps only the ends of a long run
    # still shows it: the end of each failed test's own output.
    echo "== the end of what each failed test printed"
    while IFS=: read -r n name; do
        echo "-- #$n $name"
        awk -v want="$n/" 'index($0, want) == 1 && /Testing:/ { on = 1; next }
                           on && /^<end of output>/ { exit }
                           on' "$build/Testing/Temporary/LastTest.log" | tail -25
    done < "$build/Testing/Temporary/LastTestsFailed.log"
fi
exit "$rc"
