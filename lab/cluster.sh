#!/usr/bin/env bash
# A real Patroni cluster on loopback (or on LAB_HOST, inside a test's network
# namespace): 3 etcd members and 3 Patroni nodes running
# PostgreSQL 15 as the postgres user. For the demo, the integration tests and
# the benchmarks. Every wait here is bounded.
#
#   cluster.sh up | down | status | leader | switchover [CANDIDATE]
#   cluster.sh kill-leader | kill-leader-patroni | stop-leader | start MEMBER
#   cluster.sh wait-healthy [SECONDS] | env
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab.env
. "$here/lab.env"

log() { printf '[lab %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

member_index() { local i=0 m; for m in $LAB_MEMBERS; do [ "$m" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; die "no member '$1'"; }
pg_port()  { echo $((LAB_PG_PORT_BASE + $(member_index "$1"))); }
api_port() { echo $((LAB_API_PORT_BASE + $(member_index "$1"))); }
etcd_client_port() { echo $((LAB_ETCD_PORT_BASE + 2 * $1)); }
etcd_peer_port()   { echo $((LAB_ETCD_PORT_BASE + 2 * $1 + 1)); }
etcd_hosts() { local i out=""; for i in 0 1 2; do out+="${out:+,}$LAB_HOST:$(etcd_client_port $i)"; done; echo "$out"; }

# A pid counts as alive unless it is gone or a zombie (PID 1 here reaps late).
alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != "Z" ]
}
pidfile_alive() { [ -f "$1" ] && alive "$(cat "$1")"; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls every 0.2 s, fails after SECONDS.
wait_until() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { log "timed out after ${limit}s waiting for $what"; return 1; }
        sleep 0.2
    done
}

api_get() { curl -fsS --max-time 2 "http://$LAB_HOST:$(api_port "$1")$2"; }

# The cluster as Patroni's REST API sees it, asked of the first member that answers.
cluster_json() {
    local m
    for m in $LAB_MEMBERS; do api_get "$m" /cluster 2>/dev/null && return 0; done
    return 1
}

leader() {
    cluster_json | python3 -c '
import json, sys
members = json.load(sys.stdin).get("members", [])
leaders = [m["name"] for m in members if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running"]
if len(leaders) != 1: sys.exit(1)
print(leaders[0])'
}

# One leader, every other member a running replica (as Patroni reports it:
# replicas stream a moment before Patroni calls them running), and the
# leader's pg_stat_replication showing each of them streaming.
healthy() {
    local l
    l=$(leader) || return 1
    cluster_json | python3 -c '
import json, sys
members = {m["name"]: m for m in json.load(sys.stdin).get("members", [])}
want = set(sys.argv[1].split())
sys.exit(0 if set(members) == want and all(m.get("state") == "running" for m in members.values()) else 1)' "$LAB_MEMBERS" || return 1
    api_get "$l" /patroni | python3 -c '
import json, sys
want = set(sys.argv[1].split()) - {sys.argv[2]}
status = json.load(sys.stdin)
streaming = {r.get("application_name") for r in status.get("replication", []) if r.get("state") == "streaming"}
sys.exit(0 if want <= streaming else 1)' "$LAB_MEMBERS" "$l"
}

etcd_healthy() { ETCDCTL_API=3 etcdctl --endpoints="$(etcd_hosts)" --dial-timeout=1s endpoint health >/dev/null 2>&1; }

write_patroni_config() {
    local m=$1 dir="$LAB_DIR/$1"
    cat > "$dir/patroni.yml" <<EOF
scope: $LAB_SCOPE
namespace: /service/
name: $m
log:
  level: INFO
restapi:
  listen: $LAB_HOST:$(api_port "$m")
  connect_address: $LAB_HOST:$(api_port "$m")
etcd3:
  hosts: $(etcd_hosts)
bootstrap:
  dcs:
    ttl: $LAB_TTL
    loop_wait: $LAB_LOOP_WAIT
    retry_timeout: $LAB_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_connections: 300
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        ssl: "on"
        ssl_cert_file: $LAB_DIR/tls/server.crt
        ssl_key_file: $LAB_DIR/tls/server.key
  initdb:
    - encoding: UTF8
    - data-checksums
    - auth-local: trust
postgresql:
  listen: $LAB_HOST:$(pg_port "$m")
  connect_address: $LAB_HOST:$(pg_port "$m")
  data_dir: $dir/data
  bin_dir: $PG_BIN
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: $LAB_SUPERUSER
      password: $LAB_SUPERUSER_PASSWORD
    replication:
      username: $LAB_REPLICATION_USER
      password: $LAB_REPLICATION_PASSWORD
    rewind:
      username: $LAB_SUPERUSER
      password: $LAB_SUPERUSER_PASSWORD
  parameters:
    unix_socket_directories: $dir
  basebackup:
    - checkpoint: fast
  pg_hba:
    - local all all trust
    - host replication $LAB_REPLICATION_USER $LAB_CLIENT_NET scram-sha-256
    - host all $LAB_BENCH_USER $LAB_CLIENT_NET trust
    - host all all $LAB_CLIENT_NET scram-sha-256
EOF
}

start_etcd() {
    local i=$1 dir="$LAB_DIR/etcd$1" cluster="" j
    for j in 0 1 2; do cluster+="${cluster:+,}etcd$j=http://$LAB_HOST:$(etcd_peer_port $j)"; done
    mkdir -p "$dir"
    # The DCS keeps its pace when pgbench saturates the cores (the bench runs
    # -c 64 on 2 cores): starved, etcd missed Patroni's 1 s requests for the
    # 3 s retry_timeout and the leader demoted itself mid-run. Raised priority
    # and a heartbeat/election for a shared, loaded host.
    setsid nice -n -10 etcd --name "etcd$i" --data-dir "$dir/data" \
        --heartbeat-interval 250 --election-timeout 2500 \
        --listen-client-urls "http://$LAB_HOST:$(etcd_client_port "$i")" \
        --advertise-client-urls "http://$LAB_HOST:$(etcd_client_port "$i")" \
        --listen-peer-urls "http://$LAB_HOST:$(etcd_peer_port "$i")" \
        --initial-advertise-peer-urls "http://$LAB_HOST:$(etcd_peer_port "$i")" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token patroxy-lab --logger zap --log-outputs stderr \
        </dev/null >"$dir/etcd.log" 2>&1 &
    echo $! > "$dir/pid"
}

start_patroni() {
    local m=$1 dir="$LAB_DIR/$1"
    # setpriv execs in place, so $! is Patroni's own pid.
    setsid setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME="$dir" PATH="$PATH" patroni "$dir/patroni.yml" \
        </dev/null >>"$dir/patroni.log" 2>&1 &
    echo $! > "$dir/patroni.pid"
}

make_certificate() {
    local tls="$LAB_DIR/tls"
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=patroxy-lab" \
        -keyout "$tls/server.key" -out "$tls/server.crt" >/dev/null 2>&1
    chown -R postgres:postgres "$tls"
    chmod 700 "$tls"
    chmod 600 "$tls/server.key"
}

running_pids() {
    local f
    for f in "$LAB_DIR"/etcd*/pid "$LAB_DIR"/pg*/patroni.pid; do
        [ -f "$f" ] && alive "$(cat "$f")" && cat "$f"
    done
    return 0
}

# Every process whose command line or working files live under LAB_DIR:
# Patroni, etcd, and the postmasters and their children.
lab_processes() {
    local pid cmd
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        alive "$pid" || continue
        cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || continue
        case "$cmd" in *"$LAB_DIR"*) echo "$pid";; esac
    done
}

