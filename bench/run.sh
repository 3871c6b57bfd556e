#!/usr/bin/env bash
# patroxy against a direct connection (the limit) and HAProxy with the seed's
# config (the incumbent), in one run on the same local cluster. Paths are
# interleaved within each round; medians over the rounds go to
# bench/RESULTS.md with the ratios, raw rows to bench/out/.
#
#   bench/run.sh [--rounds N] [--duration SECONDS] [--quick] [--workloads LIST]
#
# LIST (comma-separated, default all): pgbench (workloads 1, 2, 7), connect (3),
# copy (4), standin (5, 6), failover (8: switchover, SIGKILL, a frozen Patroni
# API; patroxy with the DCS, patroxy on REST alone, HAProxy), reload (9: new
# connections per second and p99 in steady state, with a SIGHUP every second,
# and across binary upgrades).
#
# RESULTS=FILE writes the summary there instead of bench/RESULTS.md (a run of
# some workloads only). PATROXY_BEFORE=/path/to/an/older/patroxy adds a fourth path, "before", run
# interleaved with the others on its own ports (the before/after tables of
# RESULTS.md); its config is the lab's without the keys it may not know yet.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
. "$here/bench/proxies.sh"
rounds=3
duration=10
workloads=pgbench,connect,copy,standin,failover,reload
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --quick) rounds=1; duration=5; shift ;;
        --workloads) workloads=$2; shift 2 ;;
        *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
wanted() { [[ ",$workloads," == *",$1,"* ]]; }
build=${BUILD_DIR:-$here/build}
# Both proxies hold two descriptors per session: room for the seed's maxconn.
ulimit -n "$(ulimit -Hn)"
out=$here/bench/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
say() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Ports of the three paths: patroxy and HAProxy each get a write and a read port.
PX_WRITE=6000 PX_READ=6001 PX_STATS=17100
HA_WRITE=7500 HA_READ=7501 HA_STATS=7502
PXB_WRITE=6002 PXB_READ=6003 PXB_STATS=17102
before=${PATROXY_BEFORE:-}

[ -x "$build/patroxy" ] || { say "build first: cmake -B build -G Ninja && cmake --build build"; exit 1; }
"$here/lab/cluster.sh" up >/dev/null

