#!/usr/bin/env bash
# A real Patroni cluster on loopback (or on LAB_HOST, inside a test's network
# namespace): 3 etcd members and 3 Patroni nodes running
# PostgreSQL 15 as the postgres user. For the demo, the integration tests and
# the benchmarks. Every wait here is bounded.
#
#   cluster.sh up | down | status | leader | switchover [CANDIDATE]
#   cluster.sh kill-leader | kill-leader-patroni | stop-leader | start MEMBER
#   cluster.sh add MEMBER | remove MEMBER        a spare member joins / leaves for good
#   cluster.sh freeze-patroni MEMBER | thaw-patroni MEMBER    SIGSTOP / SIGCONT its Patroni
#   cluster.sh etcd-stop I | etcd-start I | etcd-freeze | etcd-thaw | etcd-compact
#   cluster.sh set-ttl SECONDS | dcs-get KEY | wait-healthy [SECONDS] | env
#   cluster.sh sync-mode on|off | sync-standby       Patroni's synchronous_mode; who is sync now
#   cluster.sh set-tag MEMBER KEY VALUE | clear-tags MEMBER    a member's Patroni tags (then SIGHUP)
#   cluster.sh replay pause|resume MEMBER             stop / continue a replica's WAL replay (its startup process)
#   cluster.sh second up|leader|switchover|down       a second cluster (LAB_SECOND_SCOPE) on the same etcd
#
# LAB_DCS=etcd runs Patroni on etcd's v2 API (etcd3 by default); LAB_ETCD_SECURE=1
# serves etcd over TLS with client certificates and auth on (v3 only).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab.env
. "$here/lab.env"

