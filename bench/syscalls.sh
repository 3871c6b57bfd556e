#!/usr/bin/env bash
# System calls the proxy makes per session and per query round trip, patroxy
# vs HAProxy, counted with `strace -c -f` on the proxy process while the
# stand-in member (PostgreSQL out of the way) is driven by the bench client:
#   session:     startup -> ReadyForQuery -> Terminate, 4 streams
#   round trip:  100-byte request echoed back, 8 sessions (one pgbench -S
#                query's shape: a small packet each way)
# Prints TSV rows (proxy, workload, syscall, calls per unit) on stdout and a
# summary table on stderr. strace slows the proxy; only the counts matter.
#
#   bench/syscalls.sh BUILD_DIR OUT_DIR [SECONDS]
set -euo pipefail
build=${1:?build dir} out=${2:?out dir} seconds=${3:-3}
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
PG=16442 API=16443 PX=6110 PX_STATS=17111 HA=7610
client=$build/patroxy_bench_client

"$build/patroxy_standin_server" --port $PG --api-port $API 2>"$out/sys-standin.log" &
standin=$!
cat > "$out/sys-patroxy.yml" <<YML
members:
  - {name: standin, host: 127.0.0.1, port: $PG, api: "http://127.0.0.1:$API"}
listeners:
  - {name: master, role: write, bind: 127.0.0.1, port: $PX, maxconn: 20000}
stats: {bind: 127.0.0.1, port: $PX_STATS}
log: {level: warn}
YML
cat > "$out/sys-haproxy.cfg" <<CFG
global
    nbthread 2
defaults
    mode tcp
    timeout connect 5s
    timeout client 60m
    timeout server 60m
listen master
    bind 127.0.0.1:$HA
    maxconn 20000
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
    server standin 127.0.0.1:$PG check port $API
CFG
"$build/patroxy" -c "$out/sys-patroxy.yml" </dev/null >/dev/null 2>"$out/sys-patroxy.log" &
px=$!
haproxy -f "$out/sys-haproxy.cfg" -db </dev/null >"$out/sys-haproxy.log" 2>&1 &
ha=$!
trap 'kill $standin $px $ha 2>/dev/null; wait 2>/dev/null || true' EXIT
for port in $PX $HA; do
    for _ in $(seq 100); do
        "$client" connect --port $port --seconds 0.2 --threads 1 | grep -q ' 0 errors' && break
        sleep 0.1
    done
done

# count PROXY_PID WORKLOAD UNIT_NAME CLIENT_ARGS...: strace the proxy while the
# client runs; the client's count of units divides the calls.
count() {
    local pid=$1 name=$2 kind=$3; shift 3
    local trace=$out/sys-$name-$kind.strace
    strace -c -f -p "$pid" -o "$trace" 2>/dev/null &
    local st=$!
    sleep 0.5
    local result; result=$("$client" "$@" --seconds "$seconds")
    kill -INT $st; wait $st 2>/dev/null || true
    local units
    if [ "$kind" = session ]; then
        units=$(awk -v s="$seconds" '{printf "%.0f", $1 * s}' <<<"$result")
    else
        units=$(awk -v s="$seconds" '{printf "%.0f", $1 * 1e6 * s / 200}' <<<"$result")  # 100 B each way
    fi
    awk -v u="$units" -v n="$name" -v k="$kind" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 { calls = $4; name = $NF; printf "%s\t%s\t%s\t%.2f\n", n, k, name, calls / u }
    ' "$trace"
}
{
    count $px patroxy session connect --port $PX --threads 4
    count $ha haproxy session connect --port $HA --threads 4
    count $px patroxy roundtrip relay --port $PX --threads 8 --chunk 100
    count $ha haproxy roundtrip relay --port $HA --threads 8 --chunk 100
} | tee "$out/syscalls.tsv"