export PGUSER=$LAB_BENCH_USER PGHOST=127.0.0.1 PGDATABASE=$LAB_DATABASE PGSSLMODE=disable
leader=$("$here/lab/cluster.sh" leader)
member_port() { echo $((LAB_PG_PORT_BASE + ${1#pg})); }
leader_port=$(member_port "$leader")
replica=$(for m in $LAB_MEMBERS; do [ "$m" != "$leader" ] && { echo "$m"; break; }; done)
replica_port=$(member_port "$replica")

# patroxy: the lab config on the bench ports; session ends are logged at info,
# which the seed's HAProxy (no `log` target) does not do, so log warnings only.
sed -e "s/port: 5000}/port: $PX_WRITE}/" -e "s/port: 5001}/port: $PX_READ}/" -e "s/port: 7000$/port: $PX_STATS/" \
    "$here/lab/patroxy.yml" > "$out/patroxy.yml"
printf 'log:\n  level: warn\ncontrol_socket: %s\n' "$out/patroxy.sock" >> "$out/patroxy.yml"
"$build/patroxy" -c "$out/patroxy.yml" </dev/null >/dev/null 2>"$out/patroxy.log" &
px_pid=$!
pxb_pid=
if [ -n "$before" ]; then
    sed -e "s/port: $PX_WRITE}/port: $PXB_WRITE}/" -e "s/port: $PX_READ}/port: $PXB_READ}/" \
        -e "s/port: $PX_STATS$/port: $PXB_STATS/" -e '/^maxconn:/d' -e '/^control_socket:/d' \
        -e '/^dcs:/,/^[a-z]/{/^dcs:/d;/^  /d}' "$out/patroxy.yml" > "$out/patroxy-before.yml"
    "$before" -c "$out/patroxy-before.yml" </dev/null >/dev/null 2>"$out/patroxy-before.log" &
    pxb_pid=$!
fi

start_haproxy $HA_WRITE $HA_READ $HA_STATS   # bench/proxies.sh: the seed's config on these ports
trap 'kill $px_pid $ha_pid $pxb_pid 2>/dev/null; wait $px_pid $ha_pid $pxb_pid 2>/dev/null || true; rm -rf "${proxy_run:-}"' EXIT
haproxy_settled() { haproxy_settled_on $HA_STATS; }

for _ in $(seq 150); do haproxy_settled 2>/dev/null && break; sleep 0.2; done
haproxy_settled || { say "HAProxy did not settle; see $out/haproxy.log"; exit 1; }
for port in $PX_WRITE ${before:+$PXB_WRITE}; do
    for _ in $(seq 100); do psql -X -q -p "$port" -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
done

say "pgbench -i -s 10 on the leader ($leader)"
pgbench -i -s 10 -q -p "$leader_port" >/dev/null 2>&1
"$here/lab/cluster.sh" wait-healthy 60 >/dev/null


# run ROUND WORKLOAD PATH PORT PROXY_PID PGBENCH_ARGS...: one pgbench run, one row.
run() {
    local round=$1 workload=$2 path=$3 port=$4 pid=$5; shift 5
    local logdir="$out/log/$round-$workload-$path" cpu0=0 cpu1=0 text
    mkdir -p "$logdir"
    [ "$pid" != - ] && cpu0=$(cpu_seconds "$pid")
    text=$(cd "$logdir" && pgbench -p "$port" -T "$duration" -j 2 -l --log-prefix=tx "$@" 2>&1) || true
    [ "$pid" != - ] && cpu1=$(cpu_seconds "$pid")
    local tps failed txs
    tps=$(echo "$text" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -1)
    txs=$(echo "$text" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    failed=$(echo "$text" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
    # Per-transaction latencies (microseconds, 3rd field) -> p50, p99 in ms.
    read -r p50 p99 < <(cat "$logdir"/tx* 2>/dev/null | awk '{print $3}' | sort -n |
        awk '{v[NR]=$1} END {if (NR==0) print "nan nan"; else printf "%.3f %.3f\n", v[int(NR*0.50)+1]/1000, v[int(NR*0.99)+1]/1000}')
    rm -rf "$logdir"
    local cpu_per_1k=nan
    if [ "$pid" != - ] && [ -n "$txs" ] && [ "$txs" -gt 0 ]; then
        cpu_per_1k=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$txs" 'BEGIN {printf "%.4f", (b - a) * 1000 / n}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$workload" "$path" "${tps:-nan}" "$p50" "$p99" \
        "$cpu_per_1k" "${failed:-nan}" >> "$out/results.tsv"
    say "round $round $workload $path: tps ${tps:-?} p50 ${p50}ms p99 ${p99}ms failed ${failed:-?}"
}

printf 'round\tworkload\tpath\ttps\tp50_ms\tp99_ms\tproxy_cpu_s_per_1k_tx\tfailed\n' > "$out/results.tsv"
printf 'round\tworkload\tpath\tvalue\tunit\n' > "$out/extra.tsv"
paths=(direct patroxy haproxy ${before:+before})
# port_of PATH write|read -> "PORT PID" (PID - for direct)
port_of() {
    case $1/$2 in
        direct/write) echo "$leader_port -" ;;
        direct/read) echo "$replica_port -" ;;
        patroxy/write) echo "$PX_WRITE $px_pid" ;;
        patroxy/read) echo "$PX_READ $px_pid" ;;
        haproxy/write) echo "$HA_WRITE $ha_pid" ;;
        haproxy/read) echo "$HA_READ $ha_pid" ;;
        before/write) echo "$PXB_WRITE $pxb_pid" ;;
        before/read) echo "$PXB_READ $pxb_pid" ;;
    esac
}
for round in $(seq "$rounds"); do
    # Rotate the order each round so no path always runs first (warm caches).
    order=("${paths[@]:$(((round - 1) % ${#paths[@]}))}" "${paths[@]:0:$(((round - 1) % ${#paths[@]}))}")
    if wanted pgbench; then
        for clients in 8 64; do
            for port_kind in write read; do
                for mode in simple prepared; do
                    for path in "${order[@]}"; do
                        read -r port pid < <(port_of "$path" "$port_kind")
                        run "$round" "select-only c$clients $port_kind $mode" "$path" "$port" "$pid" -n -S -c "$clients" -M "$mode"
                    done
                done
            done
        done
        for path in "${order[@]}"; do
            read -r port pid < <(port_of "$path" write)
            run "$round" "tpc-b c8 write" "$path" "$port" "$pid" -c 8
        done
    fi
    if wanted connect; then
        # Workload 3: a new connection per transaction (the trust user: no SCRAM in the way).
        for port_kind in write read; do
            for path in "${order[@]}"; do
                read -r port pid < <(port_of "$path" "$port_kind")
                run "$round" "connect-per-tx c8 $port_kind" "$path" "$port" "$pid" -n -S -C -c 8
            done
        done
    fi
    if wanted copy; then
        # Workload 4: COPY of pgbench_accounts (scale 10: ~100 MB of text) out through the read port.
        for path in "${order[@]}"; do
            read -r port pid < <(port_of "$path" read)
            mbs=$(/usr/bin/python3 - "$port" <<'PY'
import subprocess, sys, time
t0 = time.time()
p = subprocess.Popen(["psql", "-X", "-q", "-p", sys.argv[1], "-c", "COPY pgbench_accounts TO STDOUT"], stdout=subprocess.PIPE)
n = 0
while chunk := p.stdout.read(1 << 20):
    n += len(chunk)
p.wait()
print(f"{n / (time.time() - t0) / 1e6:.1f}" if p.returncode == 0 and n > 0 else "nan")
PY
)
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "copy-out read" "$path" "$mbs" "MB/s" >> "$out/extra.tsv"
            say "round $round copy-out read $path: $mbs MB/s"
        done
    fi
