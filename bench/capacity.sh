#!/usr/bin/env bash
# Capacity through one stand-in member (bench/standin_main.cpp, PostgreSQL out
# of the way), patroxy and HAProxy (the seed's settings) side by side,
# interleaved per round; a fresh proxy process for each measurement:
#   * the most concurrent sessions: idle sessions opened until the proxy stops
#     taking them (asked for MAX, default 9,990: the hard descriptor limit is
#     20,000 for every process here and a proxy holds two per session), and
#     the RSS per session at that count;
#   * the session rate (startup -> ReadyForQuery -> Terminate, 8 streams, 5 s)
#     while 9,000 idle sessions are open;
#   * a connection storm: 5,000 startups within one second (bench/storm.py),
#     at the listeners' usual limits and with maxconn 2,000 on both (so that
#     some must be turned away: 53300 from patroxy; HAProxy queues them).
# Prints TSV rows (round, figure, path, value, unit) on stdout; logs on stderr.
#
#   bench/capacity.sh [--rounds N] [--max SESSIONS] [--out DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=1 max=9990 out=
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --max) max=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
build=${BUILD_DIR:-$here/build}
out=${out:-$here/bench/out/capacity-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
say() { printf '[capacity %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
PG=16442 API=16443 PX=6110 PX_STATS=17111 HA=7610 HA_STATS=7611
. "$here/bench/standin_env.sh"
standin_up "$build" "$out" $PG $API $PX $PX_STATS $HA $HA_STATS
trap standin_down EXIT
client=$build/patroxy_bench_client
ready() { "$client" connect --port "$1" --seconds 0.2 --threads 1 | grep -q ' 0 errors'; }
port_of() { case $1 in patroxy) echo $PX;; haproxy) echo $HA;; esac; }
pid_of() { case $1 in patroxy) echo $px;; haproxy) echo $ha;; esac; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
restart() {
    local old
    old=$(pid_of "$1")
    kill "$old" 2>/dev/null || true
    wait "$old" 2>/dev/null || true
    case $1 in patroxy) start_patroxy ;; haproxy) start_haproxy ;; esac
    for _ in $(seq 100); do ready "$(port_of "$1")" 2>/dev/null && break; sleep 0.1; done
    ready "$(port_of "$1")" || { say "$1 does not answer"; exit 1; }
}
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@"; say "round $1 $2 $3: $4 $5"; }

for round in $(seq "$rounds"); do
    for path in patroxy haproxy; do
        # The most concurrent sessions, and the RSS per session there.
        restart $path
        pid=$(pid_of $path)
        before=$(rss_kib "$pid")
        coproc idle { "$client" idle --port "$(port_of $path)" --count "$max"; }
        read -r _ opened _ errors <&"${idle[0]}"
        after=$(rss_kib "$pid")
        fds=$(ls "/proc/$pid/fd" | wc -l)
        echo done >&"${idle[1]}"
        wait "$idle_PID" || true
        row "$round" "most concurrent sessions (of $max asked)" $path "$opened" "sessions ($errors failed, proxy $fds descriptors)"
        row "$round" "RSS per session at that count" $path "$(awk -v a="$after" -v b="$before" -v n="$opened" 'BEGIN {printf "%.2f", (a - b) / n}')" "KiB/session"

        # The session rate with 9,000 idle sessions open.
        restart $path
        coproc idle { "$client" idle --port "$(port_of $path)" --count 9000; }
        read -r _ opened _ _ <&"${idle[0]}"
        rate=$("$client" connect --port "$(port_of $path)" --seconds 5 --threads 8)
        echo done >&"${idle[1]}"
        wait "$idle_PID" || true
        row "$round" "session rate with $opened idle sessions open" $path "$(echo "$rate" | awk '{print $1}')" "sessions/s ($(echo "$rate" | awk '{print $3}') errors)"
        restart $path
        rate=$("$client" connect --port "$(port_of $path)" --seconds 5 --threads 8)
        row "$round" "session rate with no idle session" $path "$(echo "$rate" | awk '{print $1}')" "sessions/s ($(echo "$rate" | awk '{print $3}') errors)"

        # The storm at the usual limits.
        restart $path
        s=$(/usr/bin/python3 "$here/bench/storm.py" --port "$(port_of $path)" --count 5000 --window 1)
        row "$round" "storm of 5,000 in 1 s, maxconn 20,000" $path "$s" json
    done
done

# The storm again with maxconn 2,000 on both listeners.
sed -i 's/maxconn: 20000/maxconn: 2000/' "$out/patroxy-standin.yml"
sed -i 's/^    maxconn 20000/    maxconn 2000/' "$out/haproxy-standin.cfg"
for round in $(seq "$rounds"); do
    for path in patroxy haproxy; do
        restart $path
        s=$(/usr/bin/python3 "$here/bench/storm.py" --port "$(port_of $path)" --count 5000 --window 1)
        row "$round" "storm of 5,000 in 1 s, maxconn 2,000" $path "$s" json
    done
done
