"""Helpers shared by the test suites: runners and connected stream pairs."""

from __future__ import annotations

import socket as stdsocket
from collections.abc import Callable
from typing import Any

from trio_uring import UringSocketStream
from trio_uring.socket import from_stdlib_socket

Runner = Callable[..., Any]


def uring_pair() -> tuple[UringSocketStream, UringSocketStream]:
    """Two connected io_uring streams over a Unix socketpair."""
    a, b = stdsocket.socketpair()
    return UringSocketStream(from_stdlib_socket(a)), UringSocketStream(from_stdlib_socket(b))


def tcp_pair() -> tuple[UringSocketStream, UringSocketStream]:
    """A loopback TCP connection as two io_uring streams (zcrx receives TCP only)."""
    with stdsocket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        c = stdsocket.create_connection(lsock.getsockname())
        s, _ = lsock.accept()
    return UringSocketStream(from_stdlib_socket(c)), UringSocketStream(from_stdlib_socket(s))


async def receive_exactly(stream: Any, n: int, *, timeout: float = 5, max_bytes: int | None = None) -> bytes:
    """Read until ``n`` bytes came (or the end of stream), failing after ``timeout`` seconds."""
    import trio  # noqa: PLC0415 - the helpers above need no trio

    got = bytearray()
    with trio.fail_after(timeout):
        while len(got) < n:
            data = await stream.receive_some(max_bytes)
            if not data:
                break
            got += data
    return bytes(got)


def copy_bufs(rx: Any) -> Any:
    """The buffer ring of a ``copy``-mode receiver (its source's)."""
    from trio_uring.zerocopy._sources import CopySource  # noqa: PLC0415 - only tests that need it

    assert isinstance(rx._source, CopySource), rx._source
    return rx._source.bufs


def zcrx_ifq(rx: Any) -> Any:
    """The interface queue of a ``zcrx`` or ``zcrx-nodev`` receiver (its source's)."""
    from trio_uring.zerocopy._sources import ZcrxSource  # noqa: PLC0415 - only tests that need it

    assert isinstance(rx._source, ZcrxSource), rx._source
    return rx._source.ifq
