"""What pytest-trio users get: io_uring ops in ordinary async tests, and the io_uring IO
manager for a test through ``@pytest.mark.trio(run=trio_uring.run)``."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import lowlevel as ll


async def test_ops_in_pytest_trios_default_runner() -> None:
    assert trio_uring.backend() == "epoll"
    a, b = socket.socketpair()
    with a, b:
        buf = bytearray(8)
        async with trio.open_nursery() as n:

            async def recv() -> None:
                assert await ll.recv_into(a, buf) == 3

            n.start_soon(recv)
            await trio.testing.wait_all_tasks_blocked()
            await ll.send(b, b"abc")
        assert buf[:3] == b"abc"


async def test_ops_with_autojump_clock(autojump_clock: trio.testing.MockClock) -> None:
    a, b = socket.socketpair()
    with a, b:
        with trio.move_on_after(1000) as cs:
            await ll.recv_into(a, bytearray(1))  # nothing arrives: the clock jumps
        assert cs.cancelled_caught


@pytest.mark.trio(run=trio_uring.run)
async def test_whole_test_on_the_io_uring_manager() -> None:
    assert trio_uring.backend() == "io_uring"
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as n:

        async def echo(stream: trio.SocketStream) -> None:
            async with stream:
                async for chunk in stream:
                    await stream.send_all(chunk)

        await n.start(trio.serve_listeners, echo, listeners)
        async with await trio.open_tcp_stream("127.0.0.1", port) as c:
            await c.send_all(b"stock trio sockets on io_uring readiness")
            got = b""
            while len(got) < 40:
                got += await c.receive_some()
            assert got == b"stock trio sockets on io_uring readiness"
        n.cancel_scope.cancel()
