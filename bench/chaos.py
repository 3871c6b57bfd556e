#!/usr/bin/python3
"""One chaos scenario's load and verdict, through several proxies at once.

For each proxy (--proxy NAME:WRITE_PORT:READ_PORT), the same load runs for the
whole scenario:
  * --sessions long-lived sessions on the write port, each inserting a row
    every 100 ms (a cut session reconnects at its next tick);
  * a new write connection every 200 ms (one INSERT, then close);
  * a new read connection every 200 ms (one SELECT, then close);
  * `pgbench -n -S -c 8 -j 2 -R RATE` on the read port.
Every operation is bounded (--op-timeout, psycopg2's asynchronous mode, so a
member that does not answer ends as a timeout, not a hang).

After --before seconds, --fault runs (bash -c), then --hold seconds later
--heal, then the load goes on --after seconds. The leader key is watched
(etcdctl watch) to know who held the lock at each moment.

Prints one JSON line per proxy: sessions cut, failed writes and reads (with
the first error texts), the longest gap without a successful write and read,
acknowledged writes missing afterwards (read back from the leader once the
cluster is healthy again), writes acknowledged by a member that did not hold
the leader key at the time, operations that timed out (stuck), pgbench's
transactions and aborted clients.

  chaos.py --lab lab/cluster.sh --proxy patroxy:6000:6001 --proxy haproxy:7500:7501
           --fault CMD --hold S --heal CMD [--before 5] [--after 20]

Also the soak's writer: --fault '' --hold DURATION runs the load alone.
"""

import argparse
import json
import os
import re
import select
import subprocess
import sys
import threading
import time

import psycopg2
import psycopg2.extensions as ext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover import key_watcher, lab_env  # noqa: E402


def dsn(env, port, timeout=3, host=None):
    # The bench user (trust on loopback): connections cost a fork, not SCRAM.
    # host: a proxy's address (a VIP); the lab's members otherwise.
    return (f"host={host or env['LAB_HOST']} port={port} user={env['LAB_BENCH_USER']} dbname={env['LAB_DATABASE']} "
            f"sslmode=disable connect_timeout={timeout}")


class Timeout(Exception):
    pass


def wait(conn, deadline):
    """Drives an asynchronous psycopg2 connection until its operation is done or the deadline passes."""
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        left = deadline - time.time()
        if left <= 0:
            raise Timeout("no answer within the operation timeout")
        fd = conn.fileno()
        if state == ext.POLL_READ:
            select.select([fd], [], [], left)
        elif state == ext.POLL_WRITE:
            select.select([], [fd], [], left)


def connect(env, port, timeout, host=None):
    deadline = time.time() + timeout
    c = psycopg2.connect(dsn(env, port, timeout=max(2, int(timeout)), host=host), async_=1)
    try:
        wait(c, deadline)
    except BaseException:
        c.close()
        raise
    return c


def execute(conn, sql, args, timeout):
    deadline = time.time() + timeout
    cur = conn.cursor()
    cur.execute(sql, args)
    wait(conn, deadline)
    return cur.fetchone()


def err_text(e):
    s = str(e).strip()
    return s.splitlines()[0][:160] if s else type(e).__name__


