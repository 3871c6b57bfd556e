#!/usr/bin/python3
"""Workload 8: a writer opens a fresh connection through a write port every
100 ms and inserts one row (and --sessions long-lived sessions write every
100 ms); meanwhile the lab cluster switches over, loses its leader to SIGKILL,
or has its leader's Patroni frozen (SIGSTOP) for --freeze seconds below ttl.
Prints one JSON object: the window without successful writes, failed attempts
(with the first errors), long-lived sessions cut, how long after Patroni's
promotion (from the cluster's /history) writes resumed, how long after the
leader key changed (an etcd watch of the key) the proxy routed to the new
leader (its stats: patroxy's /status.json, HAProxy's CSV, polled every 10 ms),
acknowledged writes missing afterwards, and writes acknowledged by a member
after it stopped being the leader.

  failover.py --port P --event switchover|kill|freeze --lab lab/cluster.sh
              [--stats patroxy:URL|haproxy:URL] [--sessions N] [--before 3] [--after 12]

Runs with Debian's python3 and python3-psycopg2 (Patroni's own dependency).
"""

import argparse
import base64
import csv
import datetime
import io
import json
import os
import subprocess
import threading
import time
import urllib.request

import psycopg2


def lab_env(lab):
    """lab/lab.env as the lab script sees it."""
    env_file = os.path.join(os.path.dirname(os.path.abspath(lab)), "lab.env")
    out = subprocess.run(["bash", "-c", 'set -a; . "$1"; env -0', "-", env_file], capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def dsn(env, port, timeout=3):
    return (f"host={env['LAB_HOST']} port={port} user={env['LAB_SUPERUSER']} password={env['LAB_SUPERUSER_PASSWORD']} "
            f"dbname={env['LAB_DATABASE']} sslmode=disable connect_timeout={timeout}")


def patroni_history(env):
    base = int(env["LAB_API_PORT_BASE"])
    for i in range(3):
        try:
            with urllib.request.urlopen(f"http://{env['LAB_HOST']}:{base + i}/history", timeout=2) as r:
                return json.load(r)
        except OSError:
            continue
    return []


def key_watcher(env, stop, changes):
    """Records (time, leader or None) for each change of the leader key, as an etcd watch sees it."""
    prefix = f"{env['LAB_NAMESPACE'].rstrip('/')}/{env['LAB_SCOPE']}/leader"
    endpoints = ",".join(f"{env['LAB_HOST']}:{int(env['LAB_ETCD_PORT_BASE']) + 2 * i}" for i in range(3))
    p = subprocess.Popen(["etcdctl", f"--endpoints={endpoints}", "watch", prefix, "-w", "json"],
                         env={**os.environ, "ETCDCTL_API": "3"}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    def reader():
        for line in p.stdout:
            try:
                for e in json.loads(line).get("Events", []):
                    value = base64.b64decode(e["kv"].get("value", "")).decode() if e.get("type", 0) == 0 else None
                    changes.append((time.time(), value))
            except (ValueError, KeyError):
                continue
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    stop.wait()
    p.terminate()
    t.join(2)


def routed_leader(kind, url):
    """The member the proxy routes writes to now, or None."""
    with urllib.request.urlopen(url, timeout=1) as r:
        body = r.read().decode()
    if kind == "patroxy":
        return json.loads(body)["cluster"]["leader"]
    for row in csv.DictReader(io.StringIO(body)):
        if row.get("# pxname") == "master" and row.get("svname") not in ("FRONTEND", "BACKEND") and row.get("status") == "UP":
            return row["svname"]
    return None


def routing_poller(kind, url, stop, changes):
    """Records (time, routed leader) at each change, polling every 10 ms."""
    last = object()
    while not stop.is_set():
        try:
            now = routed_leader(kind, url)
        except (OSError, ValueError, KeyError):
            now = last
        if now != last:
            changes.append((time.time(), now))
            last = now
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--event", choices=["switchover", "kill", "freeze"], required=True)
    ap.add_argument("--stats", help="patroxy:URL of /status.json or haproxy:URL of the stats CSV, for key-to-routing")
    ap.add_argument("--sessions", type=int, default=0, help="long-lived sessions writing every 100 ms besides")
    ap.add_argument("--freeze", type=float, default=15.0, help="seconds the leader's Patroni stays frozen (freeze)")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--before", type=float, default=3.0)
    ap.add_argument("--after", type=float, help="seconds to go on writing after the event (12 for a switchover, 20 after SIGKILL: Patroni's ttl runs out first)")
    args = ap.parse_args()
    if args.after is None:
        args.after = {"switchover": 12.0, "kill": 20.0, "freeze": 3.0}[args.event]
    env = lab_env(args.lab)
    pg_base = int(env["LAB_PG_PORT_BASE"])

    old_leader = subprocess.run([args.lab, "leader"], capture_output=True, text=True, check=True).stdout.strip()
    old_port = pg_base + int(old_leader[2:])
    with psycopg2.connect(dsn(env, old_port)) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS failover_probe (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        cur.execute("TRUNCATE failover_probe")
    history_before = len(patroni_history(env))

    attempts = []  # (id, start, end, ok, member port or error)
    stop = threading.Event()

    def writer():
        n = 0
        next_at = time.time()
        while not stop.is_set():
            n += 1
            start = time.time()
            try:
                c = psycopg2.connect(dsn(env, args.port, timeout=10))
                try:
                    c.autocommit = True
                    with c.cursor() as cur:
                        cur.execute("INSERT INTO failover_probe (id) VALUES (%s) RETURNING inet_server_port()", (n,))
                        port = cur.fetchone()[0]
                    attempts.append((n, start, time.time(), True, port))
                finally:
                    c.close()
            except psycopg2.Error as e:
                attempts.append((n, start, time.time(), False, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.time()))

    cut = []  # (session, time, error) for every long-lived session that lost its connection or a write

    def long_lived(i):
        c = None
        n = 0
        while not stop.is_set():
            try:
                if c is None:
                    c = psycopg2.connect(dsn(env, args.port, timeout=10))
                    c.autocommit = True
                with c.cursor() as cur:
                    n += 1
                    cur.execute("SELECT 1")
            except psycopg2.Error as e:
                cut.append((i, time.time(), str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass
                c = None
            time.sleep(0.1)
        if c is not None:
            c.close()

    key_changes, routing_changes = [], []
    watchers = [threading.Thread(target=key_watcher, args=(env, stop, key_changes), daemon=True)]
    if args.stats:
        kind, url = args.stats.split(":", 1)
        watchers.append(threading.Thread(target=routing_poller, args=(kind, url, stop, routing_changes), daemon=True))
    for w in watchers:
        w.start()
    threads = [threading.Thread(target=writer)] + [threading.Thread(target=long_lived, args=(i,)) for i in range(args.sessions)]
    for t in threads:
        t.start()
    time.sleep(args.before)
    event_at = time.time()
    if args.event == "freeze":
        subprocess.run([args.lab, "freeze-patroni", old_leader], capture_output=True, text=True)
        time.sleep(args.freeze)
        subprocess.run([args.lab, "thaw-patroni", old_leader], capture_output=True, text=True)
    else:
        subprocess.run([args.lab, "switchover" if args.event == "switchover" else "kill-leader"], capture_output=True, text=True)
    time.sleep(args.after)
    stop.set()
    for t in threads + watchers:
        t.join(30)

    # Promotion time: the newest history entry (timestamp of the new leader taking over).
    history = patroni_history(env)
    promoted_at = None
    new_leader = None
    if len(history) > history_before:
        entry = history[-1]
        promoted_at = datetime.datetime.fromisoformat(entry[3]).timestamp()
        new_leader = entry[4] if len(entry) > 4 else None
    if new_leader is None:
        new_leader = subprocess.run([args.lab, "leader"], capture_output=True, text=True).stdout.strip() or None

    ok = [a for a in attempts if a[3]]
    failed = [a for a in attempts if not a[3]]
    # The window: from the last success before the first failure after the
    # event (or the event) to the first success from the new leader.
    new_port = pg_base + int(new_leader[2:]) if new_leader else None
    first_new = next((a for a in ok if a[4] == new_port and a[1] >= event_at - 1), None)
    last_old = max((a[2] for a in ok if a[4] == old_port), default=event_at)
    window = (first_new[2] - last_old) if first_new else None
    resumed_after_promotion = (first_new[2] - promoted_at) if first_new and promoted_at else None
    demoted_acks = [a for a in ok if a[4] == old_port and promoted_at and a[2] > promoted_at]

    # Acknowledged writes present afterwards (read from the new leader).
    lost = None
    if new_port:
        with psycopg2.connect(dsn(env, new_port)) as c, c.cursor() as cur:
            cur.execute("SELECT id FROM failover_probe")
            present = {r[0] for r in cur.fetchall()}
        lost = sorted(a[0] for a in ok if a[0] not in present)

    # The leader key's change to the new leader, and the proxy's routing to it.
    key_at = next((t for t, v in key_changes if v == new_leader and t >= event_at - 0.5), None) if new_leader != old_leader else None
    routed_at = next((t for t, v in routing_changes if v == new_leader and t >= event_at - 0.5), None) if new_leader != old_leader else None

    errors = {}
    for a in failed:
        errors[a[4]] = errors.get(a[4], 0) + 1
    print(json.dumps({
        "event": args.event,
        "port": args.port,
        "old_leader": old_leader,
        "new_leader": new_leader,
        "attempts": len(attempts),
        "succeeded": len(ok),
        "failed": len(failed),
        "window_s": window,
        "promotion_after_event_s": (promoted_at - event_at) if promoted_at else None,
        "resumed_after_promotion_s": resumed_after_promotion,
        "acked_by_demoted_member": len(demoted_acks),
        "acked_writes_lost": None if lost is None else len(lost),
        "key_to_routing_s": (routed_at - key_at) if key_at and routed_at else None,
        "sessions": args.sessions,
        "sessions_cut": len({c[0] for c in cut}),
        "session_errors": len(cut),
        "errors": errors,
    }))


if __name__ == "__main__":
    main()
