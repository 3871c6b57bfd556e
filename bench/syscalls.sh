#!/usr/bin/env bash
# System calls the proxy makes per session and per query round trip, patroxy
# vs HAProxy, counted with `strace -c -f` on the proxy process while the
# stand-in member (PostgreSQL out of the way, bench/standin_env.sh) is driven
# by the bench client:
#   session:     startup -> ReadyForQuery -> Terminate, 4 streams
#   round trip:  100 bytes echoed back, 8 sessions (a small query's shape)
# Prints TSV rows (proxy, unit, system call, calls per unit) on stdout.
# strace slows the proxy down; only the counts mean anything.
#
#   bench/syscalls.sh BUILD_DIR OUT_DIR [SECONDS]
set -euo pipefail
build=${1:?build dir} out=${2:?out dir} seconds=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
client=$build/patroxy_bench_client
. "$here/bench/standin_env.sh"
standin_up "$build" "$out" 16442 16443 6110 17111 7610 7611
trap standin_down EXIT
for port in 6110 7610; do
    for _ in $(seq 100); do
        "$client" connect --port $port --seconds 0.2 --threads 1 | grep -q ' 0 errors' && break
        sleep 0.1
    done
done

# count PID NAME UNIT CLIENT_ARGS...: strace the proxy while the client runs;
# the client's count of units divides the calls.
count() {
    local pid=$1 name=$2 unit=$3; shift 3
    local trace=$out/syscalls-$name-$unit.strace
    strace -c -f -p "$pid" -o "$trace" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    local result units
    result=$("$client" "$@" --seconds "$seconds")
    kill -INT $tracer
    wait $tracer 2>/dev/null || true
    if [ "$unit" = session ]; then
        units=$(awk -v s="$seconds" '{printf "%.0f", $1 * s}' <<<"$result")
    else
        units=$(awk -v s="$seconds" '{printf "%.0f", $1 * 1e6 * s / 200}' <<<"$result")  # 100 B each way
    fi
    # strace -c rows: % time, seconds, usecs/call, calls, [errors,] name
    awk -v u="$units" -v n="$name" -v k="$unit" \
        '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "%s\t%s\t%s\t%.2f\n", n, k, $NF, $4 / u }' "$trace"
}
{
    count "$px" patroxy session connect --port 6110 --threads 4
    count "$ha" haproxy session connect --port 7610 --threads 4
    count "$px" patroxy roundtrip relay --port 6110 --threads 8 --chunk 100
    count "$ha" haproxy roundtrip relay --port 7610 --threads 8 --chunk 100
} | tee "$out/syscalls.tsv"
