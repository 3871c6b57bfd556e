#!/usr/bin/env bash
# Workloads 5 and 6: the proxy's own capacity with PostgreSQL out of the way.
# One stand-in member (bench/standin_main.cpp: startup answered at once, then
# echo; a Patroni-shaped API saying "leader"), reached directly, through
# patroxy and through HAProxy (the seed's check settings), interleaved per round:
#   5. sessions per second (startup -> ReadyForQuery -> Terminate, 8 streams)
#      round trips (8 sessions echoing 100 bytes: a query's shape) with the
#      proxy's CPU per round trip, and relay throughput (4 sessions echoing
#      16 KiB chunks), MB/s both ways
#   6. RSS growth per idle session with 9,000 sessions open (the machine's hard
#      descriptor limit is 20,000 and a proxy holds two per session)
# Prints TSV rows (round, workload, path, value, unit) on stdout; logs on stderr.
#
#   bench/standin_run.sh BUILD_DIR OUT_DIR ROUNDS
set -euo pipefail
build=${1:?build dir} out=${2:?out dir} rounds=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
ulimit -n "$(ulimit -Hn)"
say() { printf '[standin %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
PG=16432 API=16433 PX=6100 PX_STATS=17101 HA=7600 HA_STATS=7601 PXB=6102 PXB_STATS=17103
idle_sessions=${IDLE_SESSIONS:-9000}

. "$here/bench/standin_env.sh"
standin_up "$build" "$out" $PG $API $PX $PX_STATS $HA $HA_STATS
trap standin_down EXIT

# A fresh proxy process: freed memory that an allocator keeps would hide the
# growth of the next idle measurement.
restart() {
    local old
    old=$(pid_of "$1")
    kill "$old" 2>/dev/null || true
    wait "$old" 2>/dev/null || true
    case $1 in patroxy) start_patroxy ;; haproxy) start_haproxy ;; before) start_before ;; esac
    local port; port=$(port_of "$1")
    for _ in $(seq 100); do ready "$port" 2>/dev/null && break; sleep 0.1; done
}

client=$build/patroxy_bench_client
ready() { "$client" connect --port "$1" --seconds 0.2 --threads 1 | grep -q ' 0 errors'; }
for port in $PG $PX $HA ${pxb:+$PXB}; do
    for _ in $(seq 100); do ready $port 2>/dev/null && break; sleep 0.1; done
    ready $port || { say "port $port does not answer"; exit 1; }
done

port_of() { case $1 in direct) echo $PG;; patroxy) echo $PX;; haproxy) echo $HA;; before) echo $PXB;; esac; }
pid_of() { case $1 in patroxy) echo $px;; haproxy) echo $ha;; before) echo $pxb;; esac; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# rate_and_cpu ROUND PATH NAME UNIT PER CLIENT_ARGS...: runs the client for 5 s
# and prints its rate as NAME, and the proxy's own CPU (user+system) per unit
# as "proxy-only CPU per UNIT", whatever the rate. PER turns the client's
# number into units per second (sessions/s: 1; MB/s of 100-byte echoes: 1e6/200).
rate_and_cpu() {
    local round=$1 path=$2 name=$3 unit=$4 per=$5; shift 5
    local pid rate us="" cpu0=""
    pid=$(pid_of "$path")
    [ -n "$pid" ] && cpu0=$(cpu_seconds "$pid")
    rate=$("$client" "$@" --port "$(port_of "$path")" --seconds 5 | awk -v k="$per" '{printf "%.1f", $1 * k}')
    printf '%s\t%s\t%s\t%s\t%ss/s\n' "$round" "$name" "$path" "$rate" "$unit"
    if [ -n "$pid" ]; then
        us=$(awk -v a="$cpu0" -v b="$(cpu_seconds "$pid")" -v r="$rate" 'BEGIN {printf "%.2f", (b - a) * 1e6 / (r * 5)}')
        printf '%s\tproxy-only CPU per %s\t%s\t%s\tus/%s\n' "$round" "$unit" "$path" "$us" "$unit"
    fi
    say "round $round $name $path: $rate/s ${us:-} us CPU/$unit"
}

paths=(direct patroxy haproxy ${pxb:+before})
for round in $(seq "$rounds"); do
    order=("${paths[@]:$(((round - 1) % ${#paths[@]}))}" "${paths[@]:0:$(((round - 1) % ${#paths[@]}))}")
    for path in "${order[@]}"; do
        rate_and_cpu "$round" "$path" "proxy-only sessions/s" session 1 connect --threads 8
    done
    for path in "${order[@]}"; do
        # A query's shape without PostgreSQL: 100 bytes each way, 8 sessions.
        rate_and_cpu "$round" "$path" "proxy-only round trips" "round trip" 5000 relay --threads 8 --chunk 100
    done
    for path in "${order[@]}"; do
        mbs=$("$client" relay --port "$(port_of "$path")" --seconds 5 --threads 4 | awk '{print $1}')
        printf '%s\tproxy-only relay\t%s\t%s\tMB/s\n' "$round" "$path" "$mbs"
        say "round $round relay $path: $mbs MB/s"
    done
    for path in patroxy haproxy ${pxb:+before}; do
        restart $path
        pid=$(pid_of $path)
        before=$(rss_kib "$pid")
        coproc idle { "$client" idle --port "$(port_of $path)" --count "$idle_sessions"; }
        read -r status opened _ _ <&"${idle[0]}"
        after=$(rss_kib "$pid")
        echo done >&"${idle[1]}"
        wait "$idle_PID" || true
        per=$(awk -v a="$after" -v b="$before" -v n="$opened" 'BEGIN {printf "%.2f", (a - b) / n}')
        printf '%s\tidle session RSS\t%s\t%s\tKiB/session\n' "$round" "$path" "$per"
        say "round $round idle $path: $status $opened sessions, RSS $before -> $after KiB: $per KiB/session"
    done
done