log() { printf '[lab %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

member_index() { local i=0 m; for m in $LAB_MEMBERS $LAB_SPARE_MEMBERS $LAB_SECOND_MEMBERS; do [ "$m" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; die "no member '$1'"; }
pg_port()  { echo $((LAB_PG_PORT_BASE + $(member_index "$1"))); }
api_port() { echo $((LAB_API_PORT_BASE + $(member_index "$1"))); }
etcd_client_port() { echo $((LAB_ETCD_PORT_BASE + 2 * $1)); }
etcd_peer_port()   { echo $((LAB_ETCD_PORT_BASE + 2 * $1 + 1)); }
etcd_hosts() { local i out=""; for i in 0 1 2; do out+="${out:+,}$LAB_HOST:$(etcd_client_port $i)"; done; echo "$out"; }
secure() { [ "$LAB_ETCD_SECURE" = 1 ]; }
etcd_scheme() { if secure; then echo https; else echo http; fi; }
etcd_urls() { local i out=""; for i in 0 1 2; do out+="${out:+,}$(etcd_scheme)://$LAB_HOST:$(etcd_client_port $i)"; done; echo "$out"; }
dcs_prefix() { echo "${LAB_NAMESPACE%/}/$LAB_SCOPE"; }
# Every member with a directory: the three, and spares that were added.
present_members() { local m; for m in $LAB_MEMBERS $LAB_SPARE_MEMBERS $LAB_SECOND_MEMBERS; do [ -d "$LAB_DIR/$m" ] && echo "$m"; done; return 0; }

# etcdctl on the v3 API, as root once auth is on.
ectl() {
    local args=(--endpoints="${ECTL_ENDPOINTS:-$(etcd_urls)}" --dial-timeout=2s --command-timeout=5s)
    if secure; then
        args+=(--cacert="$LAB_DIR/tls/ca.crt" --cert="$LAB_DIR/tls/client.crt" --key="$LAB_DIR/tls/client.key")
        [ -f "$LAB_DIR/etcd-auth-on" ] && args+=(--user="root:$LAB_ETCD_ROOT_PASSWORD")
    fi
    ETCDCTL_API=3 etcdctl "${args[@]}" "$@"
}

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

second_member() { local m; for m in $LAB_SECOND_MEMBERS; do [ "$m" = "$1" ] && return 0; done; return 1; }
scope_of() { if second_member "$1"; then echo "$LAB_SECOND_SCOPE"; else echo "$LAB_SCOPE"; fi; }

# The cluster as Patroni's REST API sees it, asked of the first member that
# answers (of MEMBERS; the first cluster's by default).
cluster_json() {
    local m
    for m in ${1:-$LAB_MEMBERS}; do api_get "$m" /cluster 2>/dev/null && return 0; done
    return 1
}

leader() {
    cluster_json "${1:-}" | python3 -c '
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

etcd_healthy() { ectl endpoint health >/dev/null 2>&1; }

# The DCS section of Patroni's file.
patroni_dcs_config() {
    if [ "$LAB_DCS" = etcd ]; then
        printf 'etcd:\n  hosts: %s\n' "$(etcd_hosts)"
        return
    fi
    printf 'etcd3:\n  hosts: %s\n' "$(etcd_hosts)"
    if secure; then
        printf '  protocol: https\n  cacert: %s\n  cert: %s\n  key: %s\n  username: root\n  password: %s\n' \
            "$LAB_DIR/tls/ca.crt" "$LAB_DIR/tls/client.crt" "$LAB_DIR/tls/client.key" "$LAB_ETCD_ROOT_PASSWORD"
    fi
}

write_patroni_config() {
    local m=$1 dir="$LAB_DIR/$1"
    cat > "$dir/patroni.yml" <<EOF
scope: $(scope_of "$m")
namespace: $LAB_NAMESPACE/
name: $m
log:
  level: INFO
restapi:
  listen: $LAB_HOST:$(api_port "$m")
  connect_address: $LAB_HOST:$(api_port "$m")
$(patroni_dcs_config)
bootstrap:
  dcs:
    ttl: $LAB_TTL
    loop_wait: $LAB_LOOP_WAIT
    retry_timeout: $LAB_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # The leader keeps its role while etcd cannot be reached, as long as every
    # member answers its REST API (the DCS tests freeze etcd).
    failsafe_mode: true
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
    local extra=()
    [ "$LAB_DCS" = etcd ] && extra+=(--enable-v2=true)
    if secure; then
        extra+=(--cert-file "$LAB_DIR/tls/etcd.crt" --key-file "$LAB_DIR/tls/etcd.key"
                --trusted-ca-file "$LAB_DIR/tls/ca.crt" --client-cert-auth)
    fi
    setsid nice -n -10 etcd --name "etcd$i" --data-dir "$dir/data" \
        --heartbeat-interval 250 --election-timeout 2500 "${extra[@]}" \
        --listen-client-urls "$(etcd_scheme)://$LAB_HOST:$(etcd_client_port "$i")" \
        --advertise-client-urls "$(etcd_scheme)://$LAB_HOST:$(etcd_client_port "$i")" \
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
    # A CA of the lab's, an etcd server certificate for LAB_HOST and a client
    # certificate (Patroni's and patroxy's), for LAB_ETCD_SECURE=1.
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=patroxy-lab-ca" \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" >/dev/null 2>&1
    sign_certificate etcd "/CN=etcd" "subjectAltName=IP:$LAB_HOST,IP:127.0.0.1,DNS:localhost"
    # No Common Name: with client-cert-auth and auth on, etcd's JSON gateway
    # (what Patroni and patroxy speak) answers 400 to any client certificate
    # that has one (embed/serve.go); the user comes from the password instead.
    sign_certificate client "/O=patroxy-lab-client" "extendedKeyUsage=clientAuth"
    chown -R postgres:postgres "$tls"
    chmod 755 "$tls"
    chmod 600 "$tls/server.key" "$tls/ca.key"
    chmod 644 "$tls/etcd.key" "$tls/client.key"   # the lab's etcd runs as root, tests as anyone
}

sign_certificate() {
    local name=$1 subject=$2 ext=$3 tls="$LAB_DIR/tls"
    openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$tls/$name.key" -out "$tls/$name.csr" >/dev/null 2>&1
    openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 30 \
        -extfile <(printf '%s\n' "$ext") -out "$tls/$name.crt" >/dev/null 2>&1
    rm -f "$tls/$name.csr"
}

# Auth on, Patroni as root, patroxy as a user that may only read the cluster's keys.
enable_etcd_auth() {
    ectl user add root --new-user-password="$LAB_ETCD_ROOT_PASSWORD" >/dev/null
    ectl user add "$LAB_ETCD_READER" --new-user-password="$LAB_ETCD_READER_PASSWORD" >/dev/null
    ectl role add patroxy-read >/dev/null
    ectl role grant-permission patroxy-read --prefix=true read "$(dcs_prefix)/" >/dev/null
    ectl user grant-role "$LAB_ETCD_READER" patroxy-read >/dev/null
    ectl auth enable >/dev/null
    touch "$LAB_DIR/etcd-auth-on"
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
    if secure && [ "$LAB_DCS" != etcd3 ]; then die "LAB_ETCD_SECURE=1 needs LAB_DCS=etcd3"; fi
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
    if secure; then enable_etcd_auth; fi
    log "etcd up after $((SECONDS - started))s ($LAB_DCS$(secure && echo ', TLS and auth'))"
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
    # A frozen one (freeze-patroni, etcd-freeze) is thawed to hear the TERM.
    for f in "$LAB_DIR"/etcd*/pid "$LAB_DIR"/pg*/patroni.pid; do stop_pidfile "$f" CONT; done
    # A replica whose replay a test stopped (`replay pause`) must hear its shutdown too.
    for f in "$LAB_DIR"/pg*/data/postmaster.pid; do
        [ -f "$f" ] && pkill -CONT -P "$(head -1 "$f")" 2>/dev/null || true
    done
    for m in $(present_members); do stop_pidfile "$LAB_DIR/$m/patroni.pid"; done
    wait_until 30 "Patroni to stop" no_patroni || true
    for m in $(present_members); do stop_pidfile "$LAB_DIR/$m/patroni.pid" KILL; done
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
no_patroni() { local m; for m in $(present_members); do pidfile_alive "$LAB_DIR/$m/patroni.pid" && return 1; done; return 0; }
no_lab_processes() { [ -z "$(lab_processes)" ]; }

cmd_status() {
    [ -f "$LAB_DIR/${LAB_MEMBERS%% *}/patroni.yml" ] || die "no cluster in $LAB_DIR"
    patronictl -c "$LAB_DIR/${LAB_MEMBERS%% *}/patroni.yml" list
}

cmd_switchover() {
    local l candidate=${1:-}
    l=$(leader) || die "no single leader to switch over from"
    # With synchronous_mode on, Patroni switches over to a synchronous standby only.
    [ -n "$candidate" ] || candidate=$(cluster_json | python3 -c '
import json, sys
print(next((m["name"] for m in json.load(sys.stdin).get("members", []) if m.get("role") == "sync_standby"), ""))' 2>/dev/null || true)
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

# A spare member joins the running cluster as a replica (pg_basebackup from
# the leader) and is left running; `remove` takes it away for good.
cmd_add() {
    local m=${1:?member} spare=0 s
    for s in $LAB_SPARE_MEMBERS; do [ "$s" = "$m" ] && spare=1; done
    [ $spare = 1 ] || die "'$m' is not one of the spare members ($LAB_SPARE_MEMBERS)"
    pidfile_alive "$LAB_DIR/$m/patroni.pid" && { log "$m is running"; return 0; }
    rm -rf "${LAB_DIR:?}/$m"
    install -d -o postgres -g postgres -m 700 "$LAB_DIR/$m"
    write_patroni_config "$m"
    chown postgres:postgres "$LAB_DIR/$m/patroni.yml"
    start_patroni "$m"
    log "added $m"
}

cmd_remove() {
    local m=${1:?member}
    member_index "$m" >/dev/null
    stop_pidfile "$LAB_DIR/$m/patroni.pid" CONT
    stop_pidfile "$LAB_DIR/$m/patroni.pid"
    wait_until 30 "Patroni on $m to stop" not_alive_pidfile "$LAB_DIR/$m/patroni.pid" || stop_pidfile "$LAB_DIR/$m/patroni.pid" KILL
    # Its key expires with its lease (ttl): until then the others still list it.
    wait_until $((LAB_TTL * 3 + 10)) "the member key of $m to expire" not_listed "$m" || die "$m is still in the DCS"
    rm -rf "${LAB_DIR:?}/$m"
    log "removed $m"
}
not_listed() { cluster_json | python3 -c 'import json,sys; sys.exit(1 if sys.argv[1] in [m["name"] for m in json.load(sys.stdin)["members"]] else 0)' "$1"; }

cmd_freeze_patroni() { member_index "${1:?member}" >/dev/null; stop_pidfile "$LAB_DIR/$1/patroni.pid" STOP; log "froze Patroni on $1"; }
cmd_thaw_patroni() { member_index "${1:?member}" >/dev/null; stop_pidfile "$LAB_DIR/$1/patroni.pid" CONT; log "thawed Patroni on $1"; }

cmd_etcd_stop() { stop_pidfile "$LAB_DIR/etcd${1:?index}/pid" KILL; log "killed etcd$1"; }
cmd_etcd_start() {
    local i=${1:?index}
    pidfile_alive "$LAB_DIR/etcd$i/pid" && return 0
    start_etcd "$i"   # its data directory is there: it rejoins
    wait_until 30 "etcd$i to answer" etcd_member_healthy "$i" || die "etcd$i did not come back"
    log "started etcd$i"
}
etcd_member_healthy() { ECTL_ENDPOINTS="$(etcd_scheme)://$LAB_HOST:$(etcd_client_port "$1")" ectl endpoint health; }
cmd_etcd_freeze() { local f; for f in "$LAB_DIR"/etcd*/pid; do stop_pidfile "$f" STOP; done; log "froze every etcd"; }
cmd_etcd_thaw() { local f; for f in "$LAB_DIR"/etcd*/pid; do stop_pidfile "$f" CONT; done; wait_until 30 "etcd quorum" etcd_healthy; log "thawed every etcd"; }
# Compacts etcd's history up to its current revision: a watch from an older one is canceled.
cmd_etcd_compact() {
    local rev
    rev=$(ectl endpoint status --write-out=json | python3 -c 'import json,sys; print(max(e["Status"]["header"]["revision"] for e in json.load(sys.stdin)))')
    ectl compaction --physical "$rev" >/dev/null
    echo "$rev"
}

# The cluster's ttl, through Patroni's dynamic configuration; waits until the
# leader holds its lock with the new ttl.
cmd_set_ttl() {
    local ttl=${1:?seconds} l
    l=$(leader) || die "no single leader"
    patronictl -c "$LAB_DIR/$l/patroni.yml" edit-config --force -s "ttl=$ttl" >/dev/null
    wait_until 30 "the leader's lock to take ttl $ttl" leader_ttl_is "$ttl" || die "the leader key did not take ttl $ttl"
    log "ttl is $ttl"
}
# Patroni's synchronous_mode, through its dynamic configuration; `on` waits
# until a replica is the sync standby, `off` until none is.
cmd_sync_mode() {
    local on=${1:?on or off} l
    l=$(leader) || die "no single leader"
    case "$on" in
        on) patronictl -c "$LAB_DIR/$l/patroni.yml" edit-config --force -s synchronous_mode=true >/dev/null
            wait_until 60 "a sync standby" cmd_sync_standby >/dev/null || die "no sync standby after synchronous_mode=true" ;;
        off) patronictl -c "$LAB_DIR/$l/patroni.yml" edit-config --force -s synchronous_mode=false >/dev/null
             wait_until 60 "no sync standby" no_sync_standby || die "a sync standby left after synchronous_mode=false" ;;
        *) die "sync-mode on|off" ;;
    esac
    log "synchronous_mode $on"
}
# The member whose own /patroni says it is the sync standby (fails if none).
cmd_sync_standby() {
    local m
    for m in $(present_members); do
        api_get "$m" /patroni 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("sync_standby") else 1)'             && { echo "$m"; return 0; }
    done
    return 1
}
no_sync_standby() { ! cmd_sync_standby >/dev/null; }

# A member's Patroni tags, as its file says them, applied by a SIGHUP.
cmd_set_tag() {
    local m=${1:?member} key=${2:?key} value=${3:?value} f
    f="$LAB_DIR/$m/patroni.yml"
    python3 - "$f" "$key" "$value" <<'PY'
import sys, yaml
path, key, value = sys.argv[1:4]
with open(path) as f:
    doc = yaml.safe_load(f)
doc.setdefault("tags", {})[key] = yaml.safe_load(value)
with open(path, "w") as f:
    yaml.safe_dump(doc, f, default_flow_style=False)
PY
    stop_pidfile "$LAB_DIR/$m/patroni.pid" HUP
    log "$m tagged $key=$value"
}
cmd_clear_tags() {
    local m=${1:?member} f
    f="$LAB_DIR/$m/patroni.yml"
    python3 - "$f" <<'PY'
import sys, yaml
path = sys.argv[1]
with open(path) as f:
    doc = yaml.safe_load(f)
doc.pop("tags", None)
with open(path, "w") as f:
    yaml.safe_dump(doc, f, default_flow_style=False)
PY
    stop_pidfile "$LAB_DIR/$m/patroni.pid" HUP
    log "$m untagged"
}

# Pauses or resumes WAL replay on a replica (it keeps receiving): SIGSTOP /
# SIGCONT of its startup (recovery) process. pg_wal_replay_pause() would not
# do: Patroni resumes a paused replay at its next loop ("Resuming paused WAL
# replay"), within seconds.
cmd_replay() {
    local what=${1:?pause or resume} m=${2:?member} pm sp
    pm=$(head -1 "$LAB_DIR/$m/data/postmaster.pid" 2>/dev/null) || die "$m: no postmaster"
    sp=$(pgrep -P "$pm" -f 'startup' | head -1)
    [ -n "$sp" ] || die "$m: no startup process (not a replica?)"
    case "$what" in
        pause) kill -STOP "$sp" ;;
        resume) kill -CONT "$sp" ;;
        *) die "replay pause|resume MEMBER" ;;
    esac
    log "$m replay ${what}d (startup process $sp)"
}

