#!/usr/bin/env bash
# Binary upgrades under load, on the real lab cluster: pgbench -C -c 8 -T 30
# (a new connection per transaction) through :W and :R while patroxy is
# upgraded three times in a row (SIGUSR2: the running process starts its
# binary with --upgrade, hands it the listening sockets and drains). Zero
# failed connections; each new process routes from its first moment (it was
# handed the members' state); the old one exits after its drain. Every wait
# is bounded.
#
#   upgrade_test.sh PATROXY
set -euo pipefail
patroxy=${1:?path to patroxy}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/lab/lab.env"
work=$(mktemp -d /tmp/patroxy-upgrade.XXXXXX)
W=15110 R=15111 S=17210
say() { printf '[upgrade %(%H:%M:%S)T] %s\n' -1 "$*"; }
fail() { say "FAIL: $*"; exit 1; }
pids() { pgrep -f -- "-c $work/patroxy.yml" || true; }
cleanup() {
    for p in $(pids); do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in $(pids); do kill -KILL "$p" 2>/dev/null || true; done
    cp "$work/patroxy.log" "${ARTIFACTS:-/tmp}/patroxy-upgrade.log" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

{
    echo "scope: $LAB_SCOPE"
    echo "maxconn: 4000"
    echo "members:"
    for i in 0 1 2; do
        echo "  - {name: pg$i, host: 127.0.0.1, port: $((LAB_PG_PORT_BASE + i)), api: \"http://127.0.0.1:$((LAB_API_PORT_BASE + i))\"}"
    done
    echo "listeners:"
    echo "  - {name: master, role: write, bind: 127.0.0.1, port: $W}"
    echo "  - {name: replicas, role: read, bind: 127.0.0.1, port: $R}"
    echo "stats: {bind: 127.0.0.1, port: $S}"
    echo "timeouts: {drain: 5s}"
    echo "control_socket: $work/patroxy.sock"
} > "$work/patroxy.yml"
status_pid() { curl -fsS --max-time 1 "http://127.0.0.1:$S/status.json" | python3 -c "import json,sys; print(json.load(sys.stdin)['patroxy']['pid'])"; }
setsid "$patroxy" -c "$work/patroxy.yml" >> "$work/patroxy.log" 2>&1 < /dev/null &
export PGPASSWORD=$LAB_SUPERUSER_PASSWORD PGUSER=$LAB_BENCH_USER PGHOST=127.0.0.1 PGDATABASE=$LAB_DATABASE PGSSLMODE=disable
for _ in $(seq 100); do psql -XAt -p $W -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 100); do psql -XAt -p $R -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql -XAt -p $R -c 'select 1' >/dev/null || fail "patroxy does not route"
pgbench -i -s 1 -q -p $W >/dev/null 2>&1 || fail "pgbench -i through patroxy"

pgbench -n -S -C -c 8 -j 2 -T 30 -p $W > "$work/write.txt" 2>&1 &
pw=$!
pgbench -n -S -C -c 8 -j 2 -T 30 -p $R > "$work/read.txt" 2>&1 &
pr=$!
sleep 4
for round in 1 2 3; do
    old=$(status_pid) || fail "no status before upgrade $round"
    kill -USR2 "$old"
    new=""
    for _ in $(seq 100); do
        new=$(status_pid 2>/dev/null || true)
        [ -n "$new" ] && [ "$new" != "$old" ] && break
        sleep 0.1
    done
    [ -n "$new" ] && [ "$new" != "$old" ] || fail "upgrade $round: no new process answers the stats port"
    for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$old" 2>/dev/null && fail "upgrade $round: the old process $old did not exit after its drain"
    say "upgrade $round: $old -> $new"
    sleep 4
done
wait "$pw" || true
wait "$pr" || true
for f in write read; do
    say "pgbench -C $f: $(grep -E '^tps|failed transactions' "$work/$f.txt" | tr '\n' ' ')"
    grep -q 'number of failed transactions: 0 ' "$work/$f.txt" || fail "pgbench -C $f had failed transactions: $(cat "$work/$f.txt")"
    grep -Ei 'error|fatal|aborted' "$work/$f.txt" | grep -v '^pgbench (' && fail "pgbench -C $f saw errors: $(cat "$work/$f.txt")"
done
[ "$(grep -c 'took .* listening sockets from the running patroxy' "$work/patroxy.log")" = 3 ] || fail "not three handovers in the log"
grep -q "did not confirm the handover" "$work/patroxy.log" && fail "a handover was not confirmed"
say "all upgrade checks passed"
