"""io_uring operations as trio async functions, on the current run's ring.

Each follows the op layer's cancellation rule: cancelled before the kernel saw it → no
effect; cancelled in flight → the kernel's answer decides (data and fds are never lost).
They work under ``trio_uring.run`` and inside a plain ``trio.run``. Where io_uring cannot
be used in the run (``driver_or_none()`` is None), each does the same with the plain
syscall and trio's readiness waits, with trio's cancellation rule: a cancelled op had no
effect.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import os
import select
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from .._native import ffi
from ._errors import errno_error
from ._plain import driver_or_none
from ._ring import FdLike, _fd_of, readable_cbuf, timespec, writable_cbuf
from ._sockaddr import decode_sockaddr, encode_sockaddr

__all__ = ["accept", "close", "connect", "nop", "poll", "recv_into", "send", "shutdown", "sleep"]

T = TypeVar("T")
_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLRDHUP


async def nop() -> None:
    """A round trip through the kernel; useful to measure the op path."""
    d = driver_or_none()
    if d is None:
        await trio.lowlevel.checkpoint()
        return
    await d.perform("nop", d.ring.prep_nop)


async def recv_into(fd: FdLike, buf: Any, nbytes: int | None = None, flags: int = 0) -> int:
    """Receive into ``buf``; returns the byte count (0 at EOF).

    :raises OSError: the receive failed (``ECONNRESET``, ``EBADF``...).
    """
    n = _fd_of(fd)
    cbuf = writable_cbuf(buf)
    d = driver_or_none()
    if d is None:
        size = len(cbuf) if nbytes is None else min(nbytes, len(cbuf))
        ffi.release(cbuf)
        return await _nonblocking(
            n, trio.lowlevel.wait_readable, lambda s: s.recv_into(buf, size, flags | socket.MSG_DONTWAIT)
        )
    prep = functools.partial(d.ring.prep_recv, nbytes=nbytes, flags=flags)
    try:
        return await d.perform("recv", prep, n, cbuf, fd=n, keep=cbuf)
    finally:
        ffi.release(cbuf)  # the op is over (done, or never seen by the kernel): unpin buf


async def send(fd: FdLike, data: Any, flags: int = 0) -> int:
    """Send from ``data``; returns how many bytes the kernel took.

    :raises OSError: the send failed (``EPIPE``, ``ECONNRESET``...).
    """
    n = _fd_of(fd)
    cbuf = readable_cbuf(data)
    d = driver_or_none()
    if d is None:
        ffi.release(cbuf)
        f = flags | socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
        return await _nonblocking(n, trio.lowlevel.wait_writable, lambda s: s.send(data, f))
    prep = functools.partial(d.ring.prep_send, flags=flags | socket.MSG_NOSIGNAL)
    try:
        return await d.perform("send", prep, n, cbuf, len(cbuf), fd=n, keep=cbuf)
    finally:
        ffi.release(cbuf)


async def accept(fd: FdLike) -> tuple[int, Any]:
    """Accept one connection: ``(new_fd, peer_address)``. The new fd is close-on-exec.

    :raises OSError: the accept failed (``EINVAL`` on a socket that is not listening...).
    """
    n = _fd_of(fd)
    d = driver_or_none()
    if d is None:

        def accept_now(s: socket.socket) -> tuple[int, Any]:
            with _nonblocking_fd(n):  # a blocking listener must not block the thread
                conn, peer = s.accept()  # accept4(SOCK_CLOEXEC); conn keeps the blocking mode
            return conn.detach(), peer

        return await _nonblocking(n, trio.lowlevel.wait_readable, accept_now)
    addr = ffi.new("char[]", 128)
    addrlen = ffi.new("uint32_t *", 128)
    prep = functools.partial(d.ring.prep_accept, addr=addr, addrlen=addrlen)
    new = await d.perform("accept", prep, n, fd=n, keep=(addr, addrlen))
    return new, decode_sockaddr(addr, addrlen[0])


async def connect(fd: FdLike, family: int, address: Any) -> None:
    """Connect to a numeric ``address`` of ``family``.

    Without io_uring, a connect cancelled while in progress leaves the socket connecting
    (as with trio's sockets, close it).

    :raises OSError: the connection failed (``ECONNREFUSED``...).
    """
    n = _fd_of(fd)
    sa, salen = encode_sockaddr(family, address)  # numeric only: never resolves a name
    d = driver_or_none()
    if d is None:
        await _connect_by_readiness(n, sa, salen)
        return
    await d.perform("connect", d.ring.prep_connect, n, sa, salen, fd=n, keep=sa)


async def poll(fd: FdLike, events: int) -> int:
    """Wait until ``fd`` has one of ``events`` (``select.POLL*``); returns the revents mask.

    :raises trio.ClosedResourceError: ``fd`` was closed through trio-uring while waiting.
    """
    n = _fd_of(fd)
    d = driver_or_none()
    if d is None:
        return await _poll_by_readiness(n, events)
    return await d.perform("poll", d.ring.prep_poll, n, events, fd=n)


async def shutdown(fd: FdLike, how: int) -> None:
    """Shut down one or both directions of a socket (``socket.SHUT_RD``, ``SHUT_WR``, ``SHUT_RDWR``).

    :raises OSError: the kernel refused (``ENOTCONN`` for a socket that is not connected).
    """
    n = _fd_of(fd)
    d = driver_or_none()
    if d is None:
        await checkpoint_if_cancelled()
        try:
            with _borrowed(n) as s:
                s.shutdown(how)
        finally:
            await cancel_shielded_checkpoint()
        return
    await d.perform("shutdown", d.ring.prep_shutdown, n, how, fd=n)


async def close(fd: int) -> None:
    """Close ``fd`` through the ring, after cancelling the ops still using it.

    The fd is closed even if the call is cancelled (``Cancelled`` is raised afterwards).

    :raises OSError: the close failed (``EBADF``: ``fd`` was not open).
    """
    n = _fd_of(fd)
    d = driver_or_none()
    if d is None:
        try:
            await checkpoint_if_cancelled()
        finally:
            trio.lowlevel.notify_closing(n)
            os.close(n)
        await cancel_shielded_checkpoint()
        return
    trio.lowlevel.notify_closing(n)  # trio's own waiters on the fd (wait_readable...) too
    d.close_fd_ops(n)
    try:
        await d.perform("close", d.ring.prep_close, n)
    except trio.Cancelled:
        os.close(n)  # cancelled before the kernel saw it: the fd must still go
        raise


async def sleep(seconds: float) -> None:
    """Sleep with a kernel timeout op (``trio.sleep`` is the usual choice; this exercises the ring).

    :raises ValueError: ``seconds`` < 0.
    """
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    d = driver_or_none()
    if d is None:
        await trio.sleep(seconds)
        return
    ts = timespec(seconds)
    res = await d.start(d.ring.prep_timeout, ts, keep=ts)
    if res not in (0, -_errno.ETIME):  # the timer expired
        raise errno_error(res, "timeout")


# ---- without io_uring: the syscall, and trio's readiness waits --------------------------------------
@contextlib.contextmanager
def _borrowed(n: int) -> Iterator[socket.socket]:
    """A ``socket.socket`` over the caller's fd that never closes it nor changes its mode.

    Its calls never wait in the thread: with ``socket.setdefaulttimeout`` in effect a new
    socket object would poll for up to that long, so it is made a plain blocking one (the
    ops pass MSG_DONTWAIT or make the fd non-blocking themselves).
    """
    restore = None if socket.getdefaulttimeout() is None else os.get_blocking(n)
    s = socket.socket(fileno=n)
    try:
        if restore is not None:
            s.settimeout(None)
        yield s
    finally:
        s.detach()
        if restore is not None:
            os.set_blocking(n, restore)


@contextlib.contextmanager
def _nonblocking_fd(n: int) -> Iterator[None]:
    """``n`` in non-blocking mode for the block (for syscalls without a MSG_DONTWAIT)."""
    blocking = os.get_blocking(n)
    if blocking:
        os.set_blocking(n, False)
    try:
        yield
    finally:
        if blocking:
            os.set_blocking(n, True)


async def _nonblocking(
    n: int, wait: Callable[[int], Awaitable[None]], call: Callable[[socket.socket], T]
) -> T:
    """trio's pattern: try ``call``; on ``BlockingIOError`` wait for readiness and retry.

    A cancellation lands only before the call or while waiting: the op then had no effect.
    """
    await checkpoint_if_cancelled()
    while True:
        try:
            with _borrowed(n) as s:
                result = call(s)
        except BlockingIOError:
            pass
        except BaseException:
            await cancel_shielded_checkpoint()
            raise
        else:
            await cancel_shielded_checkpoint()
            return result
        await wait(n)


async def _connect_by_readiness(n: int, sa: Any, salen: int) -> None:
    await checkpoint_if_cancelled()
    address = decode_sockaddr(sa, salen)  # numeric again: connect_ex resolves nothing
    try:
        with _borrowed(n) as s, _nonblocking_fd(n):
            err = s.connect_ex(address)
    except BaseException:
        await cancel_shielded_checkpoint()
        raise
    if err == _errno.EINPROGRESS:
        await trio.lowlevel.wait_writable(n)
        with _borrowed(n) as s:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    else:
        await cancel_shielded_checkpoint()
    if err:
        raise errno_error(err, "connect")


async def _poll_by_readiness(n: int, events: int) -> int:
    await checkpoint_if_cancelled()
    p = select.poll()
    p.register(n, events)
    while True:
        ready = p.poll(0)
        if ready:
            await cancel_shielded_checkpoint()
            return ready[0][1]
        want_read = bool(events & _READ_EVENTS) or not events & select.POLLOUT
        if want_read and events & select.POLLOUT:
            await _wait_either(n)
        elif want_read:
            await trio.lowlevel.wait_readable(n)
        else:
            await trio.lowlevel.wait_writable(n)


async def _wait_either(n: int) -> None:
    """Until ``n`` is readable or writable (two waiters; the first one done cancels the other)."""
    try:
        async with trio.open_nursery() as nursery:

            async def wait(fn: Callable[[int], Awaitable[None]]) -> None:
                await fn(n)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait, trio.lowlevel.wait_readable)
            nursery.start_soon(wait, trio.lowlevel.wait_writable)
    except BaseExceptionGroup as group:
        # both waiters fail alike (fd closed, not pollable): one error, as a single wait gives
        first = next((e for e in group.exceptions if not isinstance(e, trio.Cancelled)), None)
        if first is None:
            raise
        raise first from None