leader_ttl_is() {
    local want=$1 got
    if [ "$LAB_DCS" = etcd ]; then
        got=$(curl -fsS --max-time 2 "http://$LAB_HOST:$(etcd_client_port 0)/v2/keys$(dcs_prefix)/leader" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["node"].get("ttl", 0))')
        # v2 counts down from the ttl: within a loop of it
        [ "$got" -gt $((want - LAB_LOOP_WAIT - 2)) ] && [ "$got" -le "$want" ]
    else
        local lease
        lease=$(ectl get "$(dcs_prefix)/leader" --write-out=json | python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)["kvs"][0]["lease"])')
        got=$(ectl lease timetolive "$lease" --write-out=json | python3 -c 'import json,sys; print(json.load(sys.stdin)["granted-ttl"])')
        [ "$got" = "$want" ]
    fi
}

# One of Patroni's keys (leader, failover, members/pg0, ...) as it is now; exit 1 when absent.
cmd_dcs_get() {
    local key="$(dcs_prefix)/${1:?key}"
    if [ "$LAB_DCS" = etcd ]; then
        curl -fsS --max-time 2 "http://$LAB_HOST:$(etcd_client_port 0)/v2/keys$key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["value"])'
    else
        local v
        v=$(ectl get "$key" --print-value-only)
        [ -n "$v" ] || return 1
        echo "$v"
    fi
}

