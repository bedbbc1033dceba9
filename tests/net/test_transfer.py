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
        yield (conn.to_bytes(4, "big") + direction.to_bytes(4, "big") + k.to_bytes(8, "big") + BLOCK[16:])


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


@pytest.mark.parametrize(
    ("runner", "total_mib"),
    [(trio_uring.run, 256), (trio.run, 64)],
    ids=["trio_uring.run-256MiB", "trio.run-64MiB"],
)
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


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_bulk_and_message_phases_keep_every_byte_in_order(runner: Callable[..., Any]) -> None:
    """Large writes switch the receiver to plain recv calls, small ones back to the ring."""
    big = [os.urandom(64 * 1024) for _ in range(64)]
    small = [i.to_bytes(2, "big") * 5 for i in range(64)]
    phases = [big, small, big, small]
    seen_bulk = []

    async def main() -> None:
        a, b = trio_uring.socket.socketpair()
        tx, rx = UringSocketStream(a), UringSocketStream(b)
        got = bytearray()

        async def sender() -> None:
            async with tx:
                for phase in phases:
                    for chunk in phase:
                        await tx.send_all(chunk)
                        if len(chunk) < 100:
                            await trio.sleep(0.001)  # one message at a time: the receiver runs dry
                await tx.send_eof()

        async with rx, trio.open_nursery() as n:
            n.start_soon(sender)
            with trio.fail_after(30):
                while data := await rx.receive_some(65536):
                    got.extend(data)
                    seen_bulk.append(rx.socket._rx.bulk if rx.socket._rx is not None else 0)
                    if len(got) % 7 == 0:
                        await trio.sleep(0)  # a consumer that sometimes lags
        assert bytes(got) == b"".join(b"".join(p) for p in phases)

    runner(main)
    assert max(seen_bulk) > 0, "the big phases never switched to plain recv calls"
    assert seen_bulk[-2] == 0, "the small phase at the end did not switch back"


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_cancelled_bulk_wait_loses_nothing(runner: Callable[..., Any]) -> None:
    async def main() -> None:
        a, b = trio_uring.socket.socketpair()
        tx, rx = UringSocketStream(a), UringSocketStream(b)
        async with tx, rx:
            block = os.urandom(256 * 1024)
            async with trio.open_nursery() as n:
                n.start_soon(tx.send_all, block)
                got = bytearray()
                while len(got) < len(block):
                    got += await rx.receive_some(65536)
            assert got == block and rx.socket._rx is not None and rx.socket._rx.bulk
            for _ in range(3):  # cancel the receiver while it waits for readability
                with trio.move_on_after(0.01) as cs:
                    await rx.receive_some(65536)
                assert cs.cancelled_caught
            await tx.send_all(b"after")
            assert await rx.receive_some(65536) == b"after"

    runner(main)


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_recv_into_through_every_phase(runner: Callable[..., Any]) -> None:
    """recv_into: waiting on an empty socket, queued chunks, then plain reads of a bulk stream."""
    bulk = os.urandom(1 << 20)

    async def main() -> None:
        a, b = trio_uring.socket.socketpair()
        with a, b, trio.fail_after(30):
            buf = bytearray(65536)
            async with trio.open_nursery() as n:
                n.start_soon(a.send, b"first")
                assert await b.recv_into(buf) == 5 and buf[:5] == b"first"  # nothing there at the start
            await a.send(b"x" * 3000)
            await trio.sleep(0.01)
            got = bytearray()
            while len(got) < 3000:
                k = await b.recv_into(buf, 1000)
                got += buf[:k]
            assert got == b"x" * 3000
            got.clear()
            async with trio.open_nursery() as n:
                n.start_soon(_send_all, a, bulk)
                while len(got) < len(bulk):
                    k = await b.recv_into(buf)
                    got += buf[:k]
            assert got == bulk and b._rx is not None and b._rx.bulk

    runner(main)


async def _send_all(sock: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await sock.send(view) :]
