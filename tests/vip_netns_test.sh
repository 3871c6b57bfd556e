#!/usr/bin/env bash
# The virtual IP end to end, in network namespaces this test creates and
# removes (lab/netns.sh): two patroxy hosts (a: priority 150, b: 100), a
# client, and the lab cluster inside a namespace of its own. Every wait is
# bounded; every takeover time is measured and printed.
#
#   vip_netns_test.sh PATROXY VRRP_FORGE ARTIFACT_DIR
set -euo pipefail
patroxy=${1:?path to patroxy}
forge=${2:?path to vrrp_forge}
artifacts=${3:?artifact directory}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/lab/lab.env"
. "$root/lab/netns.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }

work=$(mktemp -d /tmp/patroxy-vip.XXXXXX)
mkdir -p "$artifacts"
export LAB_DIR=/var/tmp/patroxy-vip-cluster LAB_HOST=$NET_DB LAB_CLIENT_NET=$NET_CIDR
failures=0
declare -A pid=()
timings="$artifacts/vip-takeover-times.txt"
: > "$timings"

say() { printf '[vip %(%H:%M:%S)T] %s\n' -1 "$*"; }
# Later steps build on earlier ones: the first failure ends the test.
fail() { say "FAIL: $*"; failures=$((failures + 1)); exit 1; }
measured() { say "measured: $*"; echo "$*" >> "$timings"; }

stop_proc() {  # stop_proc NAME [SIGNAL]: signal it and wait (bounded) until it is gone
    local name=$1 sig=${2:-TERM} p=${pid[$1]:-}
    [ -n "$p" ] || return 0
    kill -s "$sig" "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "pid[$name]"
}