# The second cluster: members of their own under LAB_SECOND_SCOPE, on the
# same etcd (as several clusters share one DCS in production).
second_healthy() {
    leader "$LAB_SECOND_MEMBERS" >/dev/null || return 1
    cluster_json "$LAB_SECOND_MEMBERS" | python3 -c '
import json, sys
members = json.load(sys.stdin).get("members", [])
want = set(sys.argv[1].split())
sys.exit(0 if {m["name"] for m in members} == want and all(m.get("state") in ("running", "streaming") for m in members) else 1)' "$LAB_SECOND_MEMBERS"
}
cmd_second() {
    local m first=${LAB_SECOND_MEMBERS%% *} started=$SECONDS l
    case "${1:-}" in
    up)
        etcd_healthy || die "the first cluster's etcd is not up: cluster.sh up first"
        if second_healthy; then log "second cluster already up"; return 0; fi
        for m in $LAB_SECOND_MEMBERS; do
            stop_pidfile "$LAB_DIR/$m/patroni.pid" KILL
            rm -rf "${LAB_DIR:?}/$m"
            install -d -o postgres -g postgres -m 700 "$LAB_DIR/$m"
            write_patroni_config "$m"
            chown postgres:postgres "$LAB_DIR/$m/patroni.yml"
        done
        start_patroni "$first"
        wait_until 60 "$first to lead $LAB_SECOND_SCOPE" leader "$LAB_SECOND_MEMBERS" || die "$first did not lead (see $LAB_DIR/$first/patroni.log)"
        for m in $LAB_SECOND_MEMBERS; do [ "$m" = "$first" ] || start_patroni "$m"; done
        wait_until 90 "$LAB_SECOND_SCOPE's replica" second_healthy || die "the second cluster's replica did not run"
        create_bench_user "$first"
        log "second cluster ($LAB_SECOND_SCOPE) up in $((SECONDS - started))s"
        ;;
    leader) leader "$LAB_SECOND_MEMBERS" || die "no single leader in $LAB_SECOND_SCOPE" ;;
    switchover)
        l=$(leader "$LAB_SECOND_MEMBERS") || die "no single leader in $LAB_SECOND_SCOPE"
        patronictl -c "$LAB_DIR/$first/patroni.yml" switchover --leader "$l" --force >/dev/null
        wait_until 60 "a new leader in $LAB_SECOND_SCOPE" new_leader_of_second "$l" || die "switchover in $LAB_SECOND_SCOPE did not finish"
        leader "$LAB_SECOND_MEMBERS"
        ;;
    down)
        for m in $LAB_SECOND_MEMBERS; do stop_pidfile "$LAB_DIR/$m/patroni.pid" CONT; stop_pidfile "$LAB_DIR/$m/patroni.pid"; done
        for m in $LAB_SECOND_MEMBERS; do
            wait_until 30 "Patroni on $m to stop" not_alive_pidfile "$LAB_DIR/$m/patroni.pid" || stop_pidfile "$LAB_DIR/$m/patroni.pid" KILL
        done
        log "second cluster stopped"
        ;;
    *) die "usage: cluster.sh second up|leader|switchover|down" ;;
    esac
}
new_leader_of_second() { local now; now=$(leader "$LAB_SECOND_MEMBERS") && [ "$now" != "$1" ] && second_healthy; }

