#!/usr/bin/python3
"""bench/chaos.sh's JSON lines -> the tables of bench/RESULTS-chaos.md.

  chaos_summary.py RESULTS.md CHAOS.jsonl...

Medians over the rounds (and each round's value), per scenario and proxy.
Replaces what lies between <!-- tables --> and <!-- /tables --> in RESULTS.md
(the hand-written text around them stays).
"""

import json
import statistics
import sys

DESCRIPTIONS = {
    "patroni-freeze-6s": "the leader's Patroni frozen (SIGSTOP) 6 s: below ttl (10) - loop_wait (2), the lock never expires",
    "patroni-freeze-20s": "the leader's Patroni frozen 20 s: above ttl, the lock expires and a replica is promoted while the old PostgreSQL still runs as a primary",
    "pg-freeze-15s": "the leader's PostgreSQL frozen (SIGSTOP of the postmaster and every backend) 15 s",
    "patroni-kill": "the leader's Patroni SIGKILLed, its PostgreSQL left running (restarted after 20 s)",
    "leader-kill": "the leader SIGKILLed (Patroni and postmaster; restarted after 20 s)",
    "replica-kill": "a replica SIGKILLed (Patroni and postmaster; restarted after 10 s)",
    "etcd-kill": "the etcd member patroxy's watch is on SIGKILLed for 15 s",
    "quorum-lost-20s": "etcd quorum lost: two of three members (patroxy's among them) frozen 20 s (> ttl; the lab runs failsafe_mode)",
    "leader-cut-30s": "the leader cut off from the proxies alone for 30 s (its PostgreSQL and REST ports, both ways; Patroni and etcd still see it)",
    "leader-netem-30s": "(round 1 only, not applied: this kernel has no netem; the figures are a second baseline)",
    "leader-latency-loss-30s": "the proxies' new connections to the leader (PostgreSQL and REST) delayed 300 ms towards it (bench/delay_relay.py), 5 % of the proxies' packets to it dropped, for 30 s; kept-alive REST connections reset so they reopen delayed",
    "vip-peer-killed-in-switchover": "two proxy hosts in network namespaces (bench/vip_chaos.sh): a Patroni switchover, and 1 s into it host a (the VIP master) loses its proxies to SIGKILL (patroxy; HAProxy and keepalived); host b must take the VIP and route to the new leader; host a's restarted after 20 s and preempts the VIP back",
    "slow-api-replica-30s": "one replica's Patroni API slow for 30 s: every answer to the proxies delayed 3 s (past patroxy's health.timeout 2 s, below HAProxy's timeout check 15 s), kept-alive check connections reset so they reopen delayed",
}

FIGURES = [
    ("established_sessions_cut", "established long-lived sessions cut", "lower"),
    ("sessions_cut", "errors on the long-lived sessions (cuts and failed reconnects)", "lower"),
    ("writes_failed", "failed writes", "lower"),
    ("reads_failed", "failed new read connections", "lower"),
    ("write_gap_s", "longest gap without a successful write (s)", "lower"),
    ("read_gap_s", "longest gap without a successful read (s)", "lower"),
    ("acked_writes_lost", "acknowledged writes missing afterwards", "lower"),
    ("acked_by_non_leader", "writes acknowledged by a member not holding the leader key", "lower"),
    ("stuck_ops", "operations with no answer for 30 s (stuck)", "lower"),
    ("pgbench_aborted", "pgbench -S clients aborted (read port)", "lower"),
    ("pgbench_tx", "pgbench -S transactions", None),
    ("writes", "write attempts", None),
]


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def med(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    m = statistics.median(vals)
    return m if any(isinstance(v, float) for v in vals) or m != int(m) else int(m)


def main():
    results_md, files = sys.argv[1], sys.argv[2:]
    rows = []
    for f in files:
        with open(f) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    order = list(DESCRIPTIONS)
    scenarios = sorted({r["scenario"] for r in rows}, key=lambda s: order.index(s) if s in order else 99)
    out = []
    verdict = []
    for sc in scenarios:
        by = {}
        for r in rows:
            if r["scenario"] == sc:
                by.setdefault(r["result"]["proxy"], []).append(r["result"])
        px, ha = by.get("patroxy", []), by.get("haproxy", [])
        n = min(len(px), len(ha))
        out.append(f"### {sc}\n\n{DESCRIPTIONS.get(sc, '')}. Rounds: {n}.\n")
        out.append("| figure | patroxy | HAProxy | per round (p/H) |\n|---|---:|---:|---|")
        worse = []
        for key, label, better in FIGURES:
            p, h = med([r.get(key) for r in px]), med([r.get(key) for r in ha])
            per = ", ".join(f"{fmt(a.get(key))}/{fmt(b.get(key))}" for a, b in zip(px, ha))
            out.append(f"| {label} | {fmt(p)} | {fmt(h)} | {per} |")
            if better == "lower" and p is not None and h is not None and p > h + (0.25 if key.endswith("_s") else 0):
                worse.append(label)
        moves = ", ".join(f"{r.get('leader_before')}->{r.get('leader_after')}" for r in px)
        keys = "; ".join(str(r.get("key_changes")) for r in px)
        fault_at = "; ".join(str(next((e["at"] for e in r.get("events", []) if "fault" in e), None)) for r in px)
        out.append("")
        out.append(f"Leader before->after: {moves}. Fault at (s after the start): {fault_at}; "
                   f"leader key changes seen (s after the start, holder): {keys}.")
        errs = {}
        for name, rs in (("patroxy", px), ("HAProxy", ha)):
            e = {}
            for r in rs:
                for k, v in {**r.get("write_errors", {}), **{"read: " + k: v for k, v in r.get("read_errors", {}).items()}}.items():
                    e[k] = e.get(k, 0) + v
            errs[name] = e
        for name, e in errs.items():
            if e:
                top = sorted(e.items(), key=lambda kv: -kv[1])[:3]
                out.append(f"{name}'s errors: " + "; ".join(f"`{k}` x{v}" for k, v in top) + ".")
        out.append("")
        verdict.append((sc, worse))
    out.append("### Where patroxy is worse than HAProxy (median; gaps by more than 0.25 s)\n")
    for sc, worse in verdict:
        out.append(f"- {sc}: {', '.join(worse) if worse else 'nowhere'}")
    text = open(results_md).read() if results_md and __import__('os').path.exists(results_md) else "<!-- tables -->\n<!-- /tables -->\n"
    head, _, rest = text.partition("<!-- tables -->")
    _, _, tail = rest.partition("<!-- /tables -->")
    open(results_md, "w").write(head + "<!-- tables -->\n" + "\n".join(out) + "\n<!-- /tables -->" + tail)


if __name__ == "__main__":
    main()