cleanup() {
    local name p
    for name in "${!pid[@]}"; do stop_proc "$name" KILL; done
    for p in $(pgrep -f -- "-c $work/patroxy-" || true); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns exec "$(ns db)" "$root/lab/cluster.sh" down >/dev/null 2>&1 || "$root/lab/cluster.sh" down >/dev/null 2>&1 || true
    rm -rf "$LAB_DIR"
    netns_down
    cp "$work"/*.log "$artifacts/" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# px_config HOST PRIORITY [EXTRA_VIP_YAML...]: patroxy in front of the namespaced cluster,
# listening on the VIP (IP_FREEBIND: it binds before the address is here).
px_config() {
    local host=$1 priority=$2; shift 2
    local file="$work/patroxy-$host.yml" i
    {
        echo "scope: $LAB_SCOPE"
        echo "members:"
        for i in 0 1 2; do
            echo "  - {name: pg$i, host: $NET_DB, port: $((LAB_PG_PORT_BASE + i)), api: \"http://$NET_DB:$((LAB_API_PORT_BASE + i))\"}"
        done
        echo "listeners:"
        echo "  - {name: master, role: write, bind: $NET_VIP, port: 5000}"
        echo "  - {name: replicas, role: read, bind: $NET_VIP, port: 5001}"
        echo "health: {interval: 1s, fast_interval: 500ms, timeout: 1s, fall: 3, rise: 2}"
        echo "stats: {bind: 0.0.0.0, port: 7000}"
        echo "workers: 1"
        echo "maxconn: 1000"
        echo "control_socket: $work/px-$host.sock"
        echo "vip:"
        echo "  interface: eth0"
        echo "  address: $NET_VIP/24"
        echo "  virtual_router_id: 51"
        echo "  priority: $priority"
        echo "  advert_interval: 1s"
        echo "  track_weight: 100"
        echo "  unhealthy_after: 2s"
        echo "  garp_interval: 200ms"
        echo "  peer_probe_interval: 250ms"
        for line in "$@"; do echo "  $line"; done
    } > "$file"
    echo "$file"
}

start_px() {  # start_px HOST PRIORITY [EXTRA_VIP_YAML...]
    local host=$1 config
    config=$(px_config "$@")
    "$patroxy" --check-config "$config" >/dev/null
    ip netns exec "$(ns "$host")" "$patroxy" -c "$config" >> "$work/patroxy-$host.log" 2>&1 &
    pid[px-$host]=$!
}

conninfo() { echo "host=$NET_VIP port=$1 user=$LAB_SUPERUSER password=$LAB_SUPERUSER_PASSWORD dbname=$LAB_DATABASE sslmode=disable connect_timeout=1"; }
through_vip() { in_ns c psql -XAt "$(conninfo "$1")" -c "$2" 2>/dev/null; }
writes_through_vip() { [ "$(through_vip 5000 'select pg_is_in_recovery()')" = f ]; }
stats_of() { in_ns c curl -fsS --max-time 1 "http://$1:7000/status.json"; }
vip_field() { stats_of "$1" | python3 -c "import json,sys; v=json.load(sys.stdin)['vip']; print(eval(sys.argv[1]))" "$2"; }
# own_vip_field HOST EXPR: asked inside the host's namespace (works with its link down)
own_vip_field() { in_ns "$1" curl -fsS --max-time 1 "http://127.0.0.1:7000/status.json" | python3 -c "import json,sys; v=json.load(sys.stdin)['vip']; print(eval(sys.argv[1]))" "$2"; }

# stays_with HOLDER SECONDS: the VIP never leaves HOLDER during SECONDS.
stays_with() {
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt "$end" ]; do
        holder_is "$1" || return 1
        sleep 0.1
    done
}

# ---- the segment and the cluster --------------------------------------------
say "namespaces: $(ns a) $(ns b) $(ns c) $(ns db) joined by br0 in $(ns br)"
netns_up
say "lab cluster inside $(ns db) on $NET_DB"
in_ns db "$root/lab/cluster.sh" down >/dev/null 2>&1 || true
in_ns db "$root/lab/cluster.sh" up

# ---- the higher priority host takes the VIP; clients reach the cluster through it
start_px a 150
start_px b 100
wait_for 15 holder_is a || fail "host a (priority 150) did not take the VIP (holder: $(vip_holder))"
wait_for 10 writes_through_vip || fail "no write session through VIP:5000"
[ "$(through_vip 5001 'select pg_is_in_recovery()')" = t ] || fail "VIP:5001 did not reach a replica"
[ "$(vip_field $NET_B "v['state']")" = backup ] || fail "host b is not backup"
export PGPASSWORD=$LAB_SUPERUSER_PASSWORD
in_ns c pgbench -i -s 1 -q "$(conninfo 5000)" >/dev/null 2>&1 || fail "pgbench -i through VIP:5000"
out=$(in_ns c pgbench -n -S -c 4 -j 2 -T 3 "$(conninfo 5001)" 2>&1) || true
grep -q 'number of failed transactions: 0 ' <<< "$out" || fail "pgbench -S through VIP:5001: $out"
say "pgbench -S through VIP:5001: $(echo "$out" | grep -E '^tps' | head -1)"
out=$(in_ns c pgbench -n -c 2 -j 2 -T 3 "$(conninfo 5000)" 2>&1) || true
grep -q 'number of failed transactions: 0 ' <<< "$out" || fail "pgbench TPC-B through VIP:5000: $out"
say "pgbench TPC-B through VIP:5000: $(echo "$out" | grep -E '^tps' | head -1)"

# ---- SIGKILL of the master's patroxy: the backup's probe is refused -> takeover now
t0=$(now_s)
stop_proc px-a KILL
wait_for 10 writes_through_vip || fail "no writes through the VIP after SIGKILL of a's patroxy"
took=$(elapsed_since "$t0")
measured "patroxy SIGKILL of the master's patroxy -> writes through the VIP again: ${took}s (probe every 250ms; advert 1s)"
# The backup takes over once the probe was refused twice and the master has
# been silent for 1.5 advert intervals (a REJECT rule refuses too): at most
# 1.5 s after the last advert, plus a probe interval and the first write's
# routing; keepalived needs its Master_Down_Interval (about 3.6 s).
python3 -c "import sys; sys.exit(float(sys.argv[1]) > 2.0)" "$took" || fail "takeover after SIGKILL took ${took}s (> 2.0s)"
[ "$(vip_field $NET_B "v['state']")" = master ] || fail "b is not master after a's patroxy died"

# ---- the first host returns and pre-empts (it removes the VIP it left behind first)
start_px a 150
wait_for 15 holder_is a || fail "a did not pre-empt on return (holder: $(vip_holder))"
grep -q "left by an earlier run" "$work/patroxy-a.log" || fail "a did not report the VIP it found at start"
wait_for 5 writes_through_vip || fail "no writes through the VIP after a pre-empted"

# ---- SIGTERM of the master: priority 0 advert, takeover after Skew_Time
t0=$(now_s)
stop_proc px-a TERM
wait_for 5 holder_is b || fail "b did not take over after SIGTERM of a"
took=$(elapsed_since "$t0")
measured "patroxy SIGTERM of the master -> VIP on the backup: ${took}s (Skew_Time of priority 100: 0.61s)"
python3 -c "import sys; sys.exit(float(sys.argv[1]) > 1.5)" "$took" || fail "takeover after SIGTERM took ${took}s"
wait_for 5 writes_through_vip || fail "no writes through the VIP after SIGTERM of a"

# ---- pre-emption off: a returns and stays backup; then b stops and a takes over
start_px a 150 "preempt: false"
stays_with b 6 || fail "a pre-empted with preempt: false (holder: $(vip_holder))"
[ "$(vip_field $NET_A "v['state']")" = backup ] || fail "a is not backup with preempt: false"
stop_proc px-b TERM
wait_for 5 holder_is a || fail "a did not take over when b stopped"
stop_proc px-a TERM
start_px a 150
start_px b 100
wait_for 15 holder_is a || fail "a did not become master again"

# ---- the master's link goes silent: takeover after Master_Down_Interval
t0=$(now_s)
ip -n "$(ns a)" link set eth0 down
wait_for 10 writes_through_vip || fail "no writes through the VIP with a's link down"
took=$(elapsed_since "$t0")
measured "patroxy master's link down (silent) -> writes through the VIP again: ${took}s (Master_Down_Interval of priority 100: 3.61s)"
python3 -c "import sys; t=float(sys.argv[1]); sys.exit(not (3.0 <= t <= 5.0))" "$took" ||
    fail "takeover with a silent master took ${took}s, expected about 3.6s"
[ "$(own_vip_field a "v['state']")" = fault ] || fail "a with its link down is not in FAULT"
own_vip_field a "v['reason']" | grep -q "interface 'eth0' is down" || fail "a's FAULT does not say the link is down"
ip -n "$(ns a)" link set eth0 up
wait_for 10 holder_is a || fail "after the link came back, a (150) did not end up sole holder (holder: $(vip_holder))"
wait_for 10 writes_through_vip || fail "no writes through the VIP after a's link came back"

# ---- the master's interface deleted and created again (netplan, NetworkManager):
# FAULT while it is gone, then the new interface (new index) is found by name
t0=$(now_s)
ip -n "$(ns a)" link del eth0
wait_for 3 bash -c "[ \"\$(ip netns exec $(ns a) curl -fsS --max-time 1 http://127.0.0.1:7000/status.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vip\"][\"state\"])')\" = fault ]" ||
    fail "a did not go to FAULT when its interface was deleted"
wait_for 10 holder_is b || fail "b did not take the VIP while a's interface was gone (holder: $(vip_holder))"
netns_link a "$NET_A"
wait_for 15 holder_is a || fail "a did not return on its recreated interface (holder: $(vip_holder))"
grep -q "interface eth0 changed (index" "$work/patroxy-a.log" || fail "a did not report the recreated interface"
measured "master's interface deleted and recreated -> a holds the VIP again: $(elapsed_since "$t0")s"
wait_for 10 writes_through_vip || fail "no writes through the VIP after a's interface came back"

# ---- a REJECT rule on the master's stats port (the backup's probe is refused
# while the master's adverts keep coming): no takeover, no flapping, in 30 s
before=$(vip_field $NET_B "v['transitions_total']")
in_ns a nft -f - <<'NFT'
table inet ptx_reject {
    chain input {
        type filter hook input priority 0;
        tcp dport 7000 reject with tcp reset
    }
}
NFT
stays_with a 30 || fail "a REJECT rule on a's stats port moved the VIP (holder: $(vip_holder))"
after=$(vip_field $NET_B "v['transitions_total']")
in_ns a nft delete table inet ptx_reject
[ "$before" = "$after" ] || fail "b changed state under the REJECT rule ($before -> $after transitions)"
say "REJECT on a's stats port for 30s: VIP stayed on a, b's transitions $before -> $after"

# ---- a stats flood on the master: its adverts keep their 1 s interval (within 10 %)
flood_pcap="$work/flood.pcap"
ip netns exec "$(ns br)" tcpdump -i br0 -n -U -Z root -w "$flood_pcap" "ip proto 112 and src host $NET_A" >/dev/null 2>&1 &
pid[tcpdump-flood]=$!
sleep 0.5
in_ns c python3 "$root/tests/tools/stats_flood.py" "$NET_A" 7000 10 > "$work/flood.txt" 2>&1 || fail "the flood tool failed: $(cat "$work/flood.txt")"
stop_proc tcpdump-flood TERM
intervals=$(tcpdump -r "$flood_pcap" -n -tt 2>/dev/null | awk '{print $1}' | python3 -c '
import sys
t = [float(x) for x in sys.stdin.read().split()]
print(" ".join(f"{b - a:.3f}" for a, b in zip(t, t[1:])))')
say "stats flood on a: $(cat "$work/flood.txt"); advert intervals: $intervals"
python3 -c '
import sys
gaps = [float(x) for x in sys.argv[1].split()]
sys.exit(not (len(gaps) >= 8 and all(0.9 <= g <= 1.1 for g in gaps)))' "$intervals" ||
    fail "a's adverts lost their interval under a stats flood: $intervals"
stays_with a 1 || fail "the stats flood moved the VIP"

# ---- the VIP cannot be added (out of descriptors for netlink): FAULT instead of
# a master without its address, so the other host takes it; back after a back-off
stop_proc px-a TERM
wait_for 5 holder_is b || fail "b did not take over when a stopped"
start_px a 150 "preempt: false"
wait_for 10 bash -c "[ \"\$(ip netns exec $(ns c) curl -fsS --max-time 1 http://$NET_A:7000/status.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vip\"][\"state\"])')\" = backup ]" ||
    fail "a did not start as backup"
# Not one descriptor left: the next socket (the netlink request that adds the VIP) fails.
# The lowest free number, least of 20 readings over a second: a health check's
# socket open at one reading closes after it and would leave a hole below the
# limit for the netlink socket to take (the kernel hands out the lowest free).
lowest_free=$(python3 -c '
import os, sys, time
least = None
for _ in range(20):
    used = {int(f) for f in os.listdir(f"/proc/{sys.argv[1]}/fd")}
    n = 0
    while n in used: n += 1
    least = n if least is None else min(least, n)
    time.sleep(0.05)
print(least)' "${pid[px-a]}")
prlimit --pid "${pid[px-a]}" --nofile="$lowest_free:"
stop_proc px-b TERM
wait_for 5 bash -c "[ \"\$(ip netns exec $(ns a) curl -fsS --max-time 1 http://127.0.0.1:7000/status.json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vip\"][\"state\"])' 2>/dev/null)\" = fault ]" ||
    grep -q "cannot add the VIP" "$work/patroxy-a.log" || fail "a did not go to FAULT when it could not add the VIP"
grep -q "cannot add the VIP" "$work/patroxy-a.log" || fail "a did not log why it could not hold the VIP"
holder_is none || fail "a claims the VIP it could not add (holder: $(vip_holder))"
start_px b 100
wait_for 10 holder_is b || fail "b did not take the VIP from a host in FAULT (holder: $(vip_holder))"
prlimit --pid "${pid[px-a]}" --nofile="$(ulimit -Hn):"
wait_for 40 bash -c "[ \"\$(ip netns exec $(ns c) curl -fsS --max-time 1 http://$NET_A:7000/status.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vip\"][\"state\"])')\" = backup ]" ||
    fail "a did not return to backup once it could add the VIP again"
stays_with b 2 || fail "a (preempt off) took the VIP back"
stop_proc px-a TERM
start_px a 150
wait_for 15 holder_is a || fail "a did not become master again after the add-failure test"

# ---- binary upgrades of the master (SIGUSR2, twice): the VIP never leaves a,
# no priority-0 advert, and a's adverts keep their interval across each handover
own_pid() { in_ns "$1" curl -fsS --max-time 1 "http://127.0.0.1:7000/status.json" | python3 -c "import json,sys; print(json.load(sys.stdin)['patroxy']['pid'])"; }
up_pcap="$work/upgrade.pcap"
ip netns exec "$(ns br)" tcpdump -i br0 -n -U -Z root -w "$up_pcap" "ip proto 112 and src host $NET_A" >/dev/null 2>&1 &
pid[tcpdump-upgrade]=$!
sleep 1.5
before=$(vip_field $NET_B "v['transitions_total']")
for round in 1 2; do
    old_px=$(own_pid a) || fail "upgrade $round: a's stats do not answer"
    kill -USR2 "$old_px"
    t_end=$((SECONDS + 10))
    new_px=$old_px
    while [ $SECONDS -lt $t_end ] && [ "$new_px" = "$old_px" ]; do
        holder_is a || fail "upgrade $round: the VIP left a (holder: $(vip_holder))"
        new_px=$(own_pid a 2>/dev/null || echo "$old_px")
        sleep 0.1
    done
    [ "$new_px" != "$old_px" ] || fail "upgrade $round: no new process on a"
    stays_with a 3 || fail "upgrade $round: the VIP left a after the handover (holder: $(vip_holder))"
    pid[px-a]=$new_px   # not our child any more: the next process is a grandchild of the first
    grep -q "taking over as master from the previous process (upgrade)" "$work/patroxy-a.log" ||
        fail "upgrade $round: the new process did not take the VRRP master state over"
    measured "upgrade $round of the master: $old_px -> $new_px, the VIP stayed on a"
done
stop_proc tcpdump-upgrade TERM
after=$(vip_field $NET_B "v['transitions_total']")
[ "$before" = "$after" ] || fail "b changed state during the upgrades ($before -> $after transitions)"
adverts=$(tcpdump -r "$up_pcap" -n -tt -v 2>/dev/null)
grep -q "prio 0" <<< "$adverts" && fail "a priority-0 advert during an upgrade: $(echo "$adverts" | grep 'prio 0' | head -2)"
gaps=$(echo "$adverts" | grep -E '^[0-9]+\.[0-9]+ IP' | awk '{print $1}' | python3 -c '
import sys
t = [float(x) for x in sys.stdin.read().split()]
print(" ".join(f"{b - a:.3f}" for a, b in zip(t, t[1:])))')
say "a's advert intervals across two upgrades: $gaps"
python3 -c '
import sys
gaps = [float(x) for x in sys.argv[1].split()]
sys.exit(not (len(gaps) >= 5 and max(gaps) <= 1.1))' "$gaps" || fail "a gap in a's adverts longer than one interval: $gaps"

# ---- the master loses its route to the cluster: priority 150-100=50 < 100, the VIP moves
t0=$(now_s)
ip -n "$(ns a)" route add blackhole "$NET_DB/32"
wait_for 30 holder_is b || fail "the VIP did not move when a lost the cluster (holder: $(vip_holder))"
took=$(elapsed_since "$t0")
measured "master loses its route to the cluster -> VIP on the other host: ${took}s (fall 3 x 1s, unhealthy_after 2s, Master_Down_Interval)"
[ "$(vip_field $NET_A "v['effective_priority']")" = 50 ] || fail "a's effective priority is not 50"
ip -n "$(ns a)" route del blackhole "$NET_DB/32"
wait_for 30 holder_is a || fail "a did not pre-empt once the cluster was back (holder: $(vip_holder))"
wait_for 5 writes_through_vip || fail "no writes through the VIP at the end of the route test"

# ---- forged adverts (priority 254, would pre-empt if taken) change nothing
before=$(vip_field $NET_A "v['adverts_dropped_total']")
forge_from_c() { in_ns c "$forge" --interface eth0 --vip "$NET_VIP" --priority 254 --count 5 "$@"; }
forge_from_c --ttl 64
forge_from_c --bad-checksum
forge_from_c --vrid 52
stays_with a 5 || fail "a forged advert moved the VIP (holder: $(vip_holder))"
dropped=$(vip_field $NET_A "v['adverts_dropped_total']")
say "a's drops before: $before after: $dropped"
for reason in bad_ttl bad_checksum wrong_vrid; do
    grep -q "'$reason'" <<< "$dropped" || fail "no $reason drop counted"
done
[ "$(vip_field $NET_A "v['state']")" = master ] || fail "a is not master after the forged adverts"

# unicast mode: a valid advert from a host that is not a configured peer is ignored
stop_proc px-b TERM
stop_proc px-a TERM
start_px a 150 "unicast_peers: [$NET_B]"
start_px b 100 "unicast_peers: [$NET_A]"
wait_for 15 holder_is a || fail "unicast: a did not take the VIP"
wait_for 5 bash -c "[ \"\$(ip netns exec $(ns c) curl -fsS --max-time 1 http://$NET_B:7000/status.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vip\"][\"state\"])')\" = backup ]" ||
    fail "unicast: b is not backup"
forge_from_c --dst "$NET_A"
forge_from_c
stays_with a 5 || fail "unicast: an advert from a non-peer moved the VIP"
vip_field $NET_A "v['adverts_dropped_total']" | grep -q "'not_a_peer'" || fail "unicast: no not_a_peer drop counted"
stop_proc px-b TERM
stop_proc px-a TERM

# ---- keepalived interop (VRRP v3, same VRID and interval), with a capture of both
keepalived_conf "$work/keepalived.conf" 100 1
start_keepalived() {
    ip netns exec "$(ns b)" keepalived -n -l -D -P -f "$work/keepalived.conf" -p "$work/ka.pid" -r "$work/ka-vrrp.pid" \
        >> "$work/keepalived.log" 2>&1 &
    pid[keepalived]=$!
}
pcap="$artifacts/vrrp-interop.pcap"
rm -f "$pcap"
ip netns exec "$(ns br)" tcpdump -i br0 -n -U -Z root -w "$pcap" ip proto 112 >/dev/null 2>&1 &
pid[tcpdump]=$!
start_keepalived
start_px a 150
wait_for 15 holder_is a || fail "interop: patroxy (150) did not become master beside keepalived (holder: $(vip_holder))"
stays_with a 3 || fail "interop: the VIP did not stay with patroxy"
t0=$(now_s)
stop_proc px-a TERM
wait_for 10 holder_is b || fail "interop: keepalived did not take over when patroxy stopped"
measured "interop: patroxy SIGTERM -> keepalived holds the VIP: $(elapsed_since "$t0")s"
start_px a 150 "preempt: false"
stays_with b 5 || fail "interop: patroxy (preempt off) took the VIP from keepalived"
[ "$(vip_field $NET_A "v['state']")" = backup ] || fail "interop: patroxy is not backup under keepalived"
[ "$(vip_field $NET_A "v['master']")" = "$NET_B" ] || fail "interop: patroxy does not hear keepalived as master"
t0=$(now_s)
stop_proc keepalived TERM
wait_for 10 holder_is a || fail "interop: patroxy did not take over when keepalived stopped"
measured "interop: keepalived SIGTERM -> patroxy holds the VIP: $(elapsed_since "$t0")s"
sleep 1.5  # one more advert from patroxy as master into the capture
stop_proc tcpdump TERM
stop_proc px-a TERM
decoded=$(tcpdump -r "$pcap" -n -v 2>/dev/null)
echo "$decoded" > "$artifacts/vrrp-interop.txt"
grep -q "$NET_A > 224.0.0.18: vrrp $NET_A > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 150" <<< "$decoded" ||
    grep -q "$NET_A > 224.0.0.18.*VRRPv3, Advertisement, vrid 51, prio 150" <<< "$decoded" ||
    fail "interop: the capture has no VRRPv3 advert from patroxy"
grep -q "$NET_B > 224.0.0.18.*VRRPv3, Advertisement, vrid 51, prio 100" <<< "$decoded" ||
    fail "interop: the capture has no VRRPv3 advert from keepalived"
grep -q "prio 0" <<< "$decoded" || fail "interop: the capture has no priority 0 advert"
say "capture: $pcap ($(echo "$decoded" | grep -c VRRPv3) adverts; decoded in vrrp-interop.txt)"

# ---- without CAP_NET_RAW/CAP_NET_ADMIN: the VIP is off, says why, and patroxy proxies on
config=$(px_config a 150)
sed -i "s/bind: $NET_VIP, port: 5000/bind: $NET_A, port: 5000/" "$config"
ip netns exec "$(ns a)" setpriv --bounding-set=-net_raw,-net_admin --inh-caps=-net_raw,-net_admin \
    "$patroxy" -c "$config" >> "$work/patroxy-a-nocaps.log" 2>&1 &
pid[px-a]=$!
wait_for 10 bash -c "ip netns exec $(ns c) curl -fsS --max-time 1 http://$NET_A:7000/status.json | grep -q CAP_NET_RAW" ||
    fail "without capabilities the VIP does not say which one is missing"
[ "$(vip_field $NET_A "v['state']")" = off ] || fail "without capabilities the VIP is not off"
wait_for 15 bash -c "[ \"\$(ip netns exec $(ns c) psql -XAt 'host=$NET_A port=5000 user=$LAB_SUPERUSER password=$LAB_SUPERUSER_PASSWORD dbname=$LAB_DATABASE sslmode=disable connect_timeout=1' -c 'select pg_is_in_recovery()')\" = f ]" ||
    fail "without capabilities patroxy does not proxy"
[ "$(vip_holder)" = none ] || fail "a host without capabilities holds the VIP"
say "without capabilities: $(vip_field $NET_A "v['reason']")"
stop_proc px-a TERM

if [ "$failures" -ne 0 ]; then
    say "$failures check(s) failed"
    exit 1
fi
say "all VIP checks passed"
cat "$timings"
