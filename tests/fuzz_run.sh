#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang (-fsanitize=fuzzer,address,
# undefined) and runs each for a bounded time. Exits non-zero on any crash.
#   tests/fuzz_run.sh [SECONDS_PER_TARGET] [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-15}
work=${2:-$(mktemp -d /tmp/patroxy-fuzz.XXXXXX)}
mkdir -p "$work"
cxx=$(command -v clang++ || command -v clang++-14) || { echo "clang++ not installed" >&2; exit 1; }
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I "$here")
for target in first_packet server_message; do
    "$cxx" "${flags[@]}" -o "$work/$target" "$here/tests/fuzz/${target}_fuzz.cpp" \
        "$here/protocol/first_packet.cpp" "$here/protocol/server_message.cpp"
    mkdir -p "$work/corpus-$target"
    "$work/$target" -max_total_time="$seconds" -max_len=12000 -print_final_stats=1 "$work/corpus-$target" \
        > "$work/$target.log" 2>&1 || { tail -40 "$work/$target.log" >&2; echo "FAIL: $target crashed" >&2; exit 1; }
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$')
    echo "$target: $runs inputs in ${seconds}s, no crash"
done