done

if wanted standin; then
    "$here/bench/standin_run.sh" "$build" "$out" "$rounds" >> "$out/extra.tsv"
fi

if wanted failover; then
    # Workload 8: switchover, SIGKILL of the leader, and its Patroni frozen for
    # 15 s (SIGSTOP, below a ttl raised to 30 s), through patroxy with the DCS,
    # patroxy on REST answers alone (a second instance, the lab config without
    # its dcs: section) and HAProxy; each path's stats tell when it routed.
    PXR_WRITE=6004 PXR_READ=6005 PXR_STATS=17104
    sed -e '/^dcs:/,/^[a-z]/{/^dcs:/d;/^  /d}' -e "s/port: $PX_WRITE}/port: $PXR_WRITE}/" -e "s/port: $PX_READ}/port: $PXR_READ}/" \
        -e "s/port: $PX_STATS$/port: $PXR_STATS/" -e "s|^control_socket: .*|control_socket: $out/patroxy-rest.sock|" \
        "$out/patroxy.yml" > "$out/patroxy-rest.yml"
    "$build/patroxy" -c "$out/patroxy-rest.yml" </dev/null >/dev/null 2>"$out/patroxy-rest.log" &
    pxr_pid=$!
    trap 'kill $px_pid $ha_pid $pxb_pid $pxr_pid 2>/dev/null; wait $px_pid $ha_pid $pxb_pid $pxr_pid 2>/dev/null || true; rm -rf "${proxy_run:-}"' EXIT
    for _ in $(seq 100); do psql -X -q -p "$PXR_WRITE" -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
    stats_of() {
        case $1 in
            patroxy) echo "patroxy:http://127.0.0.1:$PX_STATS/status.json" ;;
            patroxy-rest) echo "patroxy:http://127.0.0.1:$PXR_STATS/status.json" ;;
            haproxy) echo "haproxy:http://127.0.0.1:$HA_STATS/;csv" ;;
        esac
    }
    : > "$out/failover.jsonl"
    for round in $(seq "$rounds"); do
        for event in switchover kill freeze; do
            [ "$event" = freeze ] && "$here/lab/cluster.sh" set-ttl 30 >/dev/null
            for path in patroxy patroxy-rest haproxy; do
                case $path in patroxy-rest) port=$PXR_WRITE ;; *) read -r port pid < <(port_of "$path" write) ;; esac
                "$here/lab/cluster.sh" wait-healthy 90 >/dev/null
                for _ in $(seq 150); do haproxy_settled 2>/dev/null && break; sleep 0.2; done
                old=$("$here/lab/cluster.sh" leader)
                result=$(/usr/bin/python3 "$here/bench/failover.py" --port "$port" --event "$event" --lab "$here/lab/cluster.sh" \
                    --stats "$(stats_of "$path")" --sessions 4)
                echo "{\"round\": $round, \"path\": \"$path\", \"result\": $result}" >> "$out/failover.jsonl"
                say "round $round failover $event $path: $result"
                [ "$event" = kill ] && "$here/lab/cluster.sh" start "$old" >/dev/null
            done
            [ "$event" = freeze ] && "$here/lab/cluster.sh" set-ttl "$LAB_TTL" >/dev/null
        done
    done
    "$here/lab/cluster.sh" wait-healthy 90 >/dev/null
