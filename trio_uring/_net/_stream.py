"""``UringSocketStream`` and ``UringSocketListener``: trio streams over io_uring sockets.

The stream reads straight from the socket's queued chunks (data the kernel already put in
the run's buffer ring) and writes with the socket's direct-send-then-io_uring path; it
adds no buffering of its own.
"""

from __future__ import annotations

import errno as _errno
import socket as _stdlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from threading import get_ident as _get_ident
from typing import Any

import trio

from .._core._counters import COUNTERS
from .._core._traps import RUN_CONTEXT, cancel_shielded_checkpoint
from .._core._waiter import Conflict
from ._factory import uring_sockets_for_call
from ._rxbuf import BULK_CHUNK
from ._socket import _NOSIGNAL, UringSocket

__all__ = ["UringSocketListener", "UringSocketStream", "open_tcp_listeners", "open_tcp_stream", "serve_tcp"]

DEFAULT_RECEIVE_SIZE = 65536
Buffer = bytes | bytearray | memoryview
_CLOSED_ERRNOS = {_errno.EBADF, _errno.ENOTSOCK}


def _stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    """trio's mapping of socket errors to stream errors."""
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


@contextmanager
def _stream_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _stream_error(exc) from exc


def _stream_socket(socket: Any, who: str) -> UringSocket:
    if not isinstance(socket, UringSocket):
        raise TypeError(f"{who} needs a UringSocket, not {type(socket).__name__}")
    if not socket._is_stream:
        raise ValueError(f"{who} needs a SOCK_STREAM socket")
    return socket


class UringSocketStream(trio.abc.HalfCloseableStream):
    """A :class:`trio.abc.HalfCloseableStream` on a connected :class:`~trio_uring.socket.UringSocket`."""

    def __init__(self, socket: UringSocket) -> None:
        self.socket = _stream_socket(socket, "UringSocketStream")
        self._send_conflict = Conflict("another task is currently sending data on this stream")
        if not socket.tcp_tuned:
            _tune_tcp(socket)

    async def send_all(self, data: Buffer) -> None:
        """The hot path, flat as ``receive_some``'s: ``bytes`` sent whole by the direct ``send``.
        A socket error is mapped as the general path maps it; what the send leaves, other
        buffer types, a full socket, a ring send and a cancelled task go to ``_send_all``."""
        conflict = self._send_conflict
        if type(data) is bytes and data and not conflict.held and RUN_CONTEXT is not None:
            sock = self.socket
            d = sock._driver
            if (
                d is not None
                and not d.send_ring
                and not d.closed
                and not sock._did_shutdown_SHUT_WR
                and d.thread == _get_ident()
            ):
                try:
                    task = RUN_CONTEXT.task
                except AttributeError:
                    task = None
                if (
                    task is not None
                    and not task._cancel_status.effectively_cancelled
                    and not (task is task._runner.main_task and task._runner.ki_pending)
                ):
                    try:
                        sent = sock._sock.send(data, _NOSIGNAL)
                    except BlockingIOError:
                        sent = 0
                    except OSError as exc:
                        raise _stream_error(exc) from exc
                    if sent == len(data):
                        task._cancel_points += 1
                        conflict.held = True
                        try:
                            await cancel_shielded_checkpoint()
                        finally:
                            conflict.held = False
                        return
                    data = memoryview(data)[sent:]
        return await self._send_all(data)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The hot path, flat: the cancellation check inline (trio's ``checkpoint_if_cancelled``,
        read from the run context: see ``_traps``) and no socket method in between. It takes
        what is already there — the socket's next bytes with a plain ``recv``, or chunks the
        multishot recv queued — and maps a socket error as the general path does; it leaves
        everything else (waiting, spilled or carried bytes, another run's socket, a cancelled
        task, a queued error) to ``_receive_some``, which does the same work the general way.
        An echo round trip runs this and ``send_all``'s flat path once each."""
        sock = self.socket
        n = DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        conflict = sock._recv_conflict
        d = sock._driver
        if (
            type(n) is int
            and n > 0
            and not conflict.held
            and d is not None
            and not d.closed
            and not d.reaped_by_task
            and d.thread == _get_ident()
            and RUN_CONTEXT is not None
        ):
            try:
                task = RUN_CONTEXT.task
            except AttributeError:  # not in a trio run: the general path says so
                task = None
            if (
                task is not None
                and not task._cancel_status.effectively_cancelled
                and not (task is task._runner.main_task and task._runner.ki_pending)
            ):
                rx = sock._rx
                data: bytes | None = None
                if rx is None:
                    try:
                        data = sock._sock.recv(n)
                    except BlockingIOError:
                        pass  # empty: the general path arms the multishot recv and waits
                    except OSError as exc:
                        raise _stream_error(exc) from exc
                    else:
                        COUNTERS.bytes_plain_recv += len(data)
                        if len(data) >= BULK_CHUNK:
                            sock._mark_bulk()  # never loses the bytes read (see there)
                elif rx._chunks and rx.thread == d.thread and not rx.detached:
                    data = rx.take(n)
                    COUNTERS.bytes_multishot += len(data)
                if data is not None:
                    task._cancel_points += 1  # as checkpoint_if_cancelled
                    conflict.held = True
                    try:
                        await cancel_shielded_checkpoint()
                    finally:
                        conflict.held = False
                    return data
        return await self._receive_some(max_bytes)

    async def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        """``send_all`` the general way: the flat path's fallback."""
        sock = self.socket
        if sock._did_shutdown_SHUT_WR:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        conflict = self._send_conflict
        if conflict.held:
            raise trio.BusyResourceError(conflict.msg)
        conflict.held = True
        try:
            with memoryview(data) as view:
                size = view.nbytes
                if not size:
                    if sock.fileno() == -1:
                        raise trio.ClosedResourceError("socket was already closed")
                    await trio.lowlevel.checkpoint()
                    return
                total = await sock.send(data if type(data) is bytes else view)  # usually all of it
                if total < size:
                    with view.cast("B") as octets:
                        while total < size:
                            with octets[total:] as rest:
                                total += await sock.send(rest)
        except OSError as exc:
            raise _stream_error(exc) from exc
        finally:
            conflict.held = False

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            if self.socket.fileno() == -1:
                raise trio.ClosedResourceError
            with _stream_errors():
                await self.socket.wait_writable()

    async def send_eof(self) -> None:
        with self._send_conflict:
            await trio.lowlevel.checkpoint()
            if self.socket.did_shutdown_SHUT_WR:
                return
            with _stream_errors():
                self.socket.shutdown(_stdlib.SHUT_WR)

    async def _receive_some(self, max_bytes: int | None = None) -> bytes:
        """``receive_some`` the general way: the flat path's fallback."""
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        elif not isinstance(max_bytes, int) or isinstance(max_bytes, bool):
            raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        try:
            return await self.socket._stream_recv(max_bytes)
        except OSError as exc:
            raise _stream_error(exc) from exc

    async def aclose(self) -> None:
        self.socket.close()
        await trio.lowlevel.checkpoint()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """Set an option on the stream's socket (as ``trio.SocketStream.setsockopt``).

        :raises OSError: the kernel refused the option.
        """
        self.socket.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> Any:
        """An option of the stream's socket (as ``trio.SocketStream.getsockopt``).

        :raises OSError: the kernel refused the option.
        """
        if buffersize == 0:
            return self.socket.getsockopt(level, option)
        return self.socket.getsockopt(level, option, buffersize)


