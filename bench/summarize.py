#!/usr/bin/env python3
"""Turns bench/run.sh's raw rows into bench/RESULTS.md (medians and ratios)
and a PNG chart drawn by gnuplot."""

import argparse
import csv
import json
import datetime
import math
import os
import platform
import statistics
import subprocess
import tempfile
from collections import defaultdict

PATHS = ["direct", "patroxy", "haproxy"]


def number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return value


def median(values):
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def show(value, digits=1):
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a, b):
    return math.nan if math.isnan(a) or math.isnan(b) or b == 0 else a / b


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, {platform.freedesktop_os_release().get('PRETTY_NAME', '')}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("results_md")
    ap.add_argument("--command", required=True)
    ap.add_argument("--chart")
    ap.add_argument("--extra", help="round/workload/path/value/unit rows: COPY, stand-in capacity, memory")
    ap.add_argument("--failover", help="failover.py results, one JSON object per line")
    args = ap.parse_args()

    runs = defaultdict(list)
    order = []
    rounds = set()
    with open(args.rows) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            key = (row["workload"], row["path"])
            if row["workload"] not in order:
                order.append(row["workload"])
            runs[key].append(row)
            rounds.add(row["round"])

    def med(workload, path, field):
        return median([number(r[field]) for r in runs.get((workload, path), [])])

    def round_ratios(workload, field):
        """patroxy/HAProxy within each round: the two ran minutes apart, so
        their spread shows the machine's noise better than medians alone."""
        by_round = defaultdict(dict)
        for p in ("patroxy", "haproxy"):
            for r in runs.get((workload, p), []):
                by_round[r["round"]][p] = number(r[field])
        return [ratio(v["patroxy"], v["haproxy"]) for v in by_round.values() if len(v) == 2]

    def spread(values):
        values = [v for v in values if not math.isnan(v)]
        return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"

    lines = [
        "# patroxy benchmarks",
        "",
        f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"Reproduce: `{args.command}` (medians of {len(rounds)} interleaved rounds; raw rows in `bench/out/`).",
        "",
        "Everything shares the same 2 cores: pgbench, three PostgreSQL servers, Patroni, etcd and",
        "the proxy under test, so a proxy's own CPU use costs throughput directly. Direct means",
        "pgbench straight to the leader (write port workloads) or to one replica (read port workloads).",
        "HAProxy runs the seed's configuration (`bench/haproxy.cfg.in`); patroxy the lab's",
        "(`lab/patroxy.yml`) with log level warn (HAProxy in the seed logs nothing either).",
        "",
        "## Throughput and latency (pgbench)",
        "",
        "| workload | direct TPS | patroxy TPS | HAProxy TPS | patroxy/direct | patroxy/HAProxy | per round p/H | p50 ms (d/p/h) | p99 ms (d/p/h) | failed (p/h) |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for w in order:
        tps = {p: med(w, p, "tps") for p in PATHS}
        p50 = "/".join(show(med(w, p, "p50_ms"), 2) for p in PATHS)
        p99 = "/".join(show(med(w, p, "p99_ms"), 2) for p in PATHS)
        failed = "/".join(show(med(w, p, "failed"), 0) for p in ("patroxy", "haproxy"))
        lines.append(
            f"| {w} | {show(tps['direct'])} | {show(tps['patroxy'])} | {show(tps['haproxy'])} | "
            f"{show(ratio(tps['patroxy'], tps['direct']), 2)} | {show(ratio(tps['patroxy'], tps['haproxy']), 2)} | "
            f"{spread(round_ratios(w, 'tps'))} | {p50} | {p99} | {failed} |")

    lines += [
        "",
        "## Proxy CPU per 1,000 transactions (user+system seconds of the proxy process)",
        "",
        "| workload | patroxy | HAProxy | patroxy/HAProxy | per round p/H |",
        "|---|---:|---:|---:|---|",
    ]
    for w in order:
        p = med(w, "patroxy", "proxy_cpu_s_per_1k_tx")
        h = med(w, "haproxy", "proxy_cpu_s_per_1k_tx")
        lines.append(f"| {w} | {show(p, 4)} | {show(h, 4)} | {show(ratio(p, h), 2)} | "
                     f"{spread(round_ratios(w, 'proxy_cpu_s_per_1k_tx'))} |")

    extra, extra_order, units = defaultdict(list), [], {}
    if args.extra and os.path.exists(args.extra):
        with open(args.extra) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["workload"] not in extra_order:
                    extra_order.append(row["workload"])
                extra[(row["workload"], row["path"])].append(number(row["value"]))
                units[row["workload"]] = row["unit"]

    def xmed(workload, path):
        return median(extra.get((workload, path), []))

    if extra_order:
        lines += [
            "",
            "## Streaming, proxy-only capacity and memory (medians)",
            "",
            "COPY: `COPY pgbench_accounts TO STDOUT` (scale 10) through the read port. Proxy-only: one stand-in",
            "member (`bench/standin_main.cpp`: startup answered at once, then echo) so PostgreSQL is out of the",
            "way (`bench/standin_run.sh`); sessions/s = startup to ReadyForQuery to Terminate, 8 streams; round",
            "trips = 8 sessions echoing 100 bytes (a small query's shape), with the proxy's CPU per round trip;",
            "relay = 4 sessions echoing 16 KiB chunks, bytes both ways. Idle sessions: RSS growth of the proxy process",
            "with 9,000 sessions open (the machine's hard descriptor limit is 20,000 and a proxy holds two per",
            "session, so 10,000 cannot be opened here).",
            "",
            "| workload | direct | patroxy | HAProxy | unit | patroxy/direct | patroxy/HAProxy |",
            "|---|---:|---:|---:|---|---:|---:|",
        ]
        for w in extra_order:
            d, p, h = (xmed(w, x) for x in PATHS)
            lines.append(f"| {w} | {show(d)} | {show(p, 2)} | {show(h, 2)} | {units[w]} | {show(ratio(p, d), 2)} | "
                         f"{show(ratio(p, h), 2)} |")

    failovers = []
    if args.failover and os.path.exists(args.failover):
        with open(args.failover) as f:
            failovers = [json.loads(line) for line in f if line.strip()]
    if failovers:
        lines += [
            "",
            "## Failover (workload 8)",
            "",
            "A writer opens a fresh connection through the write port every 100 ms and inserts one row",
            "(`bench/failover.py`), and 4 long-lived sessions write every 100 ms; 3 s in, `lab/cluster.sh switchover`",
            "(patronictl), `kill-leader` (SIGKILL of the leader's PostgreSQL and Patroni) or `freeze-patroni` (the",
            "leader's Patroni SIGSTOPped for 15 s, below its ttl of 30 s: PostgreSQL runs on and the lock stays).",
            "Paths: patroxy with the DCS (etcd v3 watch), patroxy REST-only (no `dcs:`), HAProxy (the seed's checks).",
            "Promotion time from Patroni's `/history`. Window: from the last write acknowledged by the old leader",
            "to the first acknowledged by the new one. Key to routing: from the leader key's change (an etcd watch)",
            "to the proxy's stats naming the new leader. Medians over rounds; sessions cut, demoted and lost are",
            "totals over all rounds.",
            "",
            "| event | path | failed attempts | window s | promoted after event s | key to routing s | writes resumed after promotion s | long sessions cut | acked by demoted member | acked writes lost | errors seen |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for event in ("switchover", "kill", "freeze"):
            for path in ("patroxy", "patroxy-rest", "haproxy"):
                rs = [x["result"] for x in failovers if x["path"] == path and x["result"]["event"] == event]
                if not rs:
                    continue
                val = lambda k: median([number(r.get(k)) if r.get(k) is not None else math.nan for r in rs])
                errors = {}
                for r in rs:
                    for e, n in r.get("errors", {}).items():
                        errors[e] = errors.get(e, 0) + n
                seen = "; ".join(f"{n}x {e[:70]}" for e, n in sorted(errors.items(), key=lambda kv: -kv[1])[:2]) or "-"
                window = val("window_s")
                cut = sum(r.get("sessions_cut") or 0 for r in rs)
                of = sum(r.get("sessions") or 0 for r in rs)
                lines.append(f"| {event} | {path} | {show(val('failed'), 0)} | {show(window, 2) if window >= 0 else 'no change'} | "
                             f"{show(val('promotion_after_event_s'), 2)} | {show(val('key_to_routing_s'), 2)} | "
                             f"{show(val('resumed_after_promotion_s'), 2)} | {cut} of {of} | "
                             f"{sum(r.get('acked_by_demoted_member') or 0 for r in rs)} | "
                             f"{sum(r.get('acked_writes_lost') or 0 for r in rs)} | {seen.replace('|', '/')} |")

    select = [w for w in order if w.startswith("select-only")]
    vs_haproxy = [ratio(med(w, "patroxy", "tps"), med(w, "haproxy", "tps")) for w in select]
    vs_direct = [ratio(med(w, "patroxy", "tps"), med(w, "direct", "tps")) for w in select if " write " in w]
    cpu = [ratio(med(w, "patroxy", "proxy_cpu_s_per_1k_tx"), med(w, "haproxy", "proxy_cpu_s_per_1k_tx")) for w in select]
    def geomean(values):
        values = [v for v in values if not math.isnan(v) and v > 0]
        return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan

    lines += [
        "",
        "## Targets (issue: bench)",
        "",
        f"Across the {len(select)} select-only variants: TPS patroxy/HAProxy geometric mean "
        f"{show(geomean(vs_haproxy), 2)}, proxy CPU per transaction patroxy/HAProxy geometric mean "
        f"{show(geomean(cpu), 2)}.",
        "",
        f"- Select-only TPS, patroxy/HAProxy >= 1.0 on both ports: lowest {show(min(vs_haproxy, default=math.nan), 2)}"
        f" -> {'met' if vs_haproxy and min(vs_haproxy) >= 1.0 else 'NOT met'}",
        f"- Select-only TPS on the write port, patroxy/direct >= 0.8: lowest {show(min(vs_direct, default=math.nan), 2)}"
        f" -> {'met' if vs_direct and min(vs_direct) >= 0.8 else 'NOT met'}",
        f"- Proxy CPU per transaction, patroxy/HAProxy <= 1.0: highest {show(max(cpu, default=math.nan), 2)}"
        f" -> {'met' if cpu and max(cpu) <= 1.0 else 'NOT met'}",
    ]
    connect = [ratio(med(w, "patroxy", "tps"), med(w, "haproxy", "tps")) for w in order if w.startswith("connect-per-tx")]
    if connect:
        lines.append(f"- New connection per transaction, patroxy/HAProxy >= 1.0: lowest {show(min(connect), 2)}"
                     f" -> {'met' if min(connect) >= 1.0 else 'NOT met'}")
    if extra_order:
        rate = ratio(xmed("proxy-only sessions/s", "patroxy"), xmed("proxy-only sessions/s", "haproxy"))
        idle = xmed("idle session RSS", "patroxy")
        lines.append(f"- Proxy-only sessions/s, patroxy/HAProxy >= 1.0: {show(rate, 2)} -> {'met' if rate >= 1.0 else 'NOT met'}")
        lines.append(f"- Idle session RSS <= 8 KiB: {show(idle, 2)} KiB -> {'met' if idle <= 8 else 'NOT met'}")
        rt_cpu = ratio(xmed("proxy-only CPU per round trip", "patroxy"), xmed("proxy-only CPU per round trip", "haproxy"))
        if not math.isnan(rt_cpu):
            lines.append(f"- Proxy-only CPU per round trip, patroxy/HAProxy <= 1.0: {show(rt_cpu, 2)} -> "
                         f"{'met' if rt_cpu <= 1.0 else 'NOT met'}")
    if extra.get(("reload: steady p99", "patroxy")):
        steady = xmed("reload: steady p99", "patroxy")
        for phase in ("SIGHUP every second", "upgrade every 5 s"):
            p99 = xmed(f"reload: {phase} p99", "patroxy")
            failed = sum(v for v in extra.get((f"reload: {phase} failed", "patroxy"), []) if not math.isnan(v))
            lines.append(f"- Reload workload, {phase}: {failed:.0f} failed connections, p99 {show(p99, 2)} ms = "
                         f"{show(ratio(p99, steady), 2)}x steady -> "
                         f"{'met' if failed == 0 and ratio(p99, steady) <= 2.0 else 'NOT met'}")
    if failovers:
        px = [x["result"] for x in failovers if x["path"] == "patroxy"]
        resumed = [r["resumed_after_promotion_s"] for r in px if r.get("resumed_after_promotion_s") is not None]
        sw_failed = sum(r["failed"] for r in px if r["event"] == "switchover")
        demoted = sum(r.get("acked_by_demoted_member") or 0 for r in px)
        lost = sum(r.get("acked_writes_lost") or 0 for r in px)
        worst = max(resumed, default=math.nan)
        lines.append(f"- Failover: writes resume within 1 s of the promotion: worst {show(worst, 2)} s -> "
                     f"{'met' if resumed and worst <= 1.0 else 'NOT met'}")
        lines.append(f"- Switchover with wait_for_backend above the promotion time: {sw_failed} failed connections -> "
                     f"{'met' if sw_failed == 0 else 'NOT met'}")
        lines.append(f"- Writes acknowledged by a demoted member: {demoted}; acknowledged writes lost: {lost} -> "
                     f"{'met' if demoted == 0 and lost == 0 else 'NOT met'}")
    before_rows = [w for w in order if runs.get((w, "before"))]
    before_extra = [w for w in extra_order if extra.get((w, "before"))]
    if before_rows or before_extra:
        lines += [
            "",
            "## Before and after (`PATROXY_BEFORE`: the older build as a fourth path, interleaved)",
            "",
            "| workload | measure | before | after | HAProxy | after/before | after/HAProxy |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for w in before_rows:
            for field, label, digits in (("tps", "TPS", 1), ("proxy_cpu_s_per_1k_tx", "CPU s per 1k tx", 4)):
                b, a, h = med(w, "before", field), med(w, "patroxy", field), med(w, "haproxy", field)
                lines.append(f"| {w} | {label} | {show(b, digits)} | {show(a, digits)} | {show(h, digits)} | "
                             f"{show(ratio(a, b), 2)} | {show(ratio(a, h), 2)} |")
        for w in before_extra:
            b, a, h = xmed(w, "before"), xmed(w, "patroxy"), xmed(w, "haproxy")
            lines.append(f"| {w} | {units[w]} | {show(b, 2)} | {show(a, 2)} | {show(h, 2)} | {show(ratio(a, b), 2)} | "
                         f"{show(ratio(a, h), 2)} |")
    lines.append("")
    lines += ["Where the time goes (perf, strace -c per session, patroxy vs HAProxy, before and after the",
              "changes made for these targets): `bench/PROFILE.md`. VIP takeover vs keepalived: `bench/RESULTS-vip.md`.", ""]
    if args.chart:
        lines += ["![median TPS per workload](results.png)", ""]
        draw_chart(order, med, args.chart)
    with open(args.results_md, "w") as f:
        f.write("\n".join(lines))


def draw_chart(order, med, png):
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as data:
        for w in order:
            label = w.replace(" ", "\\n", 1)
            data.write(f"\"{label}\" " + " ".join(str(med(w, p, "tps")) for p in PATHS) + "\n")
    script = f"""
set terminal pngcairo size 1400,600 font ",10"
set output "{png}"
set title "median TPS (higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set xtics rotate by -30 scale 0
set key top right
set grid ytics
plot "{data.name}" using 2:xtic(1) title "direct", '' using 3 title "patroxy", '' using 4 title "HAProxy"
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=False)
    os.unlink(data.name)


if __name__ == "__main__":
    main()