class Load:
    """The load through one proxy, and what it saw."""

    def __init__(self, env, name, write_port, read_port, args, host="127.0.0.1"):
        self.env, self.name, self.write_port, self.read_port, self.args = env, name, write_port, read_port, args
        self.host = host
        self.table = f"chaos_{name.replace('-', '_')}"
        self.lock = threading.Lock()
        self.next_id = 0
        self.writes = []   # (id, start, end, ok, member port or error, kind)
        self.reads = []    # (start, end, ok, member port or error)
        self.cuts = []     # (session, time, error): every error of a long-lived session, reconnects included
        self.lost_sessions = []  # (session, time, error): an established session that failed
        self.stuck = 0     # operations that timed out
        self.threads = []
        self.pgbench = None

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def record(self, lst, row):
        with self.lock:
            lst.append(row)

    def insert(self, conn):
        n = self.new_id()
        start = time.time()
        port = execute(conn, f"INSERT INTO {self.table} (id) VALUES (%s) RETURNING inet_server_port()", (n,), self.args.op_timeout)[0]
        return n, start, port

    def long_lived(self, i, stop):
        c = None
        next_at = time.time()
        while not stop.is_set():
            n, start = None, time.time()
            try:
                if c is None:
                    c = connect(self.env, self.write_port, self.args.op_timeout, self.host)
                n, start, port = self.insert(c)
                self.record(self.writes, (n, start, time.time(), True, port, "session"))
            except (psycopg2.Error, Timeout, OSError) as e:
                if isinstance(e, Timeout):
                    self.stuck += 1
                if n is None:
                    n = self.new_id()  # the connect failed: an attempt all the same
                self.record(self.writes, (n, start, time.time(), False, err_text(e), "session"))
                self.record(self.cuts, (i, time.time(), err_text(e)))
                if c is not None:
                    self.record(self.lost_sessions, (i, time.time(), err_text(e)))
                    c.close()
                c = None
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.time()))
        if c is not None:
            c.close()

    def one_write(self):
        n, start = self.new_id(), time.time()
        try:
            c = connect(self.env, self.write_port, self.args.op_timeout, self.host)
            try:
                port = execute(c, f"INSERT INTO {self.table} (id) VALUES (%s) RETURNING inet_server_port()", (n,), self.args.op_timeout)[0]
                self.record(self.writes, (n, start, time.time(), True, port, "new"))
            finally:
                c.close()
        except (psycopg2.Error, Timeout, OSError) as e:
            if isinstance(e, Timeout):
                self.stuck += 1
            self.record(self.writes, (n, start, time.time(), False, err_text(e), "new"))

    def one_read(self):
        start = time.time()
        try:
            c = connect(self.env, self.read_port, self.args.op_timeout, self.host)
            try:
                port = execute(c, "SELECT inet_server_port()", None, self.args.op_timeout)[0]
                self.record(self.reads, (start, time.time(), True, port))
            finally:
                c.close()
        except (psycopg2.Error, Timeout, OSError) as e:
            if isinstance(e, Timeout):
                self.stuck += 1
            self.record(self.reads, (start, time.time(), False, err_text(e)))

    def ticker(self, stop, fn):
        """fn in a thread of its own every 200 ms, whether the last one has finished or not (bounded by op-timeout)."""
        next_at = time.time()
        mine = []
        while not stop.is_set():
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            mine.append(t)
            mine = [x for x in mine if x.is_alive()]
            next_at += 0.2
            time.sleep(max(0.0, next_at - time.time()))
        for t in mine:
            t.join(self.args.op_timeout + 5)

    def start(self, stop, total):
        env = {**os.environ, "PGHOST": self.host, "PGUSER": self.env["LAB_BENCH_USER"], "PGDATABASE": self.env["LAB_DATABASE"],
               "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "5"}
        if self.args.pgbench_rate > 0:
            self.pgbench = subprocess.Popen(["pgbench", "-n", "-S", "-c", "8", "-j", "2", "-R", str(self.args.pgbench_rate),
                                             "-T", str(int(total)), "-p", str(self.read_port)],
                                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.threads = [threading.Thread(target=self.long_lived, args=(i, stop)) for i in range(self.args.sessions)]
        self.threads += [threading.Thread(target=self.ticker, args=(stop, self.one_write)),
                         threading.Thread(target=self.ticker, args=(stop, self.one_read))]
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(self.args.op_timeout + 10)
        out = ""
        if self.pgbench:
            try:
                out, _ = self.pgbench.communicate(timeout=self.args.op_timeout + 10)
            except subprocess.TimeoutExpired:
                self.pgbench.kill()
                out, _ = self.pgbench.communicate()
        self.pgbench_out = out


def longest_gap(rows, t0, t1):
    """The longest time within [t0, t1] without a successful operation (by completion time)."""
    ends = sorted(r[1] for r in rows if r[2] and t0 <= r[1] <= t1)
    points = [t0] + ends + [t1]
    return max(b - a for a, b in zip(points, points[1:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab", required=True)
    ap.add_argument("--proxy", action="append", required=True, help="NAME:WRITE_PORT:READ_PORT[:HOST] (HOST: 127.0.0.1)")
    ap.add_argument("--fault", default="")
    ap.add_argument("--heal", default="")
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--before", type=float, default=5.0)
    ap.add_argument("--after", type=float, default=20.0)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--op-timeout", type=float, default=30.0, help="an operation with no answer by then is stuck")
    ap.add_argument("--pgbench-rate", type=int, default=200, help="pgbench -R on the read port (0: none)")
    args = ap.parse_args()
    env = lab_env(args.lab)
    pg_base = int(env["LAB_PG_PORT_BASE"])
    port_member = {pg_base + i: m for i, m in enumerate((env["LAB_MEMBERS"] + " " + env["LAB_SPARE_MEMBERS"]).split())}

    leader = subprocess.run([args.lab, "leader"], capture_output=True, text=True, check=True).stdout.strip()
    loads = []
    with psycopg2.connect(dsn(env, pg_base + int(leader[2:]))) as c, c.cursor() as cur:
        for spec in args.proxy:
            name, w, r, *host = spec.split(":")
            load = Load(env, name, int(w), int(r), args, host[0] if host else "127.0.0.1")
            cur.execute(f"DROP TABLE IF EXISTS {load.table}")
            cur.execute(f"CREATE TABLE {load.table} (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
            loads.append(load)
    c.close()

    key_changes = [(time.time(), leader)]
    stop, watch_stop = threading.Event(), threading.Event()
    watcher = threading.Thread(target=key_watcher, args=(env, watch_stop, key_changes), daemon=True)
    watcher.start()
    time.sleep(0.5)
    total = args.before + args.hold + args.after
    t0 = time.time()
    for load in loads:
        load.start(stop, total + 1)
    time.sleep(args.before)
    fault_at = time.time()
    events = []
    if args.fault:
        p = subprocess.run(["bash", "-c", args.fault], capture_output=True, text=True)
        events.append({"at": round(fault_at - t0, 2), "fault": args.fault, "rc": p.returncode, "err": p.stderr.strip()[-300:]})
    time.sleep(max(0.0, fault_at + args.hold - time.time()))
    heal_at = time.time()
    if args.heal:
        p = subprocess.run(["bash", "-c", args.heal], capture_output=True, text=True)
        events.append({"at": round(heal_at - t0, 2), "heal": args.heal, "rc": p.returncode, "err": p.stderr.strip()[-300:]})
    time.sleep(max(0.0, heal_at + args.after - time.time()))
    t1 = time.time()
    stop.set()
    for load in loads:
        load.join()
    watch_stop.set()
    watcher.join(5)

    # The lock holder at time t, from the watch (None: no key).
    changes = sorted(key_changes)

    def holder_at(t):
        h = changes[0][1]
        for at, v in changes:
            if at > t:
                break
            h = v
        return h

    subprocess.run([args.lab, "wait-healthy", "120"], capture_output=True)
    final_leader = subprocess.run([args.lab, "leader"], capture_output=True, text=True).stdout.strip()
    present = {}
    if final_leader:
        with psycopg2.connect(dsn(env, pg_base + int(final_leader[2:]))) as c, c.cursor() as cur:
            for load in loads:
                cur.execute(f"SELECT id FROM {load.table}")
                present[load.name] = {r[0] for r in cur.fetchall()}
        c.close()

    dump = os.environ.get("CHAOS_DUMP", "/tmp/patroxy-chaos-dump")
    os.makedirs(dump, exist_ok=True)
    for load in loads:
        # Every operation, for a look afterwards: times relative to the start, the lock holder at the end.
        with open(os.path.join(dump, f"{int(t0)}-{load.name}.tsv"), "w") as f:
            f.write(f"# fault_at {fault_at - t0:.3f} heal_at {heal_at - t0:.3f} key_changes {[(round(t - t0, 3), v) for t, v in changes]}\n")
            for w in load.writes:
                f.write(f"write\t{w[0]}\t{w[1] - t0:.3f}\t{w[2] - t0:.3f}\t{w[3]}\t{port_member.get(w[4], w[4])}\t{w[5]}\t{holder_at(w[2])}\n")
            for r in load.reads:
                f.write(f"read\t-\t{r[0] - t0:.3f}\t{r[1] - t0:.3f}\t{r[2]}\t{port_member.get(r[3], r[3])}\t-\t-\n")
    for load in loads:
        ok = [w for w in load.writes if w[3]]
        failed = [w for w in load.writes if not w[3]]
        reads_ok = [r for r in load.reads if r[2]]
        reads_failed = [r for r in load.reads if not r[2]]
        not_leader = [w for w in ok if port_member.get(w[4]) != holder_at(w[2])]
        lost = sorted(w[0] for w in ok if w[0] not in present.get(load.name, set())) if final_leader else None
        errors = {}
        for w in failed:
            errors[w[4]] = errors.get(w[4], 0) + 1
        read_errors = {}
        for r in reads_failed:
            read_errors[r[3]] = read_errors.get(r[3], 0) + 1
        out = load.pgbench_out or ""
        pg_tx = next((re.search(r"processed: (\d+)", line).group(1) for line in out.splitlines()
                      if re.search(r"processed: (\d+)", line)), None)
        pg_aborted = sum(1 for line in out.splitlines() if " aborted " in line and line.lstrip().startswith(("client", "pgbench: error: client")))
        writes_in_fault = [w for w in load.writes if w[1] >= fault_at]
        print(json.dumps({
            "proxy": load.name,
            "leader_before": leader,
            "leader_after": final_leader or None,
            "key_changes": [(round(t - t0, 2), v) for t, v in changes[1:]],
            "events": events,
            "duration_s": round(t1 - t0, 1),
            "sessions_cut": len(load.cuts),
            "sessions_cut_distinct": len({c[0] for c in load.cuts}),
            "established_sessions_cut": len(load.lost_sessions),
            "writes": len(load.writes),
            "writes_failed": len(failed),
            "reads": len(load.reads),
            "reads_failed": len(reads_failed),
            "write_gap_s": round(longest_gap([(w[1], w[2], w[3]) for w in load.writes], fault_at, t1), 2),
            "read_gap_s": round(longest_gap([(r[0], r[1], r[2]) for r in load.reads], fault_at, t1), 2),
            "writes_after_fault": len(writes_in_fault),
            "acked_writes_lost": None if lost is None else len(lost),
            "acked_by_non_leader": len(not_leader),
            "non_leader_members": sorted({port_member.get(w[4], str(w[4])) for w in not_leader}),
            "stuck_ops": load.stuck,
            "pgbench_tx": int(pg_tx) if pg_tx and pg_tx.isdigit() else None,
            "pgbench_aborted": pg_aborted,
            "write_errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:4]),
            "read_errors": dict(sorted(read_errors.items(), key=lambda kv: -kv[1])[:4]),
            "first_cut_at_s": round(load.cuts[0][1] - fault_at, 2) if load.cuts else None,
        }), flush=True)


if __name__ == "__main__":
    main()
