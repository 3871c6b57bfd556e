#!/usr/bin/env bash
# VIP takeover times, patroxy against keepalived, side by side in one run, in
# network namespaces (lab/netns.sh; created and removed here). Host a (priority
# 150) is master, host b (100) backup; the clock runs from the event on a to the
# VIP being on b's interface (polled every 10 ms). Events: SIGKILL of the
# daemon, SIGTERM, and a silent master (a's link down). Advert intervals 1 s
# and 100 ms. Medians of --rounds runs go to bench/RESULTS-vip.md.
#
#   bench/vip_takeover.sh [--rounds N] [--build DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
rounds=3
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2;;
        --build) build=$2; shift 2;;
        *) echo "usage: $0 [--rounds N] [--build DIR]" >&2; exit 2;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
. "$root/lab/netns.sh"
patroxy=$build/patroxy
[ -x "$patroxy" ] || { echo "build patroxy first ($patroxy)" >&2; exit 1; }
work=$(mktemp -d /tmp/patroxy-vipbench.XXXXXX)
raw="$work/raw.csv"
declare -A pid=()
say() { printf '[vip-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

stop_all() {
    local k
    for k in "${!pid[@]}"; do kill -KILL "${pid[$k]}" 2>/dev/null || true; wait "${pid[$k]}" 2>/dev/null || true; done
    pkill -KILL -f "$work/ka-" 2>/dev/null || true   # keepalived's VRRP child too
    pid=()
}
cleanup() { stop_all; netns_down; rm -rf "$work"; }
trap cleanup EXIT
trap "exit 130" INT TERM

patroxy_config() {  # HOST PRIORITY INTERVAL
    cat > "$work/px-$1.yml" <<EOF
members:
  - {name: pg0, host: $NET_DB, port: 15432, api: "http://$NET_DB:18008"}
listeners:
  - {name: master, role: write, bind: $NET_VIP, port: 5000}
stats: {bind: 0.0.0.0, port: 7000}
workers: 1
vip:
  interface: eth0
  address: $NET_VIP/24
  virtual_router_id: 51
  priority: $2
  advert_interval: $3
  unhealthy_after: 1h   # no cluster here: keep the configured priority
  peer_probe_interval: 250ms
EOF
}
start() {  # TOOL HOST PRIORITY INTERVAL_MS
    local tool=$1 host=$2 prio=$3 ms=$4
    if [ "$tool" = patroxy ]; then
        patroxy_config "$host" "$prio" "${ms}ms"
        ip netns exec "$(ns "$host")" "$patroxy" -c "$work/px-$host.yml" >> "$work/px-$host.log" 2>&1 &
    else
        keepalived_conf "$work/ka-$host.conf" "$prio" "$(python3 -c "print($ms / 1000)")"
        ip netns exec "$(ns "$host")" keepalived -n -l -P -f "$work/ka-$host.conf" -p "$work/ka-$host.pid" \
            -r "$work/ka-$host-vrrp.pid" >> "$work/ka-$host.log" 2>&1 &
    fi
    pid[$host]=$!
}

# Seconds until the VIP is on b, polled every 10 ms, at most 20 s.
time_to_b() {
    python3 - "$(ns b)" "$NET_VIP" "$1" <<'EOF'
import subprocess, sys, time
ns, vip, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() - t0 < 20:
    out = subprocess.run(["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    if f" {vip}/" in out:
        print(f"{time.time() - t0:.3f}")
        sys.exit(0)
    time.sleep(0.01)
print("nan")
EOF
}

one_round() {  # TOOL INTERVAL_MS EVENT
    local tool=$1 ms=$2 event=$3 t0 took
    netns_up
    start "$tool" a 150 "$ms"
    start "$tool" b 100 "$ms"
    wait_for 20 holder_is a || { say "$tool: a never became master"; stop_all; echo nan; return; }
    sleep "$(python3 -c "print(2 * $ms / 1000 + 1.5)")"  # b hears a (and probes it once)
    t0=$(now_s)
    case $event in
        sigkill) if [ "$tool" = patroxy ]; then kill -KILL "${pid[a]}"; else pkill -KILL -f "$work/ka-a.conf"; fi;;
        sigterm) kill -TERM "${pid[a]}";;
        silent) ip -n "$(ns a)" link set eth0 down;;
    esac
    took=$(time_to_b "$t0")
    stop_all
    echo "$took"
}

say "rounds: $rounds; patroxy $("$patroxy" --version | head -1); $(keepalived --version 2>&1 | head -1)"
echo "tool,interval_ms,event,round,seconds" > "$raw"
for round in $(seq "$rounds"); do
    for ms in 1000 100; do
        for event in sigkill sigterm silent; do
            for tool in patroxy keepalived; do  # interleaved: both see the same machine state
                s=$(one_round "$tool" "$ms" "$event")
                say "round $round: $tool advert ${ms}ms $event -> ${s}s"
                echo "$tool,$ms,$event,$round,$s" >> "$raw"
            done
        done
    done
done

out=$root/bench/RESULTS-vip.md
python3 - "$raw" "$rounds" "$(uname -r)" "$(nproc)" > "$out" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(tool, ms, ev):
    v = [float(r["seconds"]) for r in rows if r["tool"] == tool and r["interval_ms"] == ms and r["event"] == ev and r["seconds"] != "nan"]
    return (statistics.median(v), len(v)) if v else (float("nan"), 0)
names = {"sigkill": "daemon SIGKILLed (host up)", "sigterm": "daemon SIGTERM (priority 0 advert)", "silent": "master silent (link down)"}
print("# VIP takeover: patroxy vs keepalived\n")
print(f"Command: `bench/vip_takeover.sh --rounds {sys.argv[2]}`. Machine: Debian 12, {sys.argv[4]} cores, kernel {sys.argv[3]}.")
print("Two hosts in network namespaces on one bridge, master priority 150, backup 100, VRRPv3, same VRID;")
print("seconds from the event on the master until the VIP is on the backup's interface (polled every 10 ms),")
print(f"median of {sys.argv[2]} rounds, patroxy and keepalived interleaved. patroxy probes the master's stats port")
print("every 250 ms; keepalived 2.2.7 is Debian's. A SIGKILLed keepalived falls silent; a SIGKILLed patroxy")
print("leaves its host refusing the stats port, which the backup's probe sees.\n")
print("| event | advert | patroxy (s) | keepalived (s) | RFC expectation |")
print("|---|---|---|---|---|")
for ev in ("sigkill", "sigterm", "silent"):
    for ms in ("1000", "100"):
        p, pn = med("patroxy", ms, ev)
        k, kn = med("keepalived", ms, ev)
        adv = int(ms) / 1000
        skew = (256 - 100) * adv / 256
        mdi = f"Master_Down_Interval {3 * adv + skew:.2f} after the last advert ({2 * adv + skew:.2f}-{3 * adv + skew:.2f} after the event)"
        expect = {"sigkill": mdi, "sigterm": f"Skew_Time {skew:.2f}", "silent": mdi}[ev]
        print(f"| {names[ev]} | {ms} ms | {p:.2f} | {k:.2f} | {expect} |")
print("\nRaw rounds:\n")
print("| tool | advert ms | event | round | seconds |\n|---|---|---|---|---|")
for r in rows:
    print(f"| {r['tool']} | {r['interval_ms']} | {r['event']} | {r['round']} | {r['seconds']} |")
EOF
say "wrote $out"
cat "$out"
