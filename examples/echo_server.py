"""An echo server on trio_uring, and (with --demo) a client that checks it over loopback.

python examples/echo_server.py [--port 8000]     serve until Ctrl-C
python examples/echo_server.py --demo            serve on a free port, run 64 clients, exit
                                                 (--rounds N: round trips per client, 200)

The handler is ordinary trio code: trio_uring.serve_tcp hands it a trio.abc.HalfCloseableStream.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import trio

import trio_uring


async def echo(stream: trio_uring.UringSocketStream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def demo(rounds: int) -> None:
    async with trio.open_nursery() as n:
        listeners = await n.start(trio_uring.serve_tcp, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        ok: list[bool] = []
        t0 = time.perf_counter()

        async def client(i: int) -> None:
            async with await trio_uring.open_tcp_stream("127.0.0.1", port) as s:
                sent, got = hashlib.sha256(), hashlib.sha256()
                for r in range(rounds):
                    msg = os.urandom(1 + (i * 7 + r) % 4000)
                    sent.update(msg)
                    await s.send_all(msg)
                    need = len(msg)
                    while need:
                        chunk = await s.receive_some(need)
                        got.update(chunk)
                        need -= len(chunk)
                ok.append(sent.digest() == got.digest())

        async with trio.open_nursery() as clients:
            for i in range(64):
                clients.start_soon(client, i)
        dt = time.perf_counter() - t0
        stats = trio.lowlevel.current_statistics().io_statistics
        print(
            f"echo over {trio_uring.backend()}: 64 clients x {rounds} round trips in {dt:.2f}s "
            f"({64 * rounds / dt:,.0f}/s), {stats.enter_calls} io_uring_enter calls, "
            f"all bytes verified: {all(ok) and len(ok) == 64}"
        )
        n.cancel_scope.cancel()
        if not (all(ok) and len(ok) == 64):
            raise SystemExit("echo returned different bytes")


async def serve(port: int) -> None:
    print(f"echo server on port {port} ({trio_uring.backend()})")
    await trio_uring.serve_tcp(echo, port)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    trio_uring.run(demo, args.rounds) if args.demo else trio_uring.run(serve, args.port)
