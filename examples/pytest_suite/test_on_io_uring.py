"""A pytest-trio suite that runs on io_uring: the tests are ordinary trio tests.

pytest.ini beside this file switches the trio-uring plugin on (or: pytest --trio-uring).
Every test, its async fixtures and every socket they make then run on io_uring.

    pip install pytest pytest-trio
    cd examples/pytest_suite && python -m pytest -v
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
import trio.testing

import trio_uring
import trio_uring.testing


async def shout(stream: trio.abc.Stream) -> None:
    """The code under test: an echo that upper-cases."""
    async with stream:
        async for data in stream:
            await stream.send_all(data.upper())


@pytest.fixture
async def shout_port(nursery: trio.Nursery) -> AsyncIterator[int]:
    """An async fixture: a server in the test's nursery (pytest-trio's ``nursery`` fixture)."""
    listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), shout, 0)
    yield listeners[0].socket.getsockname()[1]


async def test_the_run_is_on_io_uring() -> None:
    assert trio_uring.backend() == "io_uring"


async def test_trio_code_gets_io_uring_sockets(shout_port: int) -> None:
    # trio.serve_tcp in the fixture and trio.open_tcp_stream here: unchanged trio code
    async with await trio.open_tcp_stream("127.0.0.1", shout_port) as stream:
        assert isinstance(stream.socket, trio_uring.socket.UringSocket)
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"HELLO"


async def test_with_the_plugins_stream_pair(
    uring_stream_pair: tuple[trio.abc.Stream, trio.abc.Stream],
) -> None:
    client, server = uring_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(shout, server)
        await client.send_all(b"pair")
        assert await client.receive_some() == b"PAIR"
        await client.send_eof()


async def test_cancellation_and_the_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    client, server = trio_uring.testing.connected_stream_pair()
    async with client, server:
        with trio.move_on_after(30) as scope:  # a receive the kernel holds, cancelled
            await server.receive_some()
        assert scope.cancelled_caught
        await client.send_all(b"still works")  # nothing was lost or broken by the cancel
        assert await server.receive_some() == b"still works"


async def test_zero_copy_receive(
    uring_stream_pair: tuple[trio.abc.Stream, trio.abc.Stream], zc_receiver: trio_uring.ZeroCopyReceiver
) -> None:
    await uring_stream_pair[0].send_all(b"lease")
    with await zc_receiver.receive() as lease:
        assert bytes(lease.data) == b"lease"
    assert zc_receiver.statistics().mode in ("zcrx", "zcrx-nodev", "copy")