cmd_up() {
    command -v patroni >/dev/null || die "patroni is not installed: run deploy/install-deps.sh"
    if [ -n "$(running_pids)" ]; then
        if healthy; then log "cluster already up"; cmd_status; return 0; fi
        log "a previous cluster is partly running: stopping it first"
        cmd_down
    fi
    local started=$SECONDS m
    rm -rf "$LAB_DIR"
    mkdir -p "$LAB_DIR"
    chmod 755 "$LAB_DIR"
    make_certificate
    for m in $LAB_MEMBERS; do
        install -d -o postgres -g postgres -m 700 "$LAB_DIR/$m"
        write_patroni_config "$m"
        chown postgres:postgres "$LAB_DIR/$m/patroni.yml"
    done
    for i in 0 1 2; do start_etcd $i; done
    wait_until 30 "etcd quorum" etcd_healthy || { cmd_down; die "etcd did not come up (see $LAB_DIR/etcd*/etcd.log)"; }
    log "etcd up after $((SECONDS - started))s"
    # One member first: the others then join by pg_basebackup instead of racing
    # for the initialize key and sleeping a loop_wait.
    local first=${LAB_MEMBERS%% *}
    start_patroni "$first"
    wait_until 60 "$first to lead" leader || { cmd_down; die "$first did not become leader (see $LAB_DIR/$first/patroni.log)"; }
    log "$first leads after $((SECONDS - started))s"
    for m in $LAB_MEMBERS; do [ "$m" = "$first" ] || start_patroni "$m"; done
    wait_until 90 "two streaming replicas" healthy || { cmd_down; die "replicas did not stream (see $LAB_DIR/pg*/patroni.log)"; }
    create_bench_user "$first"
    log "cluster up in $((SECONDS - started))s"
    cmd_status
}

create_bench_user() {
    local m=$1
    PGPASSWORD=$LAB_SUPERUSER_PASSWORD psql -X -q -h $LAB_HOST -p "$(pg_port "$m")" -U "$LAB_SUPERUSER" -d "$LAB_DATABASE" \
        -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$LAB_BENCH_USER') THEN CREATE ROLE $LAB_BENCH_USER LOGIN SUPERUSER; END IF; END \$\$;" >/dev/null
}

stop_pidfile() {
    local f=$1 sig=${2:-TERM} pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    alive "$pid" && kill -"$sig" "$pid" 2>/dev/null || true
}

