#!/usr/bin/env python3
"""A mix of long and short sessions on one patroxy read listener, and the
spread of sessions over its replicas sampled from patroxy's /status.json.

Long clients each hold a session for a random time (uniform in
[--long-min, --long-max] s), close it, and open the next one at once; short
clients open a session, wait for ReadyForQuery and send Terminate, paced to
--short-rate sessions/s in all. The stand-in members (bench/standin_main.cpp)
answer a startup at once, so a session is open from the proxy's accept to the
client's Terminate.

Every 1/--hz s the sampler reads members[].listeners[LISTENER].sessions_current
for the replicas named by --members and keeps max - min and the coefficient of
variation (population stdev / mean) of those counts. Samples start after
--warmup s (the long sessions are all open by then).

Prints one TSV row: samples, mean open sessions, mean and p95 and max of
max-min, mean CV, mean of the per-replica shares' max / ideal, sessions done
(long, short), errors.

Same --seed: same random durations and the same start offsets, so two
balance modes meet the same workload (up to the machine's timing).
"""
import argparse
import json
import random
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.request


def startup_packet():
    body = struct.pack("!I", 196608)
    for s in ("user", "bench", "database", "bench"):
        body += s.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


STARTUP = startup_packet()
TERMINATE = b"X\0\0\0\4"


def open_session(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(STARTUP)
    have = b""
    while not (len(have) >= 6 and have[-6:-5] == b"Z" and have[-1:] == b"I"):
        chunk = s.recv(4096)
        if not chunk:
            s.close()
            raise OSError("closed before ReadyForQuery")
        have += chunk
        if len(have) > 4096:
            s.close()
            raise OSError("no ReadyForQuery")
    return s


def close_session(s):
    try:
        s.sendall(TERMINATE)
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True, help="the read listener")
    ap.add_argument("--stats-port", type=int, required=True)
    ap.add_argument("--listener", default="replicas")
    ap.add_argument("--members", required=True, help="comma-separated replica names")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--long", type=int, default=24, help="long-session clients")
    ap.add_argument("--long-min", type=float, default=1.0)
    ap.add_argument("--long-max", type=float, default=8.0)
    ap.add_argument("--short", type=int, default=4, help="short-session clients")
    ap.add_argument("--short-rate", type=float, default=200, help="short sessions/s, all clients together")
    ap.add_argument("--hz", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    names = a.members.split(",")
    stop = threading.Event()
    done = {"long": 0, "short": 0, "errors": 0}
    lock = threading.Lock()

    def count(key):
        with lock:
            done[key] += 1

    def long_client(k):
        rng = random.Random(a.seed * 1000 + k)
        # Staggered starts, so the first sessions do not all end together.
        if stop.wait(rng.uniform(0, a.warmup / 2)):
            return
        while not stop.is_set():
            hold = rng.uniform(a.long_min, a.long_max)
            try:
                s = open_session(a.port)
            except OSError:
                count("errors")
                stop.wait(0.1)
                continue
            stop.wait(hold)
            try:
                close_session(s)
                count("long")
            except OSError:
                count("errors")

    def short_client(k):
        period = a.short / a.short_rate if a.short_rate > 0 else 0
        nxt = time.monotonic()
        while not stop.is_set():
            try:
                close_session(open_session(a.port))
                count("short")
            except OSError:
                count("errors")
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                nxt = time.monotonic()

    threads = [threading.Thread(target=long_client, args=(k,), daemon=True) for k in range(a.long)]
    threads += [threading.Thread(target=short_client, args=(k,), daemon=True) for k in range(a.short)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    spreads, cvs, totals, peaks = [], [], [], []
    url = "http://127.0.0.1:%d/status.json" % a.stats_port
    next_sample = t0 + a.warmup
    while True:
        now = time.monotonic()
        if now >= t0 + a.warmup + a.seconds:
            break
        if next_sample > now:
            time.sleep(next_sample - now)
        next_sample += 1 / a.hz
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                doc = json.load(r)
        except OSError as e:
            print("status.json: %s" % e, file=sys.stderr)
            continue
        by_name = {m["name"]: m for m in doc["members"]}
        counts = [by_name[n]["listeners"][a.listener]["sessions_current"] for n in names]
        total = sum(counts)
        spreads.append(max(counts) - min(counts))
        mean = total / len(counts)
        cvs.append(statistics.pstdev(counts) / mean if mean > 0 else 0.0)
        totals.append(total)
        peaks.append(max(counts) / mean if mean > 0 else 0.0)
    stop.set()
    for t in threads:
        t.join(timeout=a.long_max + 6)
    spreads_sorted = sorted(spreads)
    p95 = spreads_sorted[min(len(spreads_sorted) - 1, int(0.95 * len(spreads_sorted)))] if spreads else float("nan")
    print("\t".join(str(x) for x in (
        len(spreads),
        "%.1f" % statistics.mean(totals),
        "%.2f" % statistics.mean(spreads),
        p95,
        max(spreads),
        "%.3f" % statistics.mean(cvs),
        "%.3f" % statistics.mean(peaks),
        done["long"], done["short"], done["errors"])))


if __name__ == "__main__":
    main()
