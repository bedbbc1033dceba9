"""Benchmark servers, one per backend; ``python benchmarks/servers.py BACKEND MODE``.

MODE ``echo`` sends every received chunk back; ``sink`` reads and discards; ``sink-zc``
reads through the ZeroCopyReceiver where the backend has one (``receive_batch``), ``sink-zc-for``
the same with ``async for lease in rx``. Each prints its port on the
first line of stdout once it listens on 127.0.0.1, then serves until killed.

``trio_uring_wN`` serves ``echo`` from N worker processes (``serve_tcp_workers``), worker *i*
pinned to the *i*-th CPU of ``$BENCH_WORKER_CPUS`` (default ``0,1``); it prints the port once
every worker is ready.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import sys
from typing import Any

BACKENDS = ("trio", "trio_uring", "trio_uring_ring", "trio_factory", "asyncio", "uvloop", "uvloop_protocol")


def announce(port: int) -> None:
    print(port, flush=True)


async def echo_handler(stream: Any) -> None:
    """The worker pools' echo: module level, so each worker process can import it by name."""
    import trio

    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


def run_workers(backend: str, mode: str) -> None:
    import trio

    import trio_uring

    if mode != "echo":
        raise SystemExit(f"{backend} serves the echo scenarios only")
    workers = int(backend.rsplit("_w", 1)[1])
    cpus = [int(c) for c in os.environ.get("BENCH_WORKER_CPUS", "0,1").split(",")]
    if len(cpus) < workers:
        raise SystemExit(f"{backend} needs {workers} CPUs in BENCH_WORKER_CPUS, got {cpus}")

    async def main() -> None:
        async with trio.open_nursery() as n:
            pool = await n.start(
                functools.partial(
                    trio_uring.serve_tcp_workers,
                    echo_handler,
                    0,
                    host="127.0.0.1",
                    workers=workers,
                    cpu_affinity=cpus[:workers],
                    grace=0,
                )
            )
            announce(pool.port)

    trio.run(main)


def run_trio(backend: str, mode: str) -> None:
    send = "ring" if backend == "trio_uring_ring" else "direct"  # see the README's options
    if backend == "trio_uring_ring":
        backend = "trio_uring"
    import trio

    import trio_uring

    async def echo(stream: trio.abc.Stream) -> None:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async def sink(stream: trio.abc.Stream) -> None:
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass

    async def sink_zc(stream: trio.abc.Stream) -> None:
        async with trio_uring.open_zc_receiver(stream, mode="copy") as rx:
            while batch := await rx.receive_batch():
                for lease in batch:
                    with lease:
                        lease.data.nbytes  # noqa: B018 - the bytes, used in place

    async def sink_zc_for(stream: trio.abc.Stream) -> None:
        # the loop the README shows first: one lease per receive()
        async with trio_uring.open_zc_receiver(stream, mode="copy") as rx:
            async for lease in rx:
                with lease:
                    lease.data.nbytes  # noqa: B018 - the bytes, used in place

    handler = {"echo": echo, "sink": sink, "sink-zc": sink_zc, "sink-zc-for": sink_zc_for}[mode]

    async def main() -> None:
        if backend == "trio_factory":
            trio_uring.install_socket_factory()
        serve = trio_uring.serve_tcp if backend == "trio_uring" else trio.serve_tcp
        async with trio.open_nursery() as n:
            listeners = await n.start(functools.partial(serve, handler, 0, host="127.0.0.1"))
            announce(listeners[0].socket.getsockname()[1])

    if backend == "trio_uring":
        trio_uring.run(main, send=send)
    else:
        trio.run(main)


def run_asyncio(backend: str, mode: str) -> None:
    mode = "sink" if mode.startswith("sink-zc") else mode
    if backend.startswith("uvloop"):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    class EchoProtocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if mode == "echo":
                self.transport.write(data)  # type: ignore[attr-defined]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := await reader.read(65536):
                if mode == "echo":
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass  # the load generator resets its connections at the end: as the trio servers do
        writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if backend == "uvloop_protocol":
            server = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
        else:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
        announce(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    backend, mode = sys.argv[1], sys.argv[2]
    if re.fullmatch(r"trio_uring_w\d+", backend):
        run_workers(backend, mode)
    elif backend not in BACKENDS:
        raise SystemExit(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}, trio_uring_wN")
    elif backend.startswith("trio"):
        # the ZeroCopyReceiver is trio_uring's; the others run their ordinary sink
        run_trio(backend, mode if backend.startswith("trio_uring") else "sink" if "zc" in mode else mode)
    else:
        run_asyncio(backend, mode)
