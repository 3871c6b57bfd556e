#!/usr/bin/python3
"""The soak's verdict: bench/soak.sh's samples and writer result -> pass/fail,
a markdown table, and a gnuplot script for the plot.

  soak_check.py SAMPLES.tsv WRITER.json --warmup S [--md OUT.md] [--plot OUT.png]
                [--idle-before N --idle-after N] [--events EVENTS.tsv [--settle S]]

Assertions (each printed PASS/FAIL; exit 1 on any FAIL):
  * the process never died or changed (the same pid in every sample);
  * RSS flat after the warm-up: the median of the last third of the samples
    after --warmup is less than 1 % above the first third's (the least-squares
    growth is printed too);
  * descriptors flat after the warm-up: descriptors less two per client
    session (each session holds a client and a server socket), the median of
    the last third against the first third's, within 1 % or 3 descriptors,
    over the samples in steady state: those taken less than --settle seconds
    (default 20) after an event of --events (a switchover, a kill) are left
    out, since sessions held for a new leader have one socket, not two, and
    the reconnect burst after a cut has connections in flight (either moved
    a third's figure by 5-10 in CI); and, with no load, as many descriptors
    after the run as before it (within 2: a check connection may be reopening);
  * zero acknowledged writes lost and zero writes acknowledged by a member not
    holding the leader key (bench/chaos.py's writer, all the way through).
SAMPLES.tsv columns: t pid rss_kb fds threads cpu_s sessions closed_backend_down
closed_connect_failed scrape_errors [spare_fds: descriptors less two per session,
the median of five readings, each pairing the session count with the descriptors
counted just before and after it; without the column, fds - 2 * sessions].
"""

import argparse
import json
import statistics
import subprocess
import sys


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return slope, my - slope * mx


def growth(xs, ys):
    """(growth over the window as a fraction of the fitted start, absolute growth)."""
    slope, icpt = fit(xs, ys)
    start, end = icpt + slope * xs[0], icpt + slope * xs[-1]
    return ((end - start) / start if start else 0.0), end - start


