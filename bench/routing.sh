#!/usr/bin/env bash
# Issue 17's bench: the routing classes' balancing and the cost of the routing
# decision, on loopback with stand-in members only (no PostgreSQL, no
# Patroni, no lab): bench/standin_main.cpp stands in for a leader and N
# streaming replicas in one process (startup answered at once, then echo; a
# Patroni-shaped API per member).
#
#   A. spread: leastconn vs roundrobin (and first) on a read listener over 3
#      replicas, under a mix of long sessions (24 clients holding a session
#      1-8 s) and short ones (4 clients, 200 sessions/s in all); sessions per
#      replica sampled from /status.json at 10 Hz (bench/routing_spread.py)
#   B. cost: sessions/s (startup -> ReadyForQuery -> Terminate, 8 streams,
#      5 s; standin_run.sh's workload 5) and the proxy's CPU (user+system from
#      /proc/PID/stat) per session, on a read listener over 3 and over 30
#      replicas: this build's roundrobin and leastconn against BASELINE's
#      (today before the routing classes: 9a697d0^) round-robin
#   C. the decision alone: proxy::candidates() in a loop (bench/routing_micro.cpp,
#      compiled against each build's tree and static libraries), ns per call,
#      for the same listeners over 3 and 30 replicas; and once per size with a
#      second thread moving the session counts meanwhile (exit status 139: it
#      crashed)
# A patroxy that dies during a run is recorded (a "crashed" row, its exit
# status) and started again; that run has no figure.
# Rounds interleave the variants (the order rotates each round); the summary
# gives medians. Prints the summary (markdown) on stdout, logs on stderr, and
# keeps the raw rows in OUT_DIR/routing.tsv (round, phase, variant, replicas,
# metric, value).
#
#   bash bench/routing.sh BUILD_DIR BASELINE_BUILD_DIR [ROUNDS=3] [OUT_DIR]
#
# PHASES="A B C" (the default) picks phases; SPREAD_SECONDS (15) and
# COST_SECONDS (5) set each run's length.
#
# BUILD_DIR needs patroxy, patroxy_standin_server (with --members) and
# patroxy_bench_client; BASELINE_BUILD_DIR only patroxy. Ports 18500-18799 on
# 127.0.0.1. About 100 s per round and a minute more (3 rounds: about 6
# minutes, 5: about 9, on 2 shared cores).
set -euo pipefail
build=$(cd "${1:?build dir}" && pwd)
baseline=$(cd "${2:?baseline build dir}" && pwd)
rounds=${3:-3}
out=${4:-$(mktemp -d /tmp/routing-bench.XXXXXX)}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '[routing %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
for f in "$build/patroxy" "$build/patroxy_standin_server" "$build/patroxy_bench_client" "$baseline/patroxy"; do
    [ -x "$f" ] || { say "missing $f"; exit 2; }
done
"$build/patroxy_standin_server" --help | grep -q -- --members || { say "$build/patroxy_standin_server has no --members"; exit 2; }
ulimit -n "$(ulimit -Hn)"
client=$build/patroxy_bench_client
tsv=$out/routing.tsv
: > "$tsv"
spread_seconds=${SPREAD_SECONDS:-15}
phases=${PHASES:-A B C}   # any of A B C
cost_seconds=${COST_SECONDS:-5}

# Stand-ins: 3 replicas on PG 18600-18603 / API 18650-18653, 30 on PG
# 18700-18730 / API 18750-18780 (member 0 the leader in both); the proxies
# listen on 185x0 with their stats on 185x1 (the lab's Patroni APIs are on 18008+).
declare -A sb_pg=([3]=18600 [30]=18700) sb_api=([3]=18650 [30]=18750)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in 3 30; do
    "$build/patroxy_standin_server" --members $((n + 1)) --leader 0 --port "${sb_pg[$n]}" --api-port "${sb_api[$n]}" \
        2>"$out/standin-$n.log" &
    pids+=($!)
done

# config FILE REPLICAS BALANCE(empty: the key left out) LISTEN STATS MEMBER_MAXCONN(0: none)
config() {
    local file=$1 n=$2 balance=$3 port=$4 stats=$5 mmax=$6 i
    {
        echo "members:"
        echo "  - {name: leader, host: 127.0.0.1, port: ${sb_pg[$n]}, api: \"http://127.0.0.1:${sb_api[$n]}\"}"
        for i in $(seq "$n"); do
            echo "  - {name: r$i, host: 127.0.0.1, port: $((sb_pg[$n] + i)), api: \"http://127.0.0.1:$((sb_api[$n] + i))\"$([ "$mmax" -gt 0 ] && echo ", maxconn: $mmax")}"
        done
        echo "listeners:"
        echo "  - {name: replicas, role: read, bind: 127.0.0.1, port: $port, maxconn: 5000${balance:+, balance: $balance}}"
        echo "stats: {bind: 127.0.0.1, port: $stats}"
        echo "log: {level: warn}"
    } > "$file"
}

