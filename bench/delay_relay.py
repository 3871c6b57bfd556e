#!/usr/bin/python3
"""A TCP relay on loopback that delays what it forwards, for bench/chaos.sh
(this machine's kernel has no netem): every chunk read from the client is
written to the target --up seconds later, every chunk from the target to the
client --down seconds later, order kept. chaos.sh points the proxies' new
connections at it with an nftables redirect.

  delay_relay.py --listen PORT --target PORT [--up 0.3] [--down 0]
"""

import argparse
import asyncio
import time


async def pipe(reader, writer, delay):
    queue = asyncio.Queue()

    async def read():
        try:
            while chunk := await reader.read(65536):
                await queue.put((time.monotonic() + delay, chunk))
        except OSError:
            pass
        await queue.put((time.monotonic() + delay, None))

    async def write():
        try:
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if chunk is None:
                    writer.write_eof() if writer.can_write_eof() else writer.close()
                    return
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass

    await asyncio.gather(read(), write())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--up", type=float, default=0.0)
    ap.add_argument("--down", type=float, default=0.0)
    args = ap.parse_args()

    async def handle(cr, cw):
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", args.target)
        except OSError:
            cw.close()
            return
        try:
            await asyncio.gather(pipe(cr, tw, args.up), pipe(tr, cw, args.down))
        finally:
            cw.close()
            tw.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
