"""UringSocketStream against trio's own stream conformance suite, plain and clogged,
under both integrations (as trio tests its SocketStream)."""

from __future__ import annotations

import socket as stdsocket
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream
from trio_uring.socket import from_stdlib_socket


async def stream_maker() -> tuple[UringSocketStream, UringSocketStream]:
    a, b = stdsocket.socketpair()
    return UringSocketStream(from_stdlib_socket(a)), UringSocketStream(from_stdlib_socket(b))


async def fill_stream(s: UringSocketStream) -> None:
    async def sender() -> None:
        while True:
            await s.send_all(b"x" * 10000)

    async def waiter(nursery: trio.Nursery) -> None:
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(waiter, nursery)


async def clogged_stream_maker() -> tuple[UringSocketStream, UringSocketStream]:
    left, right = await stream_maker()
    await fill_stream(left)
    await fill_stream(right)
    return left, right


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_check_half_closeable_stream(runner: Callable[..., Any]) -> None:
    async def main() -> None:
        await trio.testing.check_half_closeable_stream(stream_maker, clogged_stream_maker)

    runner(main)


@pytest.mark.parametrize("how", ["run", "configure"])
def test_check_half_closeable_stream_with_io_uring_sends(how: str) -> None:
    """send="ring": every send is an io_uring SEND op, submitted once per pass."""

    async def main() -> None:
        if how == "configure":
            trio_uring.socket.configure_send("ring")
        assert trio_uring.lowlevel.current_driver().send_ring
        await trio.testing.check_half_closeable_stream(stream_maker, clogged_stream_maker)

    if how == "run":
        trio_uring.run(main, send="ring")
    else:
        trio.run(main)


def test_send_path_is_per_run() -> None:
    """A run's send path is its own: the next run starts from the default again."""

    async def check(expected: bool) -> None:
        assert trio_uring.lowlevel.current_driver().send_ring is expected

    trio_uring.run(check, True, send="ring")
    trio_uring.run(check, False)


@pytest.mark.parametrize("bad", ["Ring", "", None, 1, b"ring"])
def test_send_path_refuses_unknown_values(bad: Any) -> None:
    with pytest.raises(ValueError, match="send must be 'direct' or 'ring'"):
        trio_uring.run(trio.sleep, 0, send=bad)

    async def main() -> None:
        trio_uring.socket.configure_send(bad)

    with pytest.raises(ValueError, match="send must be 'direct' or 'ring'"):
        trio.run(main)
