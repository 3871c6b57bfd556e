#!/usr/bin/env bash
# Reloads under load, on the real lab cluster: pgbench -c 8 -T 40 through both
# ports while ten SIGHUPs change patroxy's configuration (a listener added and
# removed, health.interval, maxconn, the read listener restricted to one
# replica and back, the log level, a file with a syntax error and one with a
# semantic error). Zero failed transactions and no pgbench connection lost;
# the bad reloads are logged with file:line:col and shown on the page while
# the running configuration keeps working. Every wait is bounded.
#
#   reload_test.sh PATROXY
set -euo pipefail
patroxy=${1:?path to patroxy}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/lab/lab.env"
work=$(mktemp -d /tmp/patroxy-reload.XXXXXX)
W=15100 R=15101 X=15102 S=17200
px=
say() { printf '[reload %(%H:%M:%S)T] %s\n' -1 "$*"; }
fail() { say "FAIL: $*"; exit 1; }
cleanup() {
    [ -n "$px" ] && kill "$px" 2>/dev/null && wait "$px" 2>/dev/null || true
    cp "$work/patroxy.log" "${ARTIFACTS:-/tmp}/patroxy-reload.log" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# config [LISTENER_EXTRA] [READ_MEMBERS] [HEALTH_INTERVAL] [MAXCONN] [LEVEL]
config() {
    local extra=${1:-} read_members=${2:-} interval=${3:-2s} maxconn=${4:-1000} level=${5:-info}
    {
        echo "scope: $LAB_SCOPE"
        echo "maxconn: 4000"
        echo "members:"
        for i in 0 1 2; do
            echo "  - {name: pg$i, host: 127.0.0.1, port: $((LAB_PG_PORT_BASE + i)), api: \"http://127.0.0.1:$((LAB_API_PORT_BASE + i))\"}"
        done
        echo "listeners:"
        echo "  - {name: master, role: write, bind: 127.0.0.1, port: $W, maxconn: $maxconn}"
        echo "  - {name: replicas, role: read, bind: 127.0.0.1, port: $R, maxconn: $maxconn${read_members:+, members: [$read_members]}}"
        [ -n "$extra" ] && echo "  - {name: extra, role: read, bind: 127.0.0.1, port: $X}"
        echo "health: {interval: $interval, fast_interval: 500ms}"
        echo "stats: {bind: 127.0.0.1, port: $S}"
        echo "control_socket: ''"
        echo "log: {level: $level}"
    } > "$work/next.yml"
    mv "$work/next.yml" "$work/patroxy.yml"
}
status() { curl -fsS --max-time 2 "http://127.0.0.1:$S/status.json"; }
field() { status | python3 -c "import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
generation=1
hup() {  # hup DESCRIPTION: SIGHUP, then wait (bounded) for the reload to be recorded
    local before
    before=$(field "j['patroxy']['config_reloads_total']['ok'] + j['patroxy']['config_reloads_total']['failed']")
    kill -HUP "$px"
    for _ in $(seq 50); do
        [ "$(field "j['patroxy']['config_reloads_total']['ok'] + j['patroxy']['config_reloads_total']['failed']")" -gt "$before" ] && break
        sleep 0.1
    done
    say "reload: $1 -> $(field "j['patroxy']['last_reload']['result']") (generation $(field "j['patroxy']['config_generation']"))"
}
psql_at() { PGPASSWORD=$LAB_SUPERUSER_PASSWORD psql -XAt "host=127.0.0.1 port=$1 user=$LAB_SUPERUSER dbname=$LAB_DATABASE sslmode=disable connect_timeout=2" -c "$2"; }

config
"$patroxy" -c "$work/patroxy.yml" > "$work/patroxy.log" 2>&1 &
px=$!
for _ in $(seq 100); do psql_at $W 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql_at $W 'select 1' >/dev/null || fail "patroxy does not route writes"
for _ in $(seq 100); do psql_at $R 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
export PGPASSWORD=$LAB_SUPERUSER_PASSWORD
conn="host=127.0.0.1 user=$LAB_SUPERUSER dbname=$LAB_DATABASE sslmode=disable"
pgbench -i -s 1 -q "$conn port=$W" >/dev/null 2>&1 || fail "pgbench -i through patroxy"
pgbench -n -c 8 -j 2 -T 40 "$conn port=$W" > "$work/write.txt" 2>&1 &
pw=$!
pgbench -n -S -c 8 -j 2 -T 40 "$conn port=$R" > "$work/read.txt" 2>&1 &
pr=$!
sleep 3

config extra
hup "listener 'extra' added"
[ "$(psql_at $X 'select pg_is_in_recovery()')" = t ] || fail "the added listener does not route to a replica"
sleep 2
config
hup "listener 'extra' removed"
psql_at $X 'select 1' >/dev/null 2>&1 && fail "the removed listener still accepts"
sleep 2
config "" "" 1s
hup "health.interval 1s"
sleep 2
config "" "" 1s 2000
hup "maxconn 2000"
[ "$(field "j['listeners'][0]['sessions_limit']")" = 2000 ] || fail "maxconn did not change"
sleep 2
leader=$("$root/lab/cluster.sh" leader)
one=$(for m in pg0 pg1 pg2; do [ "$m" != "$leader" ] && { echo "$m"; break; }; done)
config "" "$one" 1s 2000
hup "read listener restricted to $one"
for _ in 1 2 3 4; do
    port=$(psql_at $R "select current_setting('port')")
    [ "$port" = $((LAB_PG_PORT_BASE + ${one#pg})) ] || fail "a new read session went to port $port, not $one"
done
sleep 2
config "" "" 1s 2000
hup "read listener back to every replica"
sleep 2
config "" "" 1s 2000 debug
hup "log level debug"
grep -q " debug " "$work/patroxy.log" || sleep 2
grep -q " debug " "$work/patroxy.log" || fail "log level debug did not take"
config "" "" 1s 2000 info
hup "log level info"
sleep 1
good_generation=$(field "j['patroxy']['config_generation']")
printf 'members: [\n' > "$work/patroxy.yml"
hup "a syntax error"
[ "$(field "j['patroxy']['last_reload']['result']")" = failed ] || fail "a syntax error was not refused"
field "j['patroxy']['last_reload']['errors'][0]" | grep -Eq "^$work/patroxy.yml:[0-9]+:[0-9]+: " ||
    fail "the syntax error has no file:line:col on the page: $(field "j['patroxy']['last_reload']['errors']")"
grep -Eq "reload refused, the running configuration stays: $work/patroxy.yml:[0-9]+:[0-9]+: " "$work/patroxy.log" ||
    fail "the syntax error is not in the log with file:line:col"
psql_at $W 'select 1' >/dev/null || fail "writes stopped after a refused reload"
sleep 1
config "" "" 1s 2000
sed -i "s/port: $R, maxconn: 2000/port: 70000, maxconn: 2000/" "$work/patroxy.yml"
hup "a semantic error (port 70000)"
field "j['patroxy']['last_reload']['errors'][0]" | grep -q "listeners\[1\].port: expected an integer from 1 to 65535, got '70000'" ||
    fail "the semantic error is not on the page: $(field "j['patroxy']['last_reload']['errors']")"
[ "$(field "j['patroxy']['config_generation']")" = "$good_generation" ] || fail "a refused reload changed the generation"
curl -fsS "http://127.0.0.1:$S/" | grep -q "expected an integer from 1 to 65535" || fail "the page does not show the error"
psql_at $R 'select 1' >/dev/null || fail "reads stopped after a refused reload"

wait "$pw" || true
wait "$pr" || true
for f in write read; do
    say "pgbench $f: $(grep -E '^tps|failed transactions' "$work/$f.txt" | tr '\n' ' ')"
    grep -q 'number of failed transactions: 0 ' "$work/$f.txt" || fail "pgbench $f had failed transactions: $(cat "$work/$f.txt")"
    grep -Eqi 'aborted|connection.*(lost|closed|terminat)|server closed' "$work/$f.txt" && fail "pgbench $f lost a connection: $(cat "$work/$f.txt")"
done
[ "$(field "j['patroxy']['config_reloads_total']['ok']")" = 8 ] || fail "expected 8 applied reloads"
[ "$(field "j['patroxy']['config_reloads_total']['failed']")" = 2 ] || fail "expected 2 refused reloads"
grep -q "reason=drained" "$work/patroxy.log" && fail "a session was drained by a reload that kept its listener and member"
say "all reload checks passed"