cmd_env() {
    local m
    echo "LAB_DIR=$LAB_DIR"
    echo "dcs=$LAB_DCS endpoints=$(etcd_urls) prefix=$(dcs_prefix)/$(secure && echo " tls=$LAB_DIR/tls auth=$LAB_ETCD_READER")"
    for m in $(present_members); do echo "$m pg=$LAB_HOST:$(pg_port "$m") api=http://$LAB_HOST:$(api_port "$m")"; done
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
    add) cmd_add "${2:-}" ;;
    remove) cmd_remove "${2:-}" ;;
    freeze-patroni) cmd_freeze_patroni "${2:-}" ;;
    thaw-patroni) cmd_thaw_patroni "${2:-}" ;;
    etcd-stop) cmd_etcd_stop "${2:-}" ;;
    etcd-start) cmd_etcd_start "${2:-}" ;;
    etcd-freeze) cmd_etcd_freeze ;;
    etcd-thaw) cmd_etcd_thaw ;;
    etcd-compact) cmd_etcd_compact ;;
    set-ttl) cmd_set_ttl "${2:-}" ;;
    sync-mode) cmd_sync_mode "${2:-}" ;;
    sync-standby) cmd_sync_standby ;;
    set-tag) cmd_set_tag "${2:-}" "${3:-}" "${4:-}" ;;
    clear-tags) cmd_clear_tags "${2:-}" ;;
    replay) cmd_replay "${2:-}" "${3:-}" ;;
    dcs-get) cmd_dcs_get "${2:-}" ;;
    env) cmd_env ;;
    second) cmd_second "${2:-}" ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
