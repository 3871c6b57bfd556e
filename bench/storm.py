#!/usr/bin/python3
"""A connection storm: N PostgreSQL startups spread evenly over WINDOW seconds
against one port, each held once ready until every attempt has ended. Prints
one JSON object: ready (ReadyForQuery), refused by SQLSTATE (ErrorResponse's
C field, e.g. 53300), reset (ECONNRESET), refused (ECONNREFUSED), closed
without an answer, timed out (no answer within --timeout), and the time the
last attempt took.

  storm.py --port P [--count 5000] [--window 1] [--timeout 10]
"""

import argparse
import asyncio
import json
import resource
import struct
import time


def startup():
    body = struct.pack("!I", 196608) + b"user\0bench\0database\0bench\0\0"
    return struct.pack("!I", len(body) + 4) + body


def settle(results, hold):
    """One attempt has its outcome (ready, refused, failed): when all have, the ready ones may go."""
    results["done"] += 1
    if results["done"] == results["attempted"]:
        hold.set()


async def attempt(port, delay, timeout, results, hold):
    settled = False
    await asyncio.sleep(delay)
    t0 = time.time()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(startup())
        await writer.drain()
        deadline = t0 + timeout
        while True:
            head = await asyncio.wait_for(reader.readexactly(5), max(0.01, deadline - time.time()))
            kind, length = head[:1], struct.unpack("!I", head[1:])[0]
            body = await asyncio.wait_for(reader.readexactly(length - 4), max(0.01, deadline - time.time()))
            if kind == b"Z":
                results["ready"] += 1
                results["slowest_ready_s"] = max(results["slowest_ready_s"], time.time() - t0)
                settled = True
                settle(results, hold)  # ready counts as ended: held open until every attempt has
                await hold.wait()
                writer.write(b"X\0\0\0\4")
                break
            if kind == b"E":
                fields = dict((f[:1].decode(), f[1:].decode(errors="replace")) for f in body.split(b"\0") if f)
                key = "sqlstate_" + fields.get("C", "?")
                results[key] = results.get(key, 0) + 1
                break
    except asyncio.TimeoutError:
        results["timeout"] += 1
    except ConnectionResetError:
        results["reset"] += 1
    except ConnectionRefusedError:
        results["refused"] += 1
    except asyncio.IncompleteReadError:
        results["closed"] += 1
    except OSError as e:
        key = "oserror_" + str(e.errno)
        results[key] = results.get(key, 0) + 1
    finally:
        if not settled:
            settle(results, hold)
        if writer is not None:
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {"attempted": args.count, "ready": 0, "timeout": 0, "reset": 0, "refused": 0, "closed": 0, "done": 0,
               "slowest_ready_s": 0.0}
    hold = asyncio.Event()
    t0 = time.time()
    await asyncio.gather(*(attempt(args.port, i * args.window / args.count, args.timeout, results, hold)
                           for i in range(args.count)))
    results["elapsed_s"] = round(time.time() - t0, 2)
    results["slowest_ready_s"] = round(results["slowest_ready_s"], 2)
    del results["done"]
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