declare -A port_of stats_of pid_of bin_of members_of
# start VARIANT BINARY CONFIG_ARGS...: starts a patroxy, records its pid and ports.
start() {
    local v=$1 bin=$2 n=$3 port=$5 stats=$6
    config "$out/$v.yml" "${@:3}"
    bin_of[$v]=$bin members_of[$v]=$((n + 1))
    launch "$v"
    port_of[$v]=$port stats_of[$v]=$stats
}
launch() {
    "${bin_of[$1]}" -c "$out/$1.yml" </dev/null >/dev/null 2>>"$out/$1.log" &
    pids+=($!)
    pid_of[$1]=$!
}
# alive ROUND PHASE VARIANT REPLICAS: true when the variant's patroxy still
# runs; otherwise records a crash row (with the exit status) and starts it again.
crashes=0
alive() {
    local v=$3 pid=${pid_of[$3]} status=0
    kill -0 "$pid" 2>/dev/null && return 0
    wait "$pid" 2>/dev/null || status=$?
    crashes=$((crashes + 1))
    row "$1" "$2" "$v" "$4" crashed "$status"
    say "round $1 $2 $v: patroxy (pid $pid) died, exit status $status$( ((status > 128)) && echo " (signal $((status - 128)))"); starting it again"
    launch "$v"
    ready "$v" "${members_of[$v]}"
    return 1
}
stop() {
    kill "${pid_of[$1]}" 2>/dev/null || true
    wait "${pid_of[$1]}" 2>/dev/null || true
}

