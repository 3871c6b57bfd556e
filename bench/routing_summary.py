#!/usr/bin/env python3
"""Markdown tables (medians over rounds, with the range) from bench/routing.sh's
routing.tsv: round, phase, variant, replicas, metric, value."""
import collections
import statistics
import sys

rows = collections.defaultdict(list)      # (phase, variant, replicas, metric) -> values
by_round = collections.defaultdict(dict)  # (phase, variant, replicas, metric) -> {round: value}
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 6:
        continue
    rnd, phase, variant, n, metric, value = parts
    try:
        key = (phase, variant, int(n), metric)
        rows[key].append(float(value))
        by_round[key][int(rnd)] = float(value)
    except ValueError:
        pass

names = {"rr": "roundrobin", "lc": "leastconn", "first": "first (member maxconn 12)",
         "cur-rr": "this build, roundrobin", "cur-lc": "this build, leastconn",
         "base-rr": "baseline 9a697d0^, round-robin"}


def med(phase, variant, n, metric):
    v = rows.get((phase, variant, n, metric))
    return statistics.median(v) if v else None


def cell(phase, variant, n, metric, fmt="%.2f"):
    v = rows.get((phase, variant, n, metric))
    if not v:
        return "-"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt % m
    return (fmt + " (" + fmt + "–" + fmt + ")") % (m, min(v), max(v))


def paired(variant, n):
    """Median over rounds of variant/baseline - 1 within the same round, and
    in how many rounds the variant was above."""
    a = by_round.get(("cost", variant, n, "cpu_us_per_session"), {})
    b = by_round.get(("cost", "base-rr", n, "cpu_us_per_session"), {})
    ratios = [a[r] / b[r] - 1 for r in a if r in b and b[r] > 0]
    if not ratios:
        return "-"
    return "%+.1f%% (above in %d of %d)" % (100 * statistics.median(ratios), sum(x > 0 for x in ratios), len(ratios))


def rounds_of(phase, variant, n, metric):
    return len(rows.get((phase, variant, n, metric), []))


if ("spread", "rr", 3, "samples") in rows:
    print("## A. Sessions per replica under long and short sessions (3 replicas, %d rounds)\n"
          % rounds_of("spread", "rr", 3, "samples"))
    print("Median over rounds (range in brackets) of each round's figure over its samples.\n")
    print("| balance | open sessions (mean) | max-min (mean) | max-min (p95) | max-min (max) | CV (mean) | busiest / ideal | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for v in ("rr", "lc", "first"):
        if ("spread", v, 3, "samples") not in rows:
            continue
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            names[v], cell("spread", v, 3, "open", "%.1f"), cell("spread", v, 3, "spread_mean"),
            cell("spread", v, 3, "spread_p95", "%.0f"), cell("spread", v, 3, "spread_max", "%.0f"),
            cell("spread", v, 3, "cv", "%.3f"), cell("spread", v, 3, "peak_over_ideal", "%.2f"),
            cell("spread", v, 3, "errors", "%.0f")))
    print()

if ("cost", "base-rr", 3, "sessions_per_s") in rows:
    print("## B. Cost per new session (%d rounds of 8 connect streams)\n"
          % rounds_of("cost", "base-rr", 3, "sessions_per_s"))
    print("| read replicas | variant | sessions/s | proxy CPU µs/session | CPU vs baseline (medians) | CPU vs baseline, paired by round | idle CPU ms/s | replicas used (min–max sessions) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (3, 30):
        base = med("cost", "base-rr", n, "cpu_us_per_session")
        for v in ("base-rr", "cur-rr", "cur-lc"):
            if ("cost", v, n, "sessions_per_s") not in rows:
                continue
            cpu = med("cost", v, n, "cpu_us_per_session")
            delta = "-" if v == "base-rr" or not base else "%+.1f%%" % ((cpu / base - 1) * 100)
            used = med("routed", v, n, "replicas_used")
            lo, hi = med("routed", v, n, "min_total"), med("routed", v, n, "max_total")
            print("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                n, names[v], cell("cost", v, n, "sessions_per_s", "%.0f"), cell("cost", v, n, "cpu_us_per_session"),
                delta, "-" if v == "base-rr" else paired(v, n), cell("idle", v, n, "cpu_ms_per_s"),
                "-" if used is None else "%d of %d (%d–%d)" % (used, n, lo, hi)))
    print()

if ("micro", "base-rr", 3, "ns_per_call") in rows:
    print("## C. The decision alone: proxy::candidates() per call (%d rounds)\n"
          % rounds_of("micro", "base-rr", 3, "ns_per_call"))
    print("| read replicas | baseline 9a697d0^ round-robin | this build roundrobin | this build leastconn | this build first |")
    print("|---|---|---|---|---|")
    for n in (3, 30):
        print("| %d | %s |" % (n, " | ".join(cell("micro", v, n, "ns_per_call", "%.0f") + " ns"
                                          for v in ("base-rr", "cur-rr", "cur-lc", "cur-first"))))
    print()

crash_rows = sorted((p, v, n, val) for (p, v, n, m), vals in rows.items() if m == "crashed" for val in vals)
churn = {(v, n): vals for (p, v, n, m), vals in rows.items() if p == "churn"}
print("## Crashes\n")
if crash_rows:
    print("patroxy died during these runs (exit status; 139: SIGSEGV) and was started again (that run has no figure):\n")
    for p, v, n, val in crash_rows:
        print("- %s, %s, %d replicas: exit status %d" % (p, names.get(v, v), n, val))
else:
    print("No patroxy died during the runs.")
if churn:
    print("\ncandidates() in a loop for 5 s while another thread moves the session counts"
          " (exit status; 0: every call returned, 139: SIGSEGV):\n")
    print("| read replicas | roundrobin | leastconn | first |")
    print("|---|---|---|---|")
    for n in (3, 30):
        print("| %d | %s |" % (n, " | ".join("%d" % churn[(v, n)][0] if (v, n) in churn else "-"
                                          for v in ("cur-roundrobin", "cur-leastconn", "cur-first"))))
errs = sum(sum(v) for (p, _, _, m), v in rows.items() if m == "errors")
print("\nClient errors in all runs: %d" % errs)
