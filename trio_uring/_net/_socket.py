"""``UringSocket``: a ``trio.socket.SocketType`` whose I/O goes through io_uring.

* Stream sockets receive through a multishot recv into the run's buffer ring
  (:mod:`._rxbuf`): data is usually in user memory before anyone asks for it.
* ``accept`` tries the syscall, then waits with an io_uring ``ACCEPT`` for that call only:
  nothing is accepted before someone asks (no fds held for connections nobody took).
* Sends try the non-blocking syscall first (one syscall, no ring round trip when the
  socket has room, which is almost always) and fall back to an io_uring ``SEND`` that the
  kernel completes when there is room.
* ``connect`` is an io_uring ``CONNECT``. Datagram receives try the syscall and wait with
  an io_uring poll.

Every async method is a trio checkpoint, cancellation never loses data or accepted fds,
and closing the socket from another task wakes blocked callers with
``trio.ClosedResourceError``. Only public trio API is used.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import os
import select
import socket as _stdlib
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._core._counters import COUNTERS
from .._core._errors import errno_error
from .._core._io_manager import check_send
from .._core._ops import OpDriver
from .._core._plain import driver_or_none, existing_driver
from .._core._ring import readable_cbuf
from .._core._sockaddr import encode_sockaddr
from .._core._traps import cancel_shielded_checkpoint
from .._core._waiter import Conflict
from .._native import ffi
from ._rxbuf import BULK_CHUNK, BULK_PATIENCE, StreamReceiver

if TYPE_CHECKING:
    from ._receive_side import ReceiveSide

__all__ = [
    "UringSocket",
    "configure_send",
]

T = TypeVar("T")
R = TypeVar("R", bytes, int)
_NOSIGNAL = int(_stdlib.MSG_NOSIGNAL)  # a plain int: enum flag arithmetic is slow
_PEEK, _WAITALL, _DONTWAIT = int(_stdlib.MSG_PEEK), int(_stdlib.MSG_WAITALL), int(_stdlib.MSG_DONTWAIT)
_NONBLOCK = int(_stdlib.SOCK_NONBLOCK)
# The C socket's own family and type: ints, without socket.py's enum conversion on each read
_raw_family = _stdlib.socket.__mro__[1].family.__get__  # type: ignore[attr-defined]
_raw_type = _stdlib.socket.__mro__[1].type.__get__  # type: ignore[attr-defined]
_STREAM = int(_stdlib.SOCK_STREAM)
_TUNED_OPTS = frozenset({_stdlib.TCP_NODELAY, _stdlib.TCP_NOTSENT_LOWAT})
#: recv flags the stream receive path understands on data it already holds in user memory.
_QUEUE_FLAGS = _PEEK | _WAITALL | _DONTWAIT


class UringSocket(trio.socket.SocketType):
    """A trio socket on io_uring. Create with :func:`socket` or :func:`from_stdlib_socket`.

    Where io_uring cannot be used in the current run (seccomp, ``io_uring_disabled``...), it
    does its I/O the way trio's own sockets do, with readiness waits.
    """

    def __init__(self, sock: _stdlib.socket, *, tcp_tuned: bool = False) -> None:
        super().__init__()
        if type(sock) is not _stdlib.socket:
            raise TypeError(f"expected a socket.socket, not {type(sock).__name__}")
        if sock.getblocking():  # one ioctl, unless the socket was made non-blocking already
            sock.setblocking(False)
        self._sock = sock
        #: TCP_NODELAY and TCP_NOTSENT_LOWAT are set as a stream wants them (set here, or
        #: inherited from a listener that had them): the stream skips two setsockopt calls.
        self.tcp_tuned = tcp_tuned
        self._did_shutdown_SHUT_WR = False
        self._rx: StreamReceiver | None = None
        #: The receive side while a zero-copy receiver has it (see :func:`claim_receive_side`).
        self._lent: ReceiveSide | None = None
        self._recv_conflict = Conflict("another task is already receiving on this socket")
        self._accept_conflict = Conflict("another task is already accepting on this socket")
        self._is_stream = _raw_type(sock) == _STREAM
        self._driver: OpDriver | None = None
        #: The token of ``_driver``'s run: a close from another thread is handed to that run.
        self._token: trio.lowlevel.TrioToken | None = None
        COUNTERS.sockets_opened += 1

    def __del__(self) -> None:
        # A socket dropped without close(): its armed ops would keep the connection open
        # (the kernel holds the file), its buffers would stay pinned. Give it all back —
        # even when a reference cycle had the inner socket finalized (and its fd closed)
        # first — and warn last, since a warning can raise (``-W error``).
        rx = getattr(self, "_rx", None)
        sock = getattr(self, "_sock", None)
        text = f"unclosed {self!r}" if sock is not None and sock.fileno() != -1 else ""
        if rx is not None and not rx.closed and not rx.driver.closed:
            if rx.thread == threading.get_ident():
                # before the next enter, never in the middle of one: an SQE still queued on
                # the fd becomes a NOP before the (now free) fd number can reach the kernel
                rx.driver.soon(rx.close)
            elif _hand_to_run(rx.token, None, rx, sock):
                sock = None  # the run closes it, after its receive op is gone
        if sock is not None and sock.fileno() != -1:
            sock.close()
        if text:
            COUNTERS.sockets_closed += 1
            warnings.warn(text, ResourceWarning, stacklevel=1, source=self)

    # ---- plain forwarding -----------------------------------------------------------------
    def detach(self) -> int:
        """Give up the fd. Refused while received bytes wait in user memory: the fd's new
        owner could never read them (read them first, e.g. until ``recv`` would block).

        :raises trio.BusyResourceError: received bytes are queued, a zero-copy receiver has the
            receive side, or another thread's run uses the socket.
        """
        if self._lent is not None:
            raise trio.BusyResourceError(
                "a zero-copy receiver has this socket's receive side (and may hold bytes it has not "
                "handed out): end its block before detach()"
            )
        _check_owner(self)
        rx = self._rx
        if rx is not None and not rx.closed and rx.queued:
            raise trio.BusyResourceError(
                f"{rx.queued} received bytes are queued in user memory and would be lost with "
                "detach(): receive them first"
            )
        self._stop_io()
        fd = self._sock.detach()
        if fd != -1:
            COUNTERS.sockets_closed += 1  # no longer ours
        return fd

    def fileno(self) -> int:
        return self._sock.fileno()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        if buflen is None:
            return self._sock.getsockopt(level, optname)
        return self._sock.getsockopt(level, optname, buflen)

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        if level == _stdlib.IPPROTO_TCP and optname in _TUNED_OPTS:
            self.tcp_tuned = False  # whoever sets them now decides; a stream sets them again
        if optlen is None:
            if value is None:
                raise TypeError("invalid value for argument 'value', must not be None when specifying optlen")
            self._sock.setsockopt(level, optname, value)
        else:
            if value is not None:
                raise TypeError(
                    f"invalid value for argument 'value': {value!r}, must be None when specifying optlen"
                )
            self._sock.setsockopt(level, optname, value, optlen)

    def listen(self, backlog: int = min(_stdlib.SOMAXCONN, 128)) -> None:
        self._sock.listen(backlog)

    def get_inheritable(self) -> bool:
        return self._sock.get_inheritable()

    def set_inheritable(self, inheritable: bool) -> None:
        self._sock.set_inheritable(inheritable)

    def __enter__(self) -> UringSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def family(self) -> _stdlib.AddressFamily:
        return self._sock.family

    @property
    def type(self) -> _stdlib.SocketKind:
        return self._sock.type

    @property
    def proto(self) -> int:
        return self._sock.proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._did_shutdown_SHUT_WR

    def __repr__(self) -> str:
        return repr(self._sock).replace("socket.socket", "trio_uring.socket.UringSocket")

    def dup(self) -> UringSocket:
        return UringSocket(self._sock.dup())

    def is_readable(self) -> bool:
        if self._rx is not None and self._rx.ready:
            return True
        p = select.poll()
        p.register(self._sock, select.POLLIN)
        return bool(p.poll(0))

    def shutdown(self, flag: int) -> None:
        self._sock.shutdown(flag)
        if flag in (_stdlib.SHUT_WR, _stdlib.SHUT_RDWR):
            self._did_shutdown_SHUT_WR = True

    def _stop_io(self) -> bool:
        """Cancel our kernel ops, return buffers, wake our waiters (ClosedResourceError).

        False when the receive side belongs to a live run in another thread, or the socket
        has no receive side and such a run uses it: that run was handed the socket (it closes
        it after its ops are gone, so none of them can reach a new socket given its number).
        """
        lent, self._lent = self._lent, None
        rx, self._rx = self._rx, None
        me = threading.get_ident()
        token = None
        if lent is not None and lent.thread != me:
            token = lent.token
        elif rx is not None and rx.thread != me and not rx.driver.closed:
            token = rx.token
        elif lent is None and (rx is None or rx.driver.closed):
            d = self._driver  # no receiver yet (reads did not wait), or an earlier run's
            if d is not None and d.thread != me and not d.closed:
                token = self._token
        if token is not None:
            sock, placeholder = self._sock, _closed_like(self._sock)
            if _hand_to_run(token, lent, rx, sock):
                self._notify_closing(sock.fileno())  # this thread's run, if any
                self._sock = placeholder
                return False
        if lent is not None:
            lent.socket_closed()
        if rx is not None:
            rx.close()
        self._notify_closing(self._sock.fileno())
        return True

    @staticmethod
    def _notify_closing(fd: int) -> None:
        if fd >= 0:
            with contextlib.suppress(RuntimeError):  # outside a run nothing can be waiting
                trio.lowlevel.notify_closing(fd)  # UringIOManager's also cancels the fd's ops
                driver = existing_driver()
                if driver is not None and driver.reaped_by_task:
                    # a plain trio.run: its IO manager knows nothing of our ring. By number,
                    # at the last moment the number still means this socket.
                    driver.close_fd_ops(fd)

    def close(self) -> None:
        if self._sock.fileno() != -1:
            COUNTERS.sockets_closed += 1
            if self._stop_io():  # else the run owning its receive closes it
                self._sock.close()

    # ---- address handling ------------------------------------------------------------------
    async def _resolve(self, address: Any, *, local: bool) -> Any:
        fam = self._sock.family
        if fam == _stdlib.AF_UNIX:
            return os.fspath(address) if not isinstance(address, bytes | str) else address
        if not isinstance(address, tuple) or not 2 <= len(address) <= (4 if fam == _stdlib.AF_INET6 else 2):
            raise ValueError(f"address should be a (host, port) tuple, not {address!r}")
        host, port, *rest = address
        if host == "<broadcast>":
            host = "255.255.255.255"
        flags = _stdlib.AI_PASSIVE if local else 0
        if fam == _stdlib.AF_INET6 and not self._sock.getsockopt(_stdlib.IPPROTO_IPV6, _stdlib.IPV6_V6ONLY):
            flags |= _stdlib.AI_V4MAPPED
        if host == "":
            host = None
        gai = await trio.socket.getaddrinfo(host, port, fam, self._sock.type, self._sock.proto, flags)
        normed = gai[0][-1]
        if fam == _stdlib.AF_INET6 and rest:
            normed = (normed[0], normed[1], *rest, *normed[2 + len(rest) :])[:4]
        return normed

    async def bind(self, address: Any) -> None:
        address = await self._resolve(address, local=True)
        if self._sock.family == _stdlib.AF_UNIX and address and address[:1] not in ("\0", b"\0"):
            await trio.to_thread.run_sync(self._sock.bind, address)
            return
        await trio.lowlevel.checkpoint()
        self._sock.bind(address)

    # ---- the one try-then-wait path ---------------------------------------------------------------
    async def _nonblocking(self, fn: Callable[[], T], wait: Callable[[], Awaitable[None]]) -> T:
        """trio's ``_nonblocking_helper``: a cancel check, the syscall, and on ``EAGAIN`` a wait
        and another try. Cancelled before the syscall succeeded means it had no effect.

        The stream receive and send hot paths below inline this shape, each saying why.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            result = fn()
        except BlockingIOError:
            pass
        else:
            await cancel_shielded_checkpoint()
            return result
        while True:
            await wait()
            try:
                return fn()
            except BlockingIOError:
                pass

    def _run_driver(self) -> OpDriver | None:
        """This run's driver (cached), or None where io_uring is unavailable in this run."""
        d = self._driver
        if d is None or d.closed:
            d = self._driver = driver_or_none()
            self._token = trio.lowlevel.current_trio_token() if d is not None else None
        elif d.thread != threading.get_ident():
            _check_thread(d)
        return d

    async def _wait_readable(self) -> None:
        """Readiness: an io_uring poll (cancelling it loses nothing), or trio's own wait where
        a helper task reaps completions (plain ``trio.run``) or io_uring is unavailable."""
        d = self._run_driver()
        if d is None or d.reaped_by_task:
            await trio.lowlevel.wait_readable(self._sock)
            return
        fd = self._sock.fileno()
        if fd == -1:
            raise errno_error(_errno.EBADF)
        res = await d.start(d.ring.prep_poll, fd, select.POLLIN, fd=fd)
        if res < 0:
            raise errno_error(res)

    # ---- connect / accept ---------------------------------------------------------------------
    async def connect(self, address: Any) -> None:
        try:
            address = await self._resolve(address, local=False)
            d = self._run_driver()
            await trio.lowlevel.checkpoint_if_cancelled()
            if d is None:
                await self._connect_readiness(address)
                return
            sa, salen = encode_sockaddr(self._sock.family, address)
            fd = self._sock.fileno()
            res = await d.start(d.ring.prep_connect, fd, sa, salen, fd=fd, keep=sa)
            if res < 0:
                raise errno_error(res, f"Error connecting to {address!r}")
        except trio.Cancelled:
            # as trio does: a connect that was cancelled leaves the socket unusable
            self.close()
            raise

    async def _connect_readiness(self, address: Any) -> None:
        """trio's connect without io_uring: non-blocking connect, wait writable, SO_ERROR."""
        try:
            self._sock.connect(address)
        except BlockingIOError:
            pass
        else:
            await cancel_shielded_checkpoint()
            return
        await trio.lowlevel.wait_writable(self._sock)
        err = self._sock.getsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_ERROR)
        if err:
            raise errno_error(err, f"Error connecting to {address!r}")

    async def accept(self) -> tuple[UringSocket, Any]:
        """One io_uring ``ACCEPT`` for exactly this call: it completes at submission when a
        connection is pending (one scheduler pass, like trio's try-the-syscall path, without
        the failed syscall when none is) and waits in the kernel otherwise.

        Nothing is accepted ahead of a caller, so connections nobody asked for stay in the
        kernel's backlog, not in our fd table; a cancelled wait that lost the race to a
        connection still returns it (the cancel lands at the caller's next checkpoint).

        :raises trio.BusyResourceError: another task is accepting on this socket.
        :raises OSError: the accept failed (``EBADF`` once closed, ``EINVAL`` if not listening).
        """
        sock = await self._accept_socket()
        try:
            addr = sock._sock.getpeername()
        except OSError:
            addr = None
        return sock, addr

    async def _accept_socket(self) -> UringSocket:
        """:meth:`accept` without the peer's address (a listener never asks for it: one
        ``getpeername`` less per connection). The new socket is non-blocking from the
        accept itself and knows the TCP options it inherited (see ``tcp_tuned``)."""
        with self._accept_conflict:
            await trio.lowlevel.checkpoint_if_cancelled()
            d = self._run_driver()
            if d is None:
                sock, _addr = await self._nonblocking(self._sock.accept, self._wait_readable)
                return UringSocket(sock, tcp_tuned=self.tcp_tuned)
            lfd = self._sock.fileno()
            if lfd == -1:
                raise errno_error(_errno.EBADF)
            res = await d.start(functools.partial(d.ring.prep_accept, flags=_NONBLOCK), lfd, fd=lfd)
        if res < 0:
            raise errno_error(res)
        # SOCK_NONBLOCK in the type tells Python the fd is non-blocking already (no ioctl)
        lsock = self._sock
        new = _stdlib.socket(_raw_family(lsock), _raw_type(lsock) | _NONBLOCK, lsock.proto, fileno=res)
        accepted = UringSocket(new, tcp_tuned=self.tcp_tuned)
        # accepted in this run: its first receive and send need not look the run up
        accepted._driver, accepted._token = d, self._token
        return accepted

    # ---- receive -----------------------------------------------------------------------------
    def _receiver(self) -> StreamReceiver | None:
        """The stream's receiver in this run (None where io_uring is unavailable)."""
        rx = self._rx
        if rx is not None and rx.thread != threading.get_ident() and not rx.detached:
            _check_thread(rx.driver)  # a live run in another thread owns it
        if rx is None or rx.detached:
            fd = self._sock.fileno()
            if fd == -1:
                raise errno_error(_errno.EBADF)
            if self._run_driver() is None:
                return None
            rx = self._rx = StreamReceiver(fd, carry=rx)  # what an earlier run kept comes first
        return rx

    def _mark_bulk(self) -> None:
        """A plain recv read ``BULK_CHUNK`` or more: a bulk stream (as ``_recv_direct``).

        Only a hint, given after the bytes left the socket: when the receiver cannot be made
        now (the run's buffer ring: memory, the kernel's refusal) the bytes are handed out
        all the same, and the next receive that has to wait raises the error.
        """
        try:
            rx = self._receiver()
        except (OSError, MemoryError):
            return
        if rx is not None:
            rx.bulk = BULK_PATIENCE

    def _carried(self, buflen: int, *, peek: bool = False) -> bytes | None:
        """Without io_uring in this run: what an earlier run's receiver kept comes first."""
        rx = self._rx
        if rx is None or not rx.detached or not rx.ready:
            return None
        # detached: only its own memory (the spill) holds data
        return rx.peek(buflen) if peek else rx.take(buflen)

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        if not self._is_stream:
            return await self._dgram(lambda: self._sock.recv(buflen, flags))
        if buflen < 0:
            raise ValueError("negative buffersize in recv")
        if flags:
            with self._recv_conflict:
                return await self._recv_flags(buflen, int(flags))
        return await self._stream_recv(buflen)

    async def _stream_recv(self, buflen: int) -> bytes:
        """``recv`` of a stream socket (the hot path of ``receive_some``: kept flat)."""
        conflict = self._recv_conflict
        if conflict.held:
            raise trio.BusyResourceError(conflict.msg)
        conflict.held = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            rx = self._rx
            if rx is None and buflen:
                # Nothing was ever queued for this socket: a plain recv needs no receiver (a
                # connection that never has to wait for data never makes one).
                d = self._driver
                if d is None or d.closed or d.thread != threading.get_ident():
                    d = self._run_driver()
                if d is not None and not d.reaped_by_task:
                    try:
                        data = self._sock.recv(buflen)
                    except BlockingIOError:
                        rx = self._receiver()  # the socket is empty: arm the multishot op, wait
                        if rx is not None:
                            await rx.wait()
                            data = rx.take(buflen)
                            COUNTERS.bytes_multishot += len(data)
                            return data
                    else:
                        COUNTERS.bytes_plain_recv += len(data)
                        if len(data) >= BULK_CHUNK:
                            self._mark_bulk()
                        await cancel_shielded_checkpoint()
                        return data
                rx = self._rx
            if rx is None or rx.detached or rx.thread != threading.get_ident():
                rx = self._receiver()
                if rx is None:
                    carried = self._carried(buflen)
                    if carried is not None:
                        await cancel_shielded_checkpoint()
                        return carried
                    sock = self._sock
                    return await self._readiness_read(lambda: sock.recv(buflen))
            if rx._chunks or rx.ready:
                await cancel_shielded_checkpoint()
            else:
                if buflen and rx.claim_idle():
                    sock = self._sock
                    direct = await self._recv_direct(rx, lambda: sock.recv(buflen))
                    if direct is not None:
                        return direct
                elif buflen:
                    sock = self._sock
                    early = rx.read_early(lambda: sock.recv(buflen))
                    if early is not None:
                        COUNTERS.bytes_plain_recv += len(early)
                        await cancel_shielded_checkpoint()
                        return early
                await rx.wait()  # arms the multishot recv
            data = rx.take(buflen) if buflen else b""
            COUNTERS.bytes_multishot += len(data)
            return data
        finally:
            conflict.held = False

    async def _readiness_read(self, read: Callable[[], R]) -> R:
        """The receive path without io_uring: :meth:`_nonblocking`, counted."""
        result = await self._nonblocking(read, self._wait_readable)
        COUNTERS.bytes_readiness += result if isinstance(result, int) else len(result)
        return result

    async def _recv_flags(self, buflen: int, flags: int) -> bytes:
        """``recv`` with flags on a stream: ``MSG_PEEK``, ``MSG_WAITALL`` and ``MSG_DONTWAIT``
        apply to data already queued in user memory first, as the kernel would apply them."""
        if flags & ~_QUEUE_FLAGS:  # e.g. MSG_OOB: not part of the queued stream
            return await self._nonblocking(lambda: self._sock.recv(buflen, flags), self._wait_readable)
        data = await self._recv_once(buflen, flags)
        if not flags & _WAITALL or flags & _PEEK:
            return data
        got = bytearray(data)
        try:
            while data and len(got) < buflen:
                data = await self._recv_once(buflen - len(got), flags)
                got += data
        except BaseException as exc:
            rx = self._rx
            if got and rx is not None and not rx.closed and not rx.detached:
                rx.give_back(bytes(got), eof=False, error=None)  # read again later: nothing lost
            elif got and isinstance(exc, trio.Cancelled):
                return bytes(got)  # no queue to put it back in: hand out the short read
            raise
        return bytes(got)

    async def _recv_once(self, buflen: int, flags: int) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        rx = self._receiver()
        sys_flags = flags & ~_WAITALL
        if rx is None and (carried := self._carried(buflen, peek=bool(flags & _PEEK))) is not None:
            await cancel_shielded_checkpoint()
            return carried
        if rx is None or rx.claim_idle():
            # nothing is queued in user memory: the kernel socket holds the next bytes
            if flags & _DONTWAIT:
                data = self._sock.recv(buflen, sys_flags)
                await cancel_shielded_checkpoint()
                return data
            return await self._nonblocking(lambda: self._sock.recv(buflen, sys_flags), self._wait_readable)
        if rx.ready:
            await cancel_shielded_checkpoint()
        elif flags & _DONTWAIT:
            raise errno_error(_errno.EAGAIN)
        else:
            await rx.wait()
        return rx.peek(buflen) if flags & _PEEK else rx.take(buflen)

    async def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0, /) -> int:
        if not self._is_stream:
            return await self._dgram(lambda: self._sock.recv_into(buffer, nbytes, flags))
        view = _writable_view(buffer, nbytes, "recv_into")
        with self._recv_conflict:
            if flags:
                data = await self._recv_flags(len(view), int(flags))
                view[: len(data)] = data
                return len(data)
            await trio.lowlevel.checkpoint_if_cancelled()
            rx = self._rx
            if rx is None or rx.detached or rx.thread != threading.get_ident():
                rx = self._receiver()
                if rx is None:
                    carried = self._carried(len(view))
                    if carried is not None:
                        view[: len(carried)] = carried
                        await cancel_shielded_checkpoint()
                        return len(carried)
                    return await self._readiness_read(lambda: self._sock.recv_into(view))
            if rx.ready:
                await cancel_shielded_checkpoint()
            else:
                if len(view) and rx.claim_idle():
                    n = await self._recv_direct(rx, lambda: self._sock.recv_into(view))
                    if n is not None:
                        return n
                await rx.wait()  # arms the multishot recv
            n = rx.take_into(view) if len(view) else 0
            COUNTERS.bytes_multishot += n
            return n

    async def _recv_direct(self, rx: StreamReceiver, read: Callable[[], R]) -> R | None:
        """Read with the syscall while no recv op is armed (see ``StreamReceiver.claim_idle``).

        The try-then-wait shape of :meth:`_nonblocking`, inlined and with a third way out:
        ``None`` when the socket is empty and the stream is not bulk, so the caller arms the
        multishot op and waits. A bulk stream waits with a poll and reads again;
        ``BULK_PATIENCE`` reads smaller than ``BULK_CHUNK`` in a row end bulk mode. Under a
        plain ``trio.run`` every read is a syscall after trio's own readiness wait.
        """
        waited = False
        while True:
            try:
                result = read()
            except BlockingIOError:
                if rx.driver.reaped_by_task:
                    # plain trio.run: readiness from trio's own IO manager costs less than a
                    # recv op whose completion a helper task has to reap
                    await trio.lowlevel.wait_readable(self._sock)
                elif rx.bulk:
                    await self._wait_readable()
                else:
                    return None
                waited = True  # that wait was a schedule point: no checkpoint needed after it
                continue
            n = result if isinstance(result, int) else len(result)
            COUNTERS.bytes_plain_recv += n
            if n >= BULK_CHUNK:
                rx.bulk = BULK_PATIENCE
            elif rx.bulk:
                rx.bulk -= 1  # enough small reads in a row: back to the multishot op
            if not waited:
                await cancel_shielded_checkpoint()
            return result

    async def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        if self._is_stream:  # the stream may hold queued bytes: keep them in order
            return await self.recv(bufsize, flags), None
        return await self._dgram(lambda: self._sock.recvfrom(bufsize, flags))

    async def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0, /) -> tuple[int, Any]:
        if self._is_stream:
            return await self.recv_into(buffer, nbytes, flags), None
        return await self._dgram(lambda: self._sock.recvfrom_into(buffer, nbytes, flags))

    async def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /) -> Any:
        rx = self._rx
        if self._is_stream and rx is not None and rx.ready:  # queued bytes come first
            return await self.recv(bufsize, flags), [], 0, None
        return await self._dgram(lambda: self._sock.recvmsg(bufsize, ancbufsize, flags))

    async def _dgram(self, fn: Callable[[], T]) -> T:
        """Receive with the syscall; when nothing is there, wait for readiness."""
        with self._recv_conflict:
            return await self._nonblocking(fn, self._wait_readable)

    # ---- send ---------------------------------------------------------------------------------
    async def send(self, data: Any, flags: int = 0, /) -> int:
        # The try of the try-then-wait shape, inlined: the hot path of send_all.
        await trio.lowlevel.checkpoint_if_cancelled()
        d = self._driver
        if d is None or d.closed:
            d = self._run_driver()
        elif d.thread != threading.get_ident():
            # Another thread's live run uses this socket: this run sends the way trio's sockets
            # do (try, wait for readiness, try again). The whole message goes — the wait for
            # room used to be refused on the owner's ring after part of it was written — and
            # no queued SQE carries the fd number, which the owner closing the socket could
            # hand to a new socket meanwhile.
            return await self._nonblocking(
                lambda: self._sock.send(data, int(flags) | _NOSIGNAL), self._wait_writable_briefly
            )
        if d is None or not d.send_ring:
            try:
                n = self._sock.send(data, int(flags) | _NOSIGNAL)
            except BlockingIOError:
                pass
            else:
                await cancel_shielded_checkpoint()
                return n
        if d is None:
            return await self._nonblocking(
                lambda: self._sock.send(data, int(flags) | _NOSIGNAL), self.wait_writable
            )
        return await self._ring_send(d, data, int(flags))

    async def _ring_send(self, d: OpDriver, data: Any, flags: int) -> int:
        # Full: let the kernel finish it when there is room. A cancel that loses the race
        # to the send returns the count (no data is lost or duplicated). ``send="ring"``
        # sends every message this way: one io_uring_enter per pass for all of them (under
        # 0.1 syscalls per echo round trip at 64 connections, measured) but more CPU than the
        # direct syscall for larger messages, so direct is the default (see the README).
        if d.thread != threading.get_ident():
            _check_thread(d)
        fd = self._sock.fileno()
        if fd == -1:
            raise errno_error(_errno.EBADF)
        cbuf = readable_cbuf(data)
        try:
            op = d.issue(d.ring.prep_send_flags, fd, cbuf, len(cbuf), flags | _NOSIGNAL, fd=fd, keep=cbuf)
            # The run enters the ring (submitting this and every other send of the pass) before
            # this task resumes: usually the send is done by then and nothing more waits.
            await cancel_shielded_checkpoint()
            res = await d.collect(op)
        finally:
            ffi.release(cbuf)  # the kernel is done with it either way: unpin the caller's buffer
        if res < 0:
            raise errno_error(res)
        return res

    async def sendto(self, data: Any, *args: Any) -> int:
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = args
        else:
            raise TypeError("sendto() takes 2 or 3 arguments")
        address = await self._resolve(address, local=False)
        return await self._nonblocking(
            lambda: self._sock.sendto(data, flags | _NOSIGNAL, address), self.wait_writable
        )

    async def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if address is not None:
            address = await self._resolve(address, local=False)
        return await self._nonblocking(
            lambda: self._sock.sendmsg(buffers, ancdata, flags | _NOSIGNAL, address), self.wait_writable
        )

    async def wait_writable(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    async def _wait_writable_briefly(self) -> None:
        """``wait_writable`` for at most 50 ms: a send from another thread's run waits in this
        run, which the owning run closing the socket does not wake; the send's retry then
        finds it closed (``EBADF``)."""
        with trio.move_on_after(0.05):
            await self.wait_writable()


def configure_send(path: str) -> None:
    """Choose how this run's sockets send: ``"direct"`` (the default) tries the syscall first
    and waits with an io_uring ``SEND`` only when the socket is full; ``"ring"`` makes every
    send an io_uring ``SEND``, submitted once per scheduler pass.

    The same as ``trio_uring.run(..., send=path)``, for runs started another way (a plain
    ``trio.run``, pytest-trio). Takes effect for sends that start afterwards; a run without
    io_uring sends directly whatever is chosen.

    :raises ValueError: ``path`` is neither ``"direct"`` nor ``"ring"``.
    """
    ring = check_send(path)
    driver = driver_or_none()
    if driver is not None:
        driver.send_ring = ring


def _closed_like(sock: _stdlib.socket) -> _stdlib.socket:
    """A closed socket of the same kind: what a UringSocket holds once its fd was handed away."""
    placeholder = _stdlib.socket(sock.family, sock.type, sock.proto)
    placeholder.close()
    return placeholder


def _hand_to_run(
    token: trio.lowlevel.TrioToken,
    lent: ReceiveSide | None,
    rx: StreamReceiver | None,
    sock: _stdlib.socket | None,
) -> bool:
    """Have the run of ``token`` (in another thread) stop the socket's receive side — a
    zero-copy receiver's loan, the stream receiver — and then close ``sock``.

    Its ring takes SQEs from its own thread only, and its waiting tasks can be woken only
    there. False if that run has ended (the caller does it all itself).
    """

    def stop() -> None:
        try:
            if lent is not None:
                lent.socket_closed()
            if rx is not None:
                rx.close()
        finally:
            if sock is not None:
                try:
                    UringSocket._notify_closing(sock.fileno())  # its queued and in-flight ops
                finally:
                    sock.close()

    try:
        token.run_sync_soon(stop)
    except trio.RunFinishedError:
        return False
    return True


def _check_owner(sock: UringSocket) -> None:
    """Refuse a socket a live run in another thread uses: its receiver's run or, while it has
    no live one (no receive had to wait yet: see ``_stream_recv``), its cached driver's run."""
    rx = sock._rx
    if rx is not None and not rx.driver.closed:
        if rx.thread != threading.get_ident():
            _check_thread(rx.driver)
    elif sock._driver is not None:
        _check_thread(sock._driver)


def _check_thread(driver: OpDriver) -> None:
    """A socket belongs to one trio run at a time: refuse one that another thread's run
    is using (its completions would reschedule our task from their run)."""
    if driver.thread != threading.get_ident() and not driver.closed:
        raise trio.BusyResourceError(
            "this socket is in use by a trio run in another thread; a socket belongs to one run at a time"
        )


def _writable_view(buffer: Any, nbytes: int, who: str) -> memoryview:
    """The bytes ``who`` may fill, checked before anything is received (stdlib's errors)."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(
            f"{who}() argument 'buffer' must be read-write bytes-like object, not {type(buffer).__name__}"
        ) from None
    if view.readonly:
        raise TypeError(
            f"{who}() argument 'buffer' must be read-write bytes-like object, not {type(buffer).__name__}"
        )
    view = view.cast("B")
    if nbytes < 0:
        raise ValueError(f"negative buffersize in {who}")
    if nbytes > len(view):
        raise ValueError("buffer too small for requested bytes")
    return view[:nbytes] if nbytes else view
