#!/usr/bin/env bash
# Fault scenarios through patroxy and through HAProxy (the seed's config), on
# the lab cluster. Both proxies run side by side and meet the same fault at the
# same moment, each under the same load of its own (bench/chaos.py: 4
# long-lived writing sessions, a new write and a new read connection every
# 200 ms, pgbench -S -c 8 on the read port); one JSON line per scenario and
# proxy goes to OUT/chaos.jsonl, the tables to bench/RESULTS-chaos.md
# (bench/chaos_summary.py, medians over the rounds).
#
#   bench/chaos.sh [--rounds N] [--scenarios LIST] [--out DIR]
#
# LIST (comma-separated, default all): patroni-freeze-6s patroni-freeze-20s
# pg-freeze-15s patroni-kill leader-kill replica-kill etcd-kill quorum-lost-20s
# leader-cut-30s leader-latency-loss-30s slow-api-replica-30s.
# --out DIR appends to an earlier run's chaos.jsonl (rounds in several sittings).
#
# Both proxies run as user nobody: the leader "cut off from the proxy host
# alone" is an nftables rule on loopback that drops the connections user
# nobody opens to the leader's PostgreSQL and REST ports (conntrack-marked, so
# both directions), while Patroni (user postgres), etcd and the replicas still
# reach it; latency/loss and the slow API go through bench/delay_relay.py (delay_on).
# Needs root. Every wait is bounded.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
. "$here/bench/proxies.sh"
rounds=1
all="patroni-freeze-6s,patroni-freeze-20s,pg-freeze-15s,patroni-kill,leader-kill,replica-kill,etcd-kill,quorum-lost-20s,leader-cut-30s,leader-latency-loss-30s,slow-api-replica-30s"
scenarios=$all
out=
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --scenarios) scenarios=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
build=${BUILD_DIR:-$here/build}
lab=$here/lab/cluster.sh
ulimit -n "$(ulimit -Hn)"
out=${out:-$here/bench/out/chaos-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
say() { printf '[chaos %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
[ -x "$build/patroxy" ] || { say "build first"; exit 1; }

PX_WRITE=6010 PX_READ=6011 PX_STATS=17110
HA_WRITE=7510 HA_READ=7511 HA_STATS=7512
proxy_user=nobody
uid=$(id -u nobody)
state=$out/state
mkdir -p "$state"

"$lab" up >/dev/null
# pgbench -S on the read ports needs its tables (round 1 ran without them: no pgbench load).
pgbench -i -s 5 -q -h 127.0.0.1 -U "$LAB_BENCH_USER" -p "$((LAB_PG_PORT_BASE + $("$lab" leader | tr -dc 0-9)))" "$LAB_DATABASE" >/dev/null 2>&1
"$lab" wait-healthy 60 >/dev/null
start_patroxy patroxy $PX_WRITE $PX_READ $PX_STATS
start_haproxy $HA_WRITE $HA_READ $HA_STATS
cleanup() {
    fault_clear
    stop_proxies
    "$lab" down >/dev/null 2>&1 || true   # the next user of the lab lock starts clean
}
trap cleanup EXIT

# The fault helpers run in chaos.py's `bash -c`: exported with what they need.
export here lab state uid out LAB_PG_PORT_BASE LAB_API_PORT_BASE LAB_DIR LAB_ETCD_PORT_BASE PX_STATS
member_ports() { local i=${1#pg}; echo "$((LAB_PG_PORT_BASE + i)), $((LAB_API_PORT_BASE + i))"; }
api_port_of() { echo "$((LAB_API_PORT_BASE + ${1#pg}))"; }
victim_leader() { "$lab" leader | tee "$state/victim"; }
victim_replica() {
    local l m
    l=$("$lab" leader)
    for m in pg0 pg1 pg2; do [ "$m" != "$l" ] && { echo "$m" | tee "$state/victim"; return; }; done
}
victim() { cat "$state/victim"; }
postmaster_pids() {
    local pm
    pm=$(head -1 "$LAB_DIR/$1/data/postmaster.pid")
    echo "$pm" $(pgrep -P "$pm" || true)
}
freeze_pg() { kill -STOP $(postmaster_pids "$1") && postmaster_pids "$1" > "$state/frozen"; }
thaw_pg() { kill -CONT $(cat "$state/frozen") 2>/dev/null || true; }
kill_member() {
    kill -KILL "$(cat "$LAB_DIR/$1/patroni.pid")" 2>/dev/null || true
    kill -KILL "$(head -1 "$LAB_DIR/$1/data/postmaster.pid")" 2>/dev/null || true
}
# The etcd member patroxy's watch is on (its /status.json), then the next one.
etcd_of_patroxy() {
    local ep
    ep=$(curl -fsS --max-time 2 "http://127.0.0.1:$PX_STATS/status.json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["dcs"]["endpoint"])')
    echo $(( (${ep##*:} - LAB_ETCD_PORT_BASE) / 2 ))
}
etcd_freeze_two() {
    local a b
    a=$(etcd_of_patroxy); b=$(( (a + 1) % 3 ))
    echo "$a $b" > "$state/etcd-frozen"
    kill -STOP "$(cat "$LAB_DIR/etcd$a/pid")" "$(cat "$LAB_DIR/etcd$b/pid")"
}
etcd_thaw_two() { local i; for i in $(cat "$state/etcd-frozen"); do kill -CONT "$(cat "$LAB_DIR/etcd$i/pid")"; done; }
# cut_on "PORTS": connections user nobody opens to these loopback ports, dropped both ways.
cut_on() {
    nft -f - <<EOF
table inet patroxy_chaos {
    chain out {
        type filter hook output priority 0; policy accept;
        meta skuid $uid ip daddr 127.0.0.1 tcp dport { $1 } ct mark set 0x19
        ct mark 0x19 drop
    }
}
EOF
}
# delay_on "PORTS" UP DOWN LOSS_PERCENT: this kernel has no netem, so the new
# connections user nobody opens to these loopback ports are redirected
# (nftables) to bench/delay_relay.py, which delays what it forwards by UP
# seconds towards the member and DOWN seconds back; LOSS_PERCENT of the
# packets user nobody sends to them (relayed or not) are dropped. Connections
# to a REST port (PORT >= LAB_API_PORT_BASE) that were open before are reset,
# so that kept-alive check connections reopen through the relay; sessions to
# PostgreSQL that were open before keep their direct path (only the loss
# reaches them).
delay_on() {
    local ports=$1 up=$2 down=$3 loss=$4 p nat="" api="" all="" reset_rule="" loss_rule=""
    : > "$state/relays"
    for p in ${ports//,/ }; do
        # Relays below the ephemeral port range (32768 and up): nothing else holds them.
        setsid /usr/bin/python3 "$here/bench/delay_relay.py" --listen $((p + 10000)) --target "$p" --up "$up" --down "$down" \
            </dev/null >"$state/relay-$p.log" 2>&1 &
        echo $! >> "$state/relays"
        nat+="        meta skuid $uid ip daddr 127.0.0.1 tcp dport $p redirect to :$((p + 10000))"$'\n'
        all+="${all:+, }$p, $((p + 10000))"
        [ "$p" -ge "$LAB_API_PORT_BASE" ] && api+="${api:+, }$p"
    done
    # Built apart: a '}' inside ${x:+...} would end the expansion.
    [ -n "$api" ] && reset_rule="meta skuid $uid ip daddr 127.0.0.1 tcp dport { $api } reject with tcp reset"
    [ -n "$loss" ] && loss_rule="meta skuid $uid ip daddr 127.0.0.1 tcp dport { $all } numgen random mod 100 < $loss drop"
    sleep 0.5
    nft -f - <<EOF
table inet patroxy_chaos {
    chain nat_out {
        type nat hook output priority -100; policy accept;
$nat    }
    chain out {
        type filter hook output priority 0; policy accept;
        $reset_rule
        $loss_rule
    }
}
EOF
}
fault_clear() {
    nft delete table inet patroxy_chaos 2>/dev/null || true
    [ -f "$state/relays" ] && { kill $(cat "$state/relays") 2>/dev/null || true; rm -f "$state/relays"; }
    [ -f "$state/frozen" ] && { kill -CONT $(cat "$state/frozen") 2>/dev/null || true; rm -f "$state/frozen"; }
    [ -f "$state/etcd-frozen" ] && { etcd_thaw_two 2>/dev/null || true; rm -f "$state/etcd-frozen"; }
    return 0
}
export -f member_ports api_port_of victim_leader victim_replica victim postmaster_pids freeze_pg thaw_pg kill_member \
    etcd_of_patroxy etcd_freeze_two etcd_thaw_two cut_on delay_on fault_clear

# scenario NAME -> "HOLD AFTER|FAULT|HEAL"
scenario() {
    case $1 in
        patroni-freeze-6s) echo '6 12|"$lab" freeze-patroni "$(victim_leader)"|"$lab" thaw-patroni "$(victim)"' ;;
        patroni-freeze-20s) echo '20 25|"$lab" freeze-patroni "$(victim_leader)"|"$lab" thaw-patroni "$(victim)"' ;;
        pg-freeze-15s) echo '15 20|freeze_pg "$(victim_leader)"|thaw_pg' ;;
        patroni-kill) echo '20 25|"$lab" kill-leader-patroni > "$state/victim"|"$lab" start "$(victim)"' ;;
        leader-kill) echo '20 25|kill_member "$(victim_leader)"|"$lab" start "$(victim)"' ;;
        replica-kill) echo '10 20|kill_member "$(victim_replica)"|"$lab" start "$(victim)"' ;;
        etcd-kill) echo '15 10|i=$(etcd_of_patroxy); echo "$i" > "$state/etcd"; "$lab" etcd-stop "$i"|"$lab" etcd-start "$(cat "$state/etcd")"' ;;
        quorum-lost-20s) echo '20 20|etcd_freeze_two|etcd_thaw_two; rm -f "$state/etcd-frozen"' ;;
        leader-cut-30s) echo '30 20|cut_on "$(member_ports "$(victim_leader)")"|fault_clear' ;;
        leader-latency-loss-30s) echo '30 15|delay_on "$(member_ports "$(victim_leader)")" 0.3 0 5|fault_clear' ;;
        slow-api-replica-30s) echo '30 10|delay_on "$(api_port_of "$(victim_replica)")" 0 3 ""|fault_clear' ;;
        *) say "unknown scenario $1"; exit 2 ;;
    esac
}

