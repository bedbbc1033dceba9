"""Byte-exact bulk transfers in both directions at once over many connections."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_uring
from trio_uring import UringSocketStream

MiB = 1 << 20
BLOCK = os.urandom(MiB)


def payload(conn: int, direction: int, nblocks: int) -> Any:
    """Distinct 1 MiB blocks: a header (connection, direction, index) on shared random bytes."""
    for k in range(nblocks):
        yield (conn.to_bytes(4, "big") + direction.to_bytes(4, "big") + k.to_bytes(8, "big")
               + BLOCK[16:])


def expected(conn: int, direction: int, nblocks: int) -> bytes:
    h = hashlib.sha256()
    for block in payload(conn, direction, nblocks):
        h.update(block)
    return h.digest()


async def pump(stream: UringSocketStream, conn: int, direction: int, nblocks: int) -> None:
    for block in payload(conn, direction, nblocks):
        await stream.send_all(block)
    await stream.send_eof()


async def drain(stream: UringSocketStream) -> bytes:
    h = hashlib.sha256()
    while chunk := await stream.receive_some(1 << 18):
        h.update(chunk)
    return h.digest()


@pytest.mark.parametrize(("runner", "total_mib"), [(trio_uring.run, 256), (trio.run, 64)],
                         ids=["trio_uring.run-256MiB", "trio.run-64MiB"])
def test_bulk_both_directions_byte_exact(runner: Callable[..., Any], total_mib: int) -> None:
    conns = 16
    per_conn = total_mib // conns
    got_up: dict[int, bytes] = {}
    got_down: dict[int, bytes] = {}

    async def handler(stream: UringSocketStream) -> None:
        async with stream, trio.open_nursery() as n:
            header = b""
            while len(header) < 4:
                header += await stream.receive_some(4 - len(header))
            conn = int.from_bytes(header, "big")
            n.start_soon(pump, stream, conn, 1, per_conn)
            got_up[conn] = await drain(stream)

    async def client(port: int, conn: int) -> None:
        stream = await trio_uring.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as n:
            await stream.send_all(conn.to_bytes(4, "big"))
            n.start_soon(pump, stream, conn, 0, per_conn)
            got_down[conn] = await drain(stream)

    async def main() -> None:
        async with trio.open_nursery() as n:
            listeners = await n.start(trio_uring.serve_tcp, handler, 0)
            port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as clients:
                for c in range(conns):
                    clients.start_soon(client, port, c)
            with trio.fail_after(120):  # the handlers finish their side too
                while len(got_up) < conns:
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()

    runner(main)
    for c in range(conns):
        assert got_up[c] == expected(c, 0, per_conn), f"client->server stream {c} differs"
        assert got_down[c] == expected(c, 1, per_conn), f"server->client stream {c} differs"
