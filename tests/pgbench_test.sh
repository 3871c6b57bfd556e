#!/usr/bin/env bash
# pgbench through patroxy on the lab cluster: select-only through the read
# port and TPC-B-like through the write port, both without a single error;
# then psql and pgbench with sslmode=require through both ports.
set -euo pipefail
patroxy=${1:?path to the patroxy binary}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
work=$(mktemp -d /tmp/patroxy-pgbench.XXXXXX)
sed -e 's/port: 5000}/port: 15000}/' -e 's/port: 5001}/port: 15001}/' -e 's/port: 7000$/port: 17000/' \
    "$here/lab/patroxy.yml" > "$work/patroxy.yml"
"$patroxy" -c "$work/patroxy.yml" 2> "$work/patroxy.log" &
px=$!
trap 'kill $px 2>/dev/null; wait $px 2>/dev/null || true; rm -rf "$work"' EXIT
export PGPASSWORD=$LAB_SUPERUSER_PASSWORD PGUSER=$LAB_SUPERUSER PGHOST=127.0.0.1 PGDATABASE=$LAB_DATABASE PGSSLMODE=disable
for i in $(seq 100); do psql -X -q -p 15000 -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done

check() {  # check NAME OUTPUT: pgbench finished every transaction without failures
    local name=$1 out=$2
    echo "$out" | grep -E '^(tps|number of (failed )?transactions)' | sed "s/^/[$name] /"
    grep -q 'number of failed transactions: 0 ' <<< "$out" || { echo "FAIL: $name reported failed transactions" >&2; exit 1; }
}
pgbench -i -s 5 -q -p 15000 >/dev/null 2>&1
check "select-only :15001" "$(pgbench -n -S -c 8 -j 2 -T 10 -p 15001 2>&1)"
check "tpc-b :15000" "$(pgbench -c 8 -j 2 -T 10 -p 15000 2>&1)"
# TLS end to end through both ports: psql and pgbench with sslmode=require.
for port in 15000 15001; do
    ssl=$(PGSSLMODE=require psql -X -At -p $port -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')
    [ "$ssl" = t ] || { echo "FAIL: psql with sslmode=require through :$port is not encrypted ($ssl)" >&2; exit 1; }
    check "select-only sslmode=require :$port" "$(PGSSLMODE=require pgbench -n -S -c 4 -j 2 -T 5 -p $port 2>&1)"
done
echo "pgbench through patroxy: no errors"
