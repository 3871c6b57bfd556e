#!/usr/bin/env python3
"""A flood on a patroxy stats port for the VIP test: 1,000 idle connections,
slow partial requests, oversized headers and a storm of /status.json, for
SECONDS. Prints what it did. Every loop is bounded in count and time.

    stats_flood.py HOST PORT SECONDS
"""
import socket
import sys
import threading
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds
counts = {"idle": 0, "partial": 0, "oversized": 0, "status": 0, "refused": 0}
lock = threading.Lock()


def connect():
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        return s
    except OSError:
        with lock:
            counts["refused"] += 1
        s.close()
        return None


idle = []
for _ in range(1000):
    s = connect()
    if s is not None:
        idle.append(s)
        counts["idle"] += 1


def attacker(kind):
    for _ in range(100000):
        if time.monotonic() >= deadline:
            return
        s = connect()
        if s is None:
            continue
        try:
            if kind == "partial":
                s.sendall(b"GET /status.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                time.sleep(0.05)
            elif kind == "oversized":
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
            else:
                s.sendall(b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                for _ in range(1000):
                    if not s.recv(65536):
                        break
            with lock:
                counts[kind] += 1
        except OSError:
            pass
        finally:
            s.close()


threads = [threading.Thread(target=attacker, args=(k,)) for k in ("partial", "oversized", "status", "status")]
for t in threads:
    t.start()
for t in threads:
    t.join(seconds + 5)
for s in idle:
    s.close()
print(" ".join(f"{k}={v}" for k, v in counts.items()))