def thirds(values, fraction, absolute, unit, span, pick=statistics.median, what="medians"):
    """(ok, detail): the median (or `pick`) of the last third of the samples against the first third's.

    Robust to the steps a failover puts in the series (the least-squares line
    extrapolates a step into a slope) and to sampling noise (descriptors and
    sessions are not read at the same instant)."""
    n = max(1, len(values) // 3)
    first, last = pick(values[:n]), pick(values[-n:])
    d = last - first
    g = d / first if first else 0.0
    return (g < fraction or d <= absolute), f"{g * 100:+.2f} % ({d:+.1f}{unit}) over {span:.0f} s, {what} {first:.0f} -> {last:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("samples")
    ap.add_argument("writer")
    ap.add_argument("--warmup", type=float, required=True)
    ap.add_argument("--md")
    ap.add_argument("--plot")
    ap.add_argument("--events")
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--idle-before", type=int)
    ap.add_argument("--idle-after", type=int)
    args = ap.parse_args()

    rows = []
    with open(args.samples) as f:
        header = f.readline().split()
        for line in f:
            if line.strip():
                rows.append(dict(zip(header, line.split())))
    num = lambda r, k: float(r[k])  # noqa: E731
    # bench/soak.sh's spare_fds (the median of five paired readings), else one reading's.
    spare = lambda r: num(r, "spare_fds") if "spare_fds" in r else num(r, "fds") - 2 * num(r, "sessions")  # noqa: E731
    event_times = []
    if args.events:
        try:
            with open(args.events) as f:
                event_times = [float(line.split()[0]) for line in f if line.strip()]
        except OSError:
            pass
    checks = []
    info = []

    def check(name, ok, detail):
        checks.append((name, ok, detail))

    pids = {r["pid"] for r in rows}
    check("no crash (one pid throughout)", len(rows) > 0 and len(pids) == 1 and "dead" not in pids,
          f"{len(rows)} samples, pids {sorted(pids)}")
    after = [r for r in rows if num(r, "t") >= args.warmup]
    if len(after) >= 6:
        xs = [num(r, "t") for r in after]
        span = xs[-1] - xs[0]
        g, d = growth(xs, [num(r, "rss_kb") for r in after])
        check("RSS flat after the warm-up (< 1 %, median of the last third against the first)",
              *thirds([num(r, "rss_kb") for r in after], 0.01, 0, "kB", span))
        info.append(f"RSS least-squares growth over the window: {g * 100:+.2f} % ({d:+.0f} kB)")
        steady = [r for r in after if not any(e <= num(r, "t") < e + args.settle for e in event_times)]
        if len(steady) >= 6:
            check(f"descriptors less 2 per session flat after the warm-up (< 1 % or 3, medians of thirds, "
                  f"{len(steady)} samples {args.settle:.0f} s or more after an event)",
                  *thirds([spare(r) for r in steady], 0.01, 3, "",
                          num(steady[-1], "t") - num(steady[0], "t")))
        else:
            check("enough steady samples for the descriptor check", False,
                  f"{len(steady)} of {len(after)} samples are {args.settle:.0f} s or more after an event")
    else:
        check("enough samples after the warm-up", False, f"{len(after)} samples after {args.warmup} s")
    if args.idle_before is not None and args.idle_after is not None:
        check("descriptors with no load: after <= before + 2", args.idle_after <= args.idle_before + 2,
              f"before {args.idle_before}, after {args.idle_after}")
    try:
        w = json.load(open(args.writer))
    except (OSError, ValueError) as e:
        w = {}
        check("writer result", False, str(e))
    if w:
        check("zero acknowledged writes lost", w.get("acked_writes_lost") == 0, f"{w.get('acked_writes_lost')} of {w.get('writes')} attempts")
        check("zero writes acknowledged by a member not holding the leader key", w.get("acked_by_non_leader") == 0,
              f"{w.get('acked_by_non_leader')} {w.get('non_leader_members')}")

    ok = all(c[1] for c in checks)
    for name, good, detail in checks:
        print(f"{'PASS' if good else 'FAIL'}: {name}: {detail}")
    for line in info:
        print(f"info: {line}")

    if args.md:
        first, last = rows[0] if rows else {}, rows[-1] if rows else {}
        aw = after[0] if after else {}
        with open(args.md, "w") as f:
            f.write("| check | result | detail |\n|---|---|---|\n")
            for name, good, detail in checks:
                f.write(f"| {name} | {'pass' if good else 'FAIL'} | {detail} |\n")
            for line in info:
                f.write(f"\n{line}.\n")
            f.write("\n| sample | t (s) | RSS (kB) | descriptors | threads | CPU (s) | sessions |\n|---|---:|---:|---:|---:|---:|---:|\n")
            for label, r in (("first", first), ("end of warm-up", aw), ("last", last)):
                if r:
                    f.write(f"| {label} | {r['t']} | {r['rss_kb']} | {r['fds']} | {r['threads']} | {r['cpu_s']} | {r['sessions']} |\n")
            if w:
                f.write(f"\nWriter (4 long-lived sessions every 100 ms, a new write and read connection every 200 ms): "
                        f"{w.get('writes')} write attempts, {w.get('writes_failed')} failed, {w.get('sessions_cut')} session cuts, "
                        f"longest write gap {w.get('write_gap_s')} s, {w.get('reads_failed')} of {w.get('reads')} reads failed, "
                        f"{w.get('stuck_ops')} stuck operations, leader key changes {len(w.get('key_changes', []))}.\n")
    if args.plot and rows:
        gp = f"""set terminal pngcairo size 1100,800 font ",9"
set output "{args.plot}"
set multiplot layout 3,1 title "patroxy soak: samples every 10 s (dashed: switchover, dotted: SIGKILL of the leader)"
set key outside right
set lmargin 10
set rmargin 24
set grid
set xlabel "seconds"
"""
        marks = ""
        if args.events:
            with open(args.events) as f:
                for line in f:
                    t, kind = line.split()[:2]
                    dt = 2 if kind == "switchover" else 3
                    marks += f'set arrow from {t}, graph 0 to {t}, graph 1 nohead dt {dt} lc rgb "gray"\n'
        gp += marks
        # CPU as % of a core between samples (gnuplot has no derivative of its own).
        cpu_file = args.samples + ".cpu"
        with open(cpu_file, "w") as f:
            for a, b in zip(rows, rows[1:]):
                dt = num(b, "t") - num(a, "t")
                if dt > 0 and a["pid"] == b["pid"] != "dead":
                    f.write(f"{b['t']} {100 * (num(b, 'cpu_s') - num(a, 'cpu_s')) / dt:.1f}\n")
        gp += f"""set ylabel "RSS (MB)"
plot "{args.samples}" using 1:($3/1024) every ::1 with linespoints pt 7 ps 0.4 title "RSS"
set ylabel "count"
plot "{args.samples}" using 1:4 every ::1 with lines lw 2 title "descriptors", "" using 1:7 every ::1 with lines title "client sessions", "" using 1:5 every ::1 with lines title "threads"
set ylabel "CPU (% of a core)"
plot "{cpu_file}" using 1:2 with lines title "CPU"
unset multiplot
"""
        subprocess.run(["gnuplot"], input=gp, text=True, check=False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