# Ready: the listener completes a session, and every member is UP on the stats page.
ready() {
    local v=$1 want=$2 i
    for i in $(seq 150); do
        if "$client" connect --port "${port_of[$v]}" --seconds 0.2 --threads 1 2>/dev/null | grep -q ' 0 errors' &&
            [ "$(curl -s "http://127.0.0.1:${stats_of[$v]}/status.json" |
                python3 -c 'import json,sys; print(sum(m["check"]["status"] == "UP" for m in json.load(sys.stdin)["members"]))' 2>/dev/null)" = "$want" ]; then
            return 0
        fi
        sleep 0.2
    done
    say "$v (port ${port_of[$v]}) is not ready: see $out/$v.log"
    exit 1
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$tsv"; }
rotate() {  # rotate ROUND ITEMS...: the items, starting at (ROUND-1) mod count
    local r=$1; shift
    local k=$((($r - 1) % $#)) a=("$@")
    echo "${a[@]:$k}" "${a[@]:0:$k}"
}

# ---- A. spread under long and short sessions ----------------------------------
if [[ " $phases " == *" A "* ]]; then
say "A: spread, 3 replicas; $rounds rounds of ${spread_seconds} s per mode"
start rr "$build/patroxy" 3 roundrobin 18510 18511 0
start lc "$build/patroxy" 3 leastconn 18520 18521 0
start first "$build/patroxy" 3 first 18530 18531 12
for v in rr lc first; do ready $v 4; done
for round in $(seq "$rounds"); do
    for v in $(rotate "$round" rr lc first); do
        line=$(timeout $((spread_seconds + 30)) python3 "$here/bench/routing_spread.py" --port "${port_of[$v]}" \
            --stats-port "${stats_of[$v]}" --members r1,r2,r3 --seconds "$spread_seconds" --seed "$round") || true
        alive "$round" spread "$v" 3 || continue
        read -r samples open mean_spread p95_spread max_spread cv peak long short errors <<<"$line"
        for kv in samples:$samples open:$open spread_mean:$mean_spread spread_p95:$p95_spread spread_max:$max_spread \
            cv:$cv peak_over_ideal:$peak long_done:$long short_done:$short errors:$errors; do
            row "$round" spread "$v" 3 "${kv%%:*}" "${kv#*:}"
        done
        say "round $round spread $v: $open open, max-min mean $mean_spread p95 $p95_spread max $max_spread, CV $cv ($long long, $short short, $errors errors)"
    done
done
for v in rr lc first; do stop $v; done
fi

# ---- B. cost of the routing decision per new session ---------------------------
for n in 3 30; do
    [[ " $phases " == *" B "* ]] || break
    say "B: cost, $n replicas; $rounds rounds of ${cost_seconds} s per variant"
    start cur-rr "$build/patroxy" "$n" roundrobin 18540 18541 0
    start cur-lc "$build/patroxy" "$n" leastconn 18550 18551 0
    start base-rr "$baseline/patroxy" "$n" "" 18560 18561 0
    for v in cur-rr cur-lc base-rr; do ready $v $((n + 1)); done
    # Background: the health checks of n+1 members, with no sessions.
    declare -A c0=()
    for v in cur-rr cur-lc base-rr; do c0[$v]=$(cpu_seconds "${pid_of[$v]}"); done
    sleep 6
    for v in cur-rr cur-lc base-rr; do
        row 0 idle "$v" "$n" cpu_ms_per_s "$(awk -v a="${c0[$v]}" -v b="$(cpu_seconds "${pid_of[$v]}")" 'BEGIN {printf "%.2f", (b - a) * 1000 / 6}')"
    done
    for round in $(seq "$rounds"); do
        for v in $(rotate "$round" cur-rr cur-lc base-rr); do
            pid=${pid_of[$v]}
            cpu0=$(cpu_seconds "$pid")
            res=$(timeout $((cost_seconds + 20)) "$client" connect --threads 8 --seconds "$cost_seconds" --port "${port_of[$v]}") || true
            cpu1=$(cpu_seconds "$pid" 2>/dev/null) || true
            alive "$round" cost "$v" "$n" || continue
            rate=$(awk '{printf "%.1f", $1}' <<<"$res")
            errors=$(awk '{print $3}' <<<"$res")
            us=$(awk -v a="$cpu0" -v b="$cpu1" -v r="$rate" -v s="$cost_seconds" 'BEGIN {printf "%.2f", (b - a) * 1e6 / (r * s)}')
            row "$round" cost "$v" "$n" sessions_per_s "$rate"
            row "$round" cost "$v" "$n" cpu_us_per_session "$us"
            row "$round" cost "$v" "$n" errors "$errors"
            say "round $round cost $v, $n replicas: $rate sessions/s, $us us CPU/session, $errors errors"
        done
    done
    # Where the sessions went (totals per replica), as a check that each variant spreads over all n.
    for v in cur-rr cur-lc base-rr; do
        curl -s "http://127.0.0.1:${stats_of[$v]}/status.json" | python3 -c '
import json, sys
totals = [m["listeners"]["replicas"]["sessions_total"] for m in json.load(sys.stdin)["members"] if m["name"] != "leader"]
print("%d\t%d\t%d" % (sum(t > 0 for t in totals), min(totals), max(totals)))' | {
            read -r k lo hi
            row 0 routed "$v" "$n" replicas_used "$k"
            row 0 routed "$v" "$n" min_total "$lo"
            row 0 routed "$v" "$n" max_total "$hi"
        }
    done
    for v in cur-rr cur-lc base-rr; do stop $v; done
done

# ---- C. the decision alone ---------------------------------------------------
# micro BUILD_DIR OUT: compiles bench/routing_micro.cpp against the build's
# source tree (from its CMakeCache) and static libraries; the tree from before
# the routing classes (no health/eligibility.hpp) gets -DPATROXY_BASELINE.
micro() {
    local b=$1 exe=$2 src cxx flags def=
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$b/CMakeCache.txt")
    cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$b/CMakeCache.txt")
    flags=$(sed -n 's/^CMAKE_CXX_FLAGS_RELWITHDEBINFO:STRING=//p' "$b/CMakeCache.txt")
    [ -f "$src/health/eligibility.hpp" ] || def=-DPATROXY_BASELINE
    # shellcheck disable=SC2086
    "${cxx:-g++}" -std=c++20 ${flags:--O2 -g -DNDEBUG} $def -I"$src" "$here/bench/routing_micro.cpp" -o "$exe" \
        "$b/libpatroxy_proxy.a" "$b/libpatroxy_health.a" "$b/libpatroxy_conf.a" "$b/libpatroxy_protocol.a" \
        "$b/libpatroxy_base.a" -lyaml-cpp -lssl -lcrypto -lpthread 2>"$exe.log"
}
if [[ " $phases " != *" C "* ]]; then
    :
elif micro "$build" "$out/micro-cur" && micro "$baseline" "$out/micro-base"; then
    # Once per size: the calls while another thread moves the session counts
    # (other workers' sessions do in patroxy); a crash is recorded as status 139.
    for n in 3 30; do
        for b in roundrobin leastconn first; do
            status=0
            timeout 120 "$out/micro-cur" "$n" "$b" 8 churn >/dev/null 2>>"$out/micro-churn.log" || status=$?
            row 0 churn "cur-$b" "$n" exit_status "$status"
            say "C: candidates() with churning counts, $n replicas, $b: exit status $status"
        done
    done
    say "C: candidates() alone; $rounds rounds"
    for round in $(seq "$rounds"); do
        for n in 3 30; do
            for v in $(rotate "$round" cur-rr cur-lc cur-first base-rr); do
                case $v in
                cur-rr) res=$("$out/micro-cur" "$n" roundrobin 8) ;;
                cur-lc) res=$("$out/micro-cur" "$n" leastconn 8) ;;
                cur-first) res=$("$out/micro-cur" "$n" first 8) ;;
                base-rr) res=$("$out/micro-base" "$n" roundrobin) ;;
                esac
                row "$round" micro "$v" "$n" ns_per_call "${res%% *}"
            done
        done
        say "round $round micro done"
    done
else
    say "C skipped: routing_micro.cpp did not build (see $out/micro-*.log)"
fi

say "rows in $tsv; $crashes patroxy crash(es) during the runs"
python3 "$here/bench/routing_summary.py" "$tsv"