settle() {
    local l i
    "$lab" wait-healthy 120 >/dev/null || { say "the cluster did not heal"; return 1; }
    l=$("$lab" leader)
    for i in $(seq 150); do
        haproxy_settled_on $HA_STATS 2>/dev/null && patroxy_settled $PX_STATS "$l" 2>/dev/null && return 0
        sleep 0.4
    done
    say "proxies did not settle on $l"; return 1
}

for round in $(seq "$rounds"); do
    for name in ${scenarios//,/ }; do
        IFS='|' read -r times fault heal < <(scenario "$name")
        read -r hold after <<< "$times"
        settle
        say "round $round $name"
        /usr/bin/python3 "$here/bench/chaos.py" --lab "$lab" --proxy patroxy:$PX_WRITE:$PX_READ --proxy haproxy:$HA_WRITE:$HA_READ \
            --fault "$fault" --hold "$hold" --heal "$heal" --after "$after" > "$state/last.jsonl" || say "chaos.py failed on $name"
        fault_clear
        while read -r line; do
            echo "{\"round\": \"$(basename "$out")/$round\", \"scenario\": \"$name\", \"result\": $line}" >> "$out/chaos.jsonl"
            say "  $(echo "$line" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["proxy"], {k: r[k] for k in ("sessions_cut","writes_failed","reads_failed","write_gap_s","read_gap_s","acked_writes_lost","acked_by_non_leader","stuck_ops","pgbench_aborted")})')"
        done < "$state/last.jsonl"
        for p in "${proxy_pids[@]}"; do
            [ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null || echo Z)" != Z ] || { say "a proxy died (pid $p): see $out/*.log"; exit 1; }
        done
    done
done
"$lab" wait-healthy 120 >/dev/null || true
say "results in $out/chaos.jsonl"