cmd_down() {
    local f m pid
    [ -d "$LAB_DIR" ] || { log "nothing to stop"; return 0; }
    # Patroni first (it stops its PostgreSQL), etcd last (Patroni needs it to let go).
    for m in $LAB_MEMBERS; do stop_pidfile "$LAB_DIR/$m/patroni.pid"; done
    wait_until 30 "Patroni to stop" no_patroni || true
    for m in $LAB_MEMBERS; do stop_pidfile "$LAB_DIR/$m/patroni.pid" KILL; done
    # A postmaster whose Patroni was SIGKILLed is left running: fast shutdown.
    for f in "$LAB_DIR"/pg*/data/postmaster.pid; do
        [ -f "$f" ] || continue
        pid=$(head -1 "$f")
        alive "$pid" && kill -INT "$pid" 2>/dev/null || true
    done
    for f in "$LAB_DIR"/etcd*/pid; do stop_pidfile "$f"; done
    wait_until 30 "lab processes to exit" no_lab_processes || true
    for pid in $(lab_processes); do kill -KILL "$pid" 2>/dev/null || true; done
    wait_until 10 "lab processes to die" no_lab_processes || die "processes left behind: $(lab_processes | tr '\n' ' ')"
    log "cluster stopped"
}
no_patroni() { local m; for m in $LAB_MEMBERS; do pidfile_alive "$LAB_DIR/$m/patroni.pid" && return 1; done; return 0; }
no_lab_processes() { [ -z "$(lab_processes)" ]; }

cmd_status() {
    [ -f "$LAB_DIR/${LAB_MEMBERS%% *}/patroni.yml" ] || die "no cluster in $LAB_DIR"
    patronictl -c "$LAB_DIR/${LAB_MEMBERS%% *}/patroni.yml" list
}

cmd_switchover() {
    local l candidate=${1:-}
    l=$(leader) || die "no single leader to switch over from"
    if [ -z "$candidate" ]; then
        for m in $LAB_MEMBERS; do [ "$m" != "$l" ] && { candidate=$m; break; }; done
    fi
    log "switchover $l -> $candidate"
    patronictl -c "$LAB_DIR/$l/patroni.yml" switchover --leader "$l" --candidate "$candidate" --force >/dev/null
    wait_until 60 "$candidate to lead" is_leader "$candidate" || die "$candidate did not take over"
    log "$candidate leads"
}
is_leader() { [ "$(leader)" = "$1" ]; }

cmd_kill_leader() {
    local l pid
    l=$(leader) || die "no single leader to kill"
    pid=$(head -1 "$LAB_DIR/$l/data/postmaster.pid")
    log "SIGKILL Patroni and PostgreSQL of $l"
    stop_pidfile "$LAB_DIR/$l/patroni.pid" KILL
    kill -KILL "$pid" 2>/dev/null || true
    echo "$l"
}

# Patroni dies, its PostgreSQL keeps running as a primary nobody leads: the
# case where only the proxy's shutdown-sessions protects writes.
cmd_kill_leader_patroni() {
    local l
    l=$(leader) || die "no single leader"
    log "SIGKILL Patroni (only) of $l"
    stop_pidfile "$LAB_DIR/$l/patroni.pid" KILL
    echo "$l"
}

cmd_stop_leader() {
    local l
    l=$(leader) || die "no single leader to stop"
    log "stopping Patroni on $l"
    stop_pidfile "$LAB_DIR/$l/patroni.pid"
    wait_until 30 "Patroni on $l to stop" not_alive_pidfile "$LAB_DIR/$l/patroni.pid" || die "Patroni on $l did not stop"
    echo "$l"
}
not_alive_pidfile() { ! pidfile_alive "$1"; }

# Restart a member stopped or killed by kill-leader/stop-leader; it rejoins as
# a replica (pg_rewind when needed).
cmd_start() {
    local m=${1:?member}
    member_index "$m" >/dev/null
    pidfile_alive "$LAB_DIR/$m/patroni.pid" && { log "$m is running"; return 0; }
    # A live postmaster is adopted (and demoted) by Patroni; one that was
    # SIGKILLed may leave children for a moment, which Patroni waits out.
    start_patroni "$m"
    log "started $m"
}

cmd_env() {
    local m
    echo "LAB_DIR=$LAB_DIR"
    for m in $LAB_MEMBERS; do echo "$m pg=$LAB_HOST:$(pg_port "$m") api=http://$LAB_HOST:$(api_port "$m")"; done
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    leader) leader || die "no single leader" ;;
    healthy|wait-healthy) wait_until "${2:-90}" "a healthy cluster" healthy || exit 1 ;;
    switchover) cmd_switchover "${2:-}" ;;
    kill-leader) cmd_kill_leader ;;
    kill-leader-patroni) cmd_kill_leader_patroni ;;
    stop-leader) cmd_stop_leader ;;
    start) cmd_start "${2:-}" ;;
    env) cmd_env ;;
    *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
