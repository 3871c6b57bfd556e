# patroxy and HAProxy (the seed's configuration) beside each other in front of
# the lab cluster, for the benches (sourced, bash). Needs: here (the source
# tree), build (patroxy's build folder), out (a folder for configs and logs).
#
#   proxy_user=nobody         run both proxies as this user (chaos.sh: its
#                             traffic is what nftables/tc single out); empty: as us
#   start_patroxy NAME WRITE READ STATS [EXTRA_YAML]   -> sets pid_NAME
#   start_haproxy WRITE READ STATS                      -> sets ha_pid
#   haproxy_settled_on STATS | patroxy_settled STATS LEADER
#   stop_proxies

proxy_user=${proxy_user:-}
proxy_pids=()

# The command prefix that runs a proxy as proxy_user (setpriv execs in place:
# $! of a `"${run_as[@]}" cmd &` is the proxy's own pid).
run_as_proxy_user() {
    run_as=()
    [ -n "$proxy_user" ] && run_as=(setpriv --reuid="$proxy_user" --regid="$(id -g "$proxy_user")" --clear-groups)
    return 0
}

# A folder the proxy user may write its control socket and pid file into.
proxy_run_dir() {
    if [ -z "${proxy_run:-}" ]; then
        proxy_run=$(mktemp -d /tmp/patroxy-bench-run.XXXXXX)
        [ -n "$proxy_user" ] && chown "$proxy_user" "$proxy_run"
    fi
    echo "$proxy_run"
}

# start_patroxy NAME WRITE READ STATS [EXTRA_YAML]: the lab config on these ports, log level warn.
start_patroxy() {
    local name=$1 write=$2 read=$3 stats=$4 extra=${5:-} cfg="$out/$1.yml" pid
    sed -e "s/port: 5000}/port: $write}/" -e "s/port: 5001}/port: $read}/" -e "s/port: 7000$/port: $stats/" \
        "$here/lab/patroxy.yml" > "$cfg"
    printf 'log:\n  level: warn\ncontrol_socket: %s\n%s' "$(proxy_run_dir)/$name.sock" "$extra" >> "$cfg"
    chmod 644 "$cfg"
    run_as_proxy_user
    "${run_as[@]}" "$build/patroxy" -c "$cfg" </dev/null >/dev/null 2>"$out/$name.log" &
    pid=$!
    proxy_pids+=("$pid")
    printf -v "pid_${name//-/_}" '%s' "$pid"
}

# start_haproxy WRITE READ STATS: the seed's haproxy.cfg on these ports.
start_haproxy() {
    local write=$1 read=$2 stats=$3 servers="" m
    for m in $LAB_MEMBERS; do
        servers+="    server $m 127.0.0.1:$((LAB_PG_PORT_BASE + ${m#pg})) check port $((LAB_API_PORT_BASE + ${m#pg}))"$'\n'
    done
    /usr/bin/python3 - "$here/bench/haproxy.cfg.in" "$out/haproxy.cfg" "$(proxy_run_dir)/haproxy.pid" "$stats" "$write" "$read" "$servers" <<'EOF'
import sys
src, dst, pidfile, stats, write, read, servers = sys.argv[1:]
text = open(src).read()
for k, v in {"@PIDFILE@": pidfile, "@STATS_PORT@": stats, "@WRITE_PORT@": write,
             "@READ_PORT@": read, "@SERVERS@": servers.rstrip("\n")}.items():
    text = text.replace(k, v)
open(dst, "w").write(text)
EOF
    chmod 644 "$out/haproxy.cfg"
    run_as_proxy_user
    "${run_as[@]}" haproxy -f "$out/haproxy.cfg" -db </dev/null >"$out/haproxy.log" 2>&1 &
    ha_pid=$!
    proxy_pids+=("$ha_pid")
}

# HAProxy marks servers UP before their first check: settled once its CSV shows
# exactly one leader UP on master and two replicas UP on replicas, all checked.
haproxy_settled_on() {
    curl -fsS --max-time 2 "http://127.0.0.1:$1/;csv" | /usr/bin/python3 -c '
import csv, sys
rows = [r for r in csv.DictReader(sys.stdin) if r.get("svname") not in ("FRONTEND", "BACKEND")]
up = lambda px: sum(1 for r in rows if r["# pxname"] == px and r["status"] == "UP")
checked = all(r["check_status"] not in ("", "INI") for r in rows)
sys.exit(0 if checked and up("master") == 1 and up("replicas") == 2 else 1)'
}

# patroxy_settled STATS LEADER: it routes writes to LEADER and every member's check is UP.
patroxy_settled() {
    curl -fsS --max-time 2 "http://127.0.0.1:$1/status.json" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["cluster"]["leader"] == sys.argv[1] and all(m["check"]["status"] == "UP" for m in s["members"]) else 1)' "$2"
}

stop_proxies() {
    local p
    for p in "${proxy_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${proxy_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    proxy_pids=()
    [ -n "${proxy_run:-}" ] && rm -rf "$proxy_run"
    proxy_run=
}

# CPU seconds (user+system) a process has used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