fi

if wanted reload; then
    # Workload 9: pgbench -C (a new connection per transaction, the trust user)
    # through the write port in steady state, with a SIGHUP every second, and
    # across a binary upgrade every 5 s (SIGUSR2: the next process takes the
    # sockets); connections/s, p99 and failures per phase.
    px_now() { curl -fsS --max-time 1 "http://127.0.0.1:$PX_STATS/status.json" | python3 -c "import json,sys; print(json.load(sys.stdin)['patroxy']['pid'])"; }
    reload_phase() {  # reload_phase ROUND NAME ACTION: ACTION runs once a second meanwhile
        local round=$1 name=$2 action=$3 logdir="$out/log/$1-reload-$2" text tps p99 failed errors
        mkdir -p "$logdir"
        (cd "$logdir" && pgbench -n -S -C -c 8 -j 2 -T "$duration" -l --log-prefix=tx -p $PX_WRITE > pgbench.txt 2>&1) &
        local bench=$! tick=0
        while kill -0 "$bench" 2>/dev/null; do
            sleep 1
            tick=$((tick + 1))
            kill -0 "$bench" 2>/dev/null && $action "$tick"
        done
        wait "$bench" || true
        text=$(cat "$logdir/pgbench.txt")
        tps=$(echo "$text" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -1)
        failed=$(echo "$text" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
        errors=$(echo "$text" | grep -ci 'error' || true)
        p99=$(cat "$logdir"/tx* 2>/dev/null | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else printf "%.3f\n", v[int(NR*0.99)+1]/1000}')
        rm -rf "$logdir"
        printf '%s\treload: %s connections/s\tpatroxy\t%s\tconn/s\n' "$round" "$name" "${tps:-nan}" >> "$out/extra.tsv"
        printf '%s\treload: %s p99\tpatroxy\t%s\tms\n' "$round" "$name" "$p99" >> "$out/extra.tsv"
        printf '%s\treload: %s failed\tpatroxy\t%s\tconnections\n' "$round" "$name" "$(( ${failed:-0} + errors ))" >> "$out/extra.tsv"
        say "round $round reload $name: ${tps:-?} conn/s, p99 ${p99} ms, failed ${failed:-?}, errors $errors"
    }
    steady() { :; }
    hup() { kill -HUP "$(px_now)"; }
    upgrade() {
        [ $(($1 % 5)) -eq 0 ] || return 0
        local old new
        old=$(px_now)
        kill -USR2 "$old"
        for _ in $(seq 50); do new=$(px_now 2>/dev/null || true); [ -n "$new" ] && [ "$new" != "$old" ] && break; sleep 0.1; done
        px_pid=$new
    }
    for round in $(seq "$rounds"); do
        reload_phase "$round" steady steady
        reload_phase "$round" "SIGHUP every second" hup
        reload_phase "$round" "upgrade every 5 s" upgrade
    done
fi

python3 "$here/bench/summarize.py" "$out/results.tsv" "${RESULTS:-$here/bench/RESULTS.md}" \
    --extra "$out/extra.tsv" --failover "$out/failover.jsonl" \
    --command "bench/run.sh --rounds $rounds --duration $duration --workloads $workloads" --chart "$here/bench/results.png"
say "results: ${RESULTS:-bench/RESULTS.md} (raw rows: $out/results.tsv)"
exit 0
