#!/usr/bin/env bash
# The seed's whole scenario on one machine: dependencies, build, a real
# 3-node Patroni cluster, patroxy in front of it on :5000 (leader) and :5001
# (replicas), pgbench through both, then a switchover while a writer keeps
# writing through :5000. Leaves the cluster and patroxy running to look at.
#
#   lab/demo.sh          run it all
#   lab/demo.sh stop     stop patroxy and the cluster
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
build=${BUILD_DIR:-$here/build}
pidfile=$LAB_DIR/patroxy.pid
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_patroxy() {
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then
    stop_patroxy
    "$here/lab/cluster.sh" down
    exit 0
fi

say "Installing dependencies (Debian packages)"
"$here/deploy/install-deps.sh" >/dev/null
say "Building"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" | tail -1

say "Starting the local Patroni cluster (3 etcd, 3 Patroni + PostgreSQL 15)"
stop_patroxy
"$here/lab/cluster.sh" up

say "Starting patroxy on :5000 (write) and :5001 (read)"
setsid "$build/patroxy" -c "$here/lab/patroxy.yml" </dev/null >/dev/null 2>"$LAB_DIR/patroxy.log" &
echo $! > "$pidfile"
export PGPASSWORD=$LAB_SUPERUSER_PASSWORD PGUSER=$LAB_SUPERUSER PGHOST=127.0.0.1 PGDATABASE=$LAB_DATABASE PGSSLMODE=disable
for _ in $(seq 100); do psql -X -q -p 5000 -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
psql -X -At -p 5000 -c "select 'write port :5000 -> port ' || current_setting('port') || ', in recovery: ' || pg_is_in_recovery()"
for _ in 1 2; do
    psql -X -At -p 5001 -c "select 'read port  :5001 -> port ' || current_setting('port') || ', in recovery: ' || pg_is_in_recovery()"
done

say "pgbench -i -s 10 through :5000"
pgbench -i -s 10 -q -p 5000 2>&1 | tail -1

say "pgbench -S -c 8 -T 20 (select-only) through :5001"
pgbench -n -S -c 8 -j 2 -T 20 -p 5001 2>&1 | grep -E '^(tps|latency average|number of failed)'

say "pgbench TPC-B-like -c 8 -T 20 through :5000"
pgbench -c 8 -j 2 -T 20 -p 5000 2>&1 | grep -E '^(tps|latency average|number of failed)'

say "Switchover while a writer inserts through :5000 every 100 ms"
psql -X -q -p 5000 -c "CREATE TABLE IF NOT EXISTS demo_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
log=$LAB_DIR/demo-writes.log
: > "$log"
(
    end=$((SECONDS + 15))
    while [ $SECONDS -lt $end ]; do
        if out=$(psql -X -At -p 5000 -c "INSERT INTO demo_writes DEFAULT VALUES RETURNING id" 2>&1); then
            echo "$(date +%s.%N) ok $out" >> "$log"
        else
            echo "$(date +%s.%N) failed $(echo "$out" | head -1)" >> "$log"
        fi
        sleep 0.1
    done
) &
writer=$!
sleep 3
"$here/lab/cluster.sh" switchover
wait $writer
ok=$(grep -c ' ok ' "$log" || true)
failed=$(grep -c ' failed ' "$log" || true)
window=$(awk '$2=="failed"{ if(!first) first=$1; last=$1 } END { if (first) printf "%.1f", last-first+0.1; else print "0" }' "$log")
echo "writes through :5000: $ok succeeded, $failed failed; writes failed for ${window}s"
grep ' failed ' "$log" | head -3 | sed 's/^[0-9.]* failed /  e.g.: /' || true
psql -X -At -p 5000 -c "select 'write port now -> port ' || current_setting('port') || ', in recovery: ' || pg_is_in_recovery()"
"$here/lab/cluster.sh" status

say "Done"
echo "patroxy:     pid $(cat "$pidfile"), log $LAB_DIR/patroxy.log"
echo "stats page:  http://127.0.0.1:7000/   (JSON /status.json, Prometheus /metrics, /health)"
echo "connect:     PGPASSWORD=$LAB_SUPERUSER_PASSWORD psql -h 127.0.0.1 -p 5000 -U $LAB_SUPERUSER"
echo "stop all:    lab/demo.sh stop"