class UringSocketListener(trio.abc.Listener[UringSocketStream]):
    """A listener whose ``accept`` is one io_uring ``ACCEPT`` per call.

    The listening socket gets the TCP options every accepted stream wants (accepted sockets
    inherit them), so streams do not set them one by one.
    """

    def __init__(self, socket: UringSocket) -> None:
        self.socket = _stream_socket(socket, "UringSocketListener")
        _tune_tcp(socket)

    async def accept(self) -> UringSocketStream:
        while True:
            try:
                sock = await self.socket._accept_socket()
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS:
                    raise trio.ClosedResourceError from None
                if exc.errno not in _IGNORED_ACCEPT_ERRNOS:
                    raise
            else:
                return UringSocketStream(sock)

    async def aclose(self) -> None:
        self.socket.close()
        await trio.lowlevel.checkpoint()


def _tune_tcp(socket: UringSocket) -> None:
    """trio.SocketStream's options: TCP_NODELAY, and TCP_NOTSENT_LOWAT so the kernel's send
    buffer does not hide latency. Set on a listener, accepted sockets inherit both."""
    if socket.family in (_stdlib.AF_INET, _stdlib.AF_INET6):
        try:
            socket.setsockopt(_stdlib.IPPROTO_TCP, _stdlib.TCP_NODELAY, True)
            socket.setsockopt(_stdlib.IPPROTO_TCP, _stdlib.TCP_NOTSENT_LOWAT, 2**14)
        except OSError:
            return
        # plain TCP only: an MPTCP listener takes both but its connections do not inherit them
        socket.tcp_tuned = socket.proto in (0, _stdlib.IPPROTO_TCP)


# As trio's SocketListener: errors about a connection that died before we took it.
_IGNORED_ACCEPT_ERRNOS = {_errno.ECONNABORTED, _errno.EPROTO, _errno.EPERM}


async def open_tcp_stream(host: str | bytes, port: int, **kwargs: Any) -> UringSocketStream:
    """Like ``trio.open_tcp_stream`` (same arguments, happy eyeballs included), on io_uring.

    :raises OSError: no address could be connected to (as ``trio.open_tcp_stream``).
    """
    with uring_sockets_for_call():
        stream = await trio.open_tcp_stream(host, port, **kwargs)
    sock = stream.socket
    if not isinstance(sock, UringSocket):  # a bug if it happens: say so, never hand out a stock socket
        stream.socket.close()
        raise TypeError(f"open_tcp_stream made a {type(sock).__name__}, not an io_uring socket")
    return UringSocketStream(sock)


async def open_tcp_listeners(
    port: int, *, host: str | bytes | None = None, backlog: int | None = None
) -> list[UringSocketListener]:
    """Like ``trio.open_tcp_listeners``, returning io_uring listeners.

    :raises OSError: no address could be bound (the port is taken, say).
    """
    with uring_sockets_for_call():
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    if not all(isinstance(listener.socket, UringSocket) for listener in listeners):
        for listener in listeners:
            listener.socket.close()
        raise RuntimeError("open_tcp_listeners made a listener that is not an io_uring socket")
    return [UringSocketListener(listener.socket) for listener in listeners]  # type: ignore[arg-type]


async def serve_tcp(
    handler: Callable[[UringSocketStream], Awaitable[object]],
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[UringSocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Like ``trio.serve_tcp``: serve ``handler`` on io_uring listeners, forever.

    ``task_status.started()`` gets the listeners (``nursery.start`` returns them).

    :raises OSError: the listeners could not be opened (as :func:`open_tcp_listeners`).
    """
    from ._serve import serve_listeners  # noqa: PLC0415 - it imports this module

    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await serve_listeners(handler, listeners, handler_nursery=handler_nursery, task_status=task_status)
