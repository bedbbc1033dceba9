"""io_uring operations as trio async functions, on the current run's ring.

Each follows the op layer's cancellation rule: cancelled before the kernel saw it → no
effect; cancelled in flight → the kernel's answer decides (data and fds are never lost).
They work under ``trio_uring.run`` and inside a plain ``trio.run``.
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any

import trio

from .._native import ffi
from ._plain import current_driver
from ._ring import FdLike, _fd_of, readable_cbuf, timespec, writable_cbuf
from ._sockaddr import decode_sockaddr, encode_sockaddr

__all__ = ["accept", "close", "connect", "nop", "poll", "recv_into", "send", "shutdown", "sleep"]


async def nop() -> None:
    """A round trip through the kernel; useful to measure the op path."""
    d = current_driver()
    await d.perform("nop", d.ring.prep_nop)


async def recv_into(fd: FdLike, buf: Any, nbytes: int | None = None, flags: int = 0) -> int:
    """Receive into ``buf``; returns the byte count (0 at EOF)."""
    n = _fd_of(fd)
    cbuf = writable_cbuf(buf)
    d = current_driver()
    prep = functools.partial(d.ring.prep_recv, nbytes=nbytes, flags=flags)
    try:
        return await d.perform("recv", prep, n, cbuf, fd=n, keep=cbuf)
    finally:
        ffi.release(cbuf)  # the op is over (done, or never seen by the kernel): unpin buf


async def send(fd: FdLike, data: Any, flags: int = 0) -> int:
    """Send from ``data``; returns how many bytes the kernel took."""
    n = _fd_of(fd)
    cbuf = readable_cbuf(data)
    d = current_driver()
    prep = functools.partial(d.ring.prep_send, flags=flags | socket.MSG_NOSIGNAL)
    try:
        return await d.perform("send", prep, n, cbuf, len(cbuf), fd=n, keep=cbuf)
    finally:
        ffi.release(cbuf)


async def accept(fd: FdLike) -> tuple[int, Any]:
    """Accept one connection: ``(new_fd, peer_address)``. The new fd is close-on-exec."""
    n = _fd_of(fd)
    addr = ffi.new("char[]", 128)
    addrlen = ffi.new("uint32_t *", 128)
    d = current_driver()
    prep = functools.partial(d.ring.prep_accept, addr=addr, addrlen=addrlen)
    new = await d.perform("accept", prep, n, fd=n, keep=(addr, addrlen))
    return new, decode_sockaddr(addr, addrlen[0])


async def connect(fd: FdLike, family: int, address: Any) -> None:
    """Connect to a numeric ``address`` of ``family``."""
    n = _fd_of(fd)
    sa, salen = encode_sockaddr(family, address)
    d = current_driver()
    await d.perform("connect", d.ring.prep_connect, n, sa, salen, fd=n, keep=sa)


async def poll(fd: FdLike, events: int) -> int:
    """Wait until ``fd`` has one of ``events`` (``select.POLL*``); returns the revents mask."""
    n = _fd_of(fd)
    d = current_driver()
    return await d.perform("poll", d.ring.prep_poll, n, events, fd=n)


async def shutdown(fd: FdLike, how: int) -> None:
    n = _fd_of(fd)
    d = current_driver()
    await d.perform("shutdown", d.ring.prep_shutdown, n, how, fd=n)


async def close(fd: int) -> None:
    """Close ``fd`` through the ring, after cancelling the ops still using it."""
    n = _fd_of(fd)
    d = current_driver()
    d.close_fd_ops(n)
    try:
        await d.perform("close", d.ring.prep_close, n)
    except trio.Cancelled:
        os.close(n)  # cancelled before the kernel saw it: the fd must still go
        raise


async def sleep(seconds: float) -> None:
    """Sleep with a kernel timeout op (``trio.sleep`` is the usual choice; this exercises the ring)."""
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    ts = timespec(seconds)
    d = current_driver()
    res = await d.start(d.ring.prep_timeout, ts, keep=ts)
    if res not in (0, -62):  # -ETIME: the timer expired
        raise OSError(-res, f"timeout: {os.strerror(-res)}")
