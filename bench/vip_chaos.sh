#!/usr/bin/env bash
# The chaos scenario that needs two proxy hosts: the VIP master host's proxy
# dies during a Patroni switchover, patroxy against HAProxy + keepalived, in
# network namespaces (lab/netns.sh; created and removed here).
#
# Hosts a and b each run a patroxy (VRRP for VIP 10.213.0.100, VRID 51,
# priority 150 on a, 100 on b) and an HAProxy with the seed's configuration
# behind keepalived (VIP 10.213.0.101, VRID 52, the seed's priorities 101/100
# and its chk_haproxy track script). The lab cluster runs in namespace db; the
# clients (bench/chaos.py: 4 long-lived writing sessions, a new write and read
# connection every 200 ms, pgbench -S on the read port) run in namespace c and
# connect to each VIP. The fault: `cluster.sh switchover`, and 1 s into it
# SIGKILL of everything proxy-related on host a (patroxy; haproxy and
# keepalived). The heal starts them again (both preempt the VIP back). One JSON
# line per round and proxy goes to OUT/chaos.jsonl, as bench/chaos.sh writes
# them, for bench/chaos_summary.py.
#
#   bench/vip_chaos.sh [--rounds N] [--out DIR]
#
# Needs root. Every wait is bounded.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
. "$here/lab/netns.sh"
rounds=3
out=
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
build=${BUILD_DIR:-$here/build}
[ -x "$build/patroxy" ] || { echo "build patroxy first ($build/patroxy)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
out=${out:-$here/bench/out/vip-chaos-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
work=$(mktemp -d /tmp/patroxy-vipchaos.XXXXXX)
say() { printf '[vip-chaos %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
export LAB_DIR=/var/tmp/patroxy-vipchaos-cluster LAB_HOST=$NET_DB LAB_CLIENT_NET=$NET_CIDR
lab=$here/lab/cluster.sh
VIP_K=10.213.0.101
PX_WRITE=5000 PX_READ=5001 PX_STATS=7000
HA_WRITE=7510 HA_READ=7511 HA_STATS=7512
scenario=vip-peer-killed-in-switchover

cleanup() {
    local f
    for f in "$work"/*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true; done
    pkill -KILL -f "$work/" 2>/dev/null || true   # keepalived's VRRP children, haproxy
    in_ns db "$lab" down >/dev/null 2>&1 || true
    netns_down
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# ---- configurations ------------------------------------------------------------
px_config() {  # HOST PRIORITY: the lab's patroxy.yml on the db namespace's address, behind VRRP
    sed -e "s/127\.0\.0\.1/$NET_DB/g" -e "s/bind: $NET_DB, port: 500/bind: $NET_VIP, port: 500/" \
        -e "/^stats:/,\$ s/bind: $NET_DB/bind: 0.0.0.0/" "$here/lab/patroxy.yml"
    cat <<EOF
log:
  level: warn
control_socket: $work/px-$1.sock
vip:
  interface: eth0
  address: $NET_VIP/24
  virtual_router_id: 51
  priority: $2
  advert_interval: 1s
  garp_interval: 200ms
  peer_probe_interval: 250ms
EOF
}
ha_config() {  # HOST: the seed's haproxy.cfg, listening on every address of the host
    local servers="" m
    for m in $LAB_MEMBERS; do
        servers+="    server $m $NET_DB:$((LAB_PG_PORT_BASE + ${m#pg})) check port $((LAB_API_PORT_BASE + ${m#pg}))"$'\n'
    done
    /usr/bin/python3 - "$here/bench/haproxy.cfg.in" "$work/ha-$1.pid" "$HA_STATS" "$HA_WRITE" "$HA_READ" "$servers" <<'EOF'
import sys
src, pidfile, stats, write, read, servers = sys.argv[1:]
text = open(src).read().replace("bind 127.0.0.1:", "bind 0.0.0.0:")
for k, v in {"@PIDFILE@": pidfile, "@STATS_PORT@": stats, "@WRITE_PORT@": write,
             "@READ_PORT@": read, "@SERVERS@": servers.rstrip("\n")}.items():
    text = text.replace(k, v)
print(text)
EOF
}
ka_config() {  # HOST PRIORITY: the seed's keepalived.conf (chk_haproxy: this host's haproxy alive, +2)
    cat <<EOF
global_defs {
    vrrp_version 3
    script_user root
}
vrrp_script chk_haproxy {
    script "$work/chk-haproxy-$1.sh"
    interval 2
    weight 2
}
vrrp_instance patroxy_chaos {
    state BACKUP
    interface eth0
    virtual_router_id 52
    priority $2
    advert_int 1
    virtual_ipaddress {
        $VIP_K/24 dev eth0
    }
    track_script {
        chk_haproxy
    }
}
EOF
}
# start_host HOST: patroxy, haproxy and keepalived on HOST (pid files in $work).
start_host() {
    local h=$1 prio_px prio_ka
    [ "$h" = a ] && { prio_px=150; prio_ka=101; } || { prio_px=100; prio_ka=100; }
    px_config "$h" $prio_px > "$work/px-$h.yml"
    ha_config "$h" > "$work/ha-$h.cfg"
    ka_config "$h" $prio_ka > "$work/ka-$h.conf"
    # The seed's `killall -0 haproxy` would see the other host's haproxy too (one pid namespace).
    printf '#!/bin/sh\nkill -0 "$(cat %s)"\n' "$work/ha-$h.pid" > "$work/chk-haproxy-$h.sh"
    chmod 755 "$work/chk-haproxy-$h.sh"
    "$build/patroxy" --check-config "$work/px-$h.yml" >/dev/null
    ip netns exec "$(ns "$h")" "$build/patroxy" -c "$work/px-$h.yml" </dev/null >>"$out/patroxy-$h.log" 2>&1 &
    echo $! > "$work/px-$h.pid"
    ip netns exec "$(ns "$h")" haproxy -f "$work/ha-$h.cfg" -db </dev/null >>"$out/haproxy-$h.log" 2>&1 &
    echo $! > "$work/ha-$h.pid"   # haproxy -db writes the same pid there (its pidfile line); keepalived writes its own
    ip netns exec "$(ns "$h")" keepalived -n -l -D -P -f "$work/ka-$h.conf" -p "$work/ka-$h.pid" -r "$work/ka-$h-vrrp.pid" \
        </dev/null >>"$out/keepalived-$h.log" 2>&1 &
}
# kill_host HOST: SIGKILL of every proxy process on HOST, as a crash would leave it.
kill_host() {
    local f
    for f in "$work/px-$1.pid" "$work/ha-$1.pid" "$work/ka-$1-vrrp.pid" "$work/ka-$1.pid"; do
        [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
    done
    pkill -KILL -f "$work/ka-$1.conf" 2>/dev/null || true
    pkill -KILL -f "$work/ha-$1.cfg" 2>/dev/null || true
}
export -f start_host kill_host px_config ha_config ka_config ns
export here build work out lab VIP_K NET_VIP NET_DB HA_WRITE HA_READ HA_STATS LAB_MEMBERS LAB_PG_PORT_BASE LAB_API_PORT_BASE NETNS_PREFIX

# ---- settled: a holds both VIPs, both proxies on a route to the leader --------
vip_on() {  # ADDRESS HOST: ADDRESS is on HOST's eth0 and on no other
    local other=b
    [ "$2" = b ] && other=a
    ip -n "$(ns "$2")" -4 -o addr show dev eth0 | grep -q " $1/" && ! ip -n "$(ns $other)" -4 -o addr show dev eth0 | grep -q " $1/"
}
settled() {
    local leader=$1
    vip_on "$NET_VIP" a && vip_on "$VIP_K" a || return 1
    in_ns c curl -fsS --max-time 1 "http://$NET_A:$PX_STATS/status.json" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["cluster"]["leader"] == sys.argv[1] and s["vip"]["state"] == "master" else 1)' "$leader" || return 1
    local h
    for h in "$NET_A" "$NET_B"; do
        in_ns c curl -fsS --max-time 1 "http://$h:$HA_STATS/;csv" | /usr/bin/python3 -c '
import csv, sys
rows = [r for r in csv.DictReader(sys.stdin) if r.get("svname") not in ("FRONTEND", "BACKEND")]
up = lambda px: sum(1 for r in rows if r["# pxname"] == px and r["status"] == "UP")
checked = all(r["check_status"] not in ("", "INI") for r in rows)
sys.exit(0 if checked and up("master") == 1 and up("replicas") == 2 else 1)' || return 1
    done
}
settle() {
    local i l
    in_ns db "$lab" wait-healthy 120 >/dev/null || { say "the cluster did not heal"; return 1; }
    l=$(in_ns db "$lab" leader)
    for i in $(seq 200); do
        settled "$l" 2>/dev/null && return 0
        sleep 0.3
    done
    say "the proxies did not settle on $l with both VIPs on a"; return 1
}

# ---- the run -------------------------------------------------------------------
say "namespaces up; the lab cluster in $(ns db) on $NET_DB"
netns_up
in_ns db "$lab" down >/dev/null 2>&1 || true
in_ns db "$lab" up >/dev/null
leader=$(in_ns db "$lab" leader)
in_ns db pgbench -i -s 5 -q -h "$NET_DB" -U "$LAB_BENCH_USER" -p "$((LAB_PG_PORT_BASE + ${leader#pg}))" "$LAB_DATABASE" >/dev/null 2>&1
start_host a
sleep 1
start_host b
fault="\"$lab\" switchover >/dev/null 2>&1 & sleep 1; kill_host a; wait"
heal="start_host a"
for round in $(seq "$rounds"); do
    settle
    say "round $round: switchover from $(in_ns db "$lab" leader), host a's proxies SIGKILLed 1 s into it"
    in_ns c /usr/bin/python3 "$here/bench/chaos.py" --lab "$lab" \
        --proxy "patroxy:$PX_WRITE:$PX_READ:$NET_VIP" --proxy "haproxy:$HA_WRITE:$HA_READ:$VIP_K" \
        --fault "$fault" --hold 20 --heal "$heal" --after 25 > "$work/last.jsonl" 2> "$out/chaos-$round.log" ||
        say "chaos.py failed (see $out/chaos-$round.log)"
    while read -r line; do
        echo "{\"round\": \"$(basename "$out")/$round\", \"scenario\": \"$scenario\", \"result\": $line}" >> "$out/chaos.jsonl"
        say "  $(echo "$line" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["proxy"], {k: r[k] for k in ("sessions_cut","writes_failed","reads_failed","write_gap_s","read_gap_s","acked_writes_lost","acked_by_non_leader","stuck_ops","pgbench_aborted")})')"
    done < "$work/last.jsonl"
done
say "results in $out/chaos.jsonl"
