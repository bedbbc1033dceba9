"""One io_uring instance: setup with flag fallback, SQE preparation, batched submit/reap.

The ring knows nothing about trio tasks. It owns the native ring, the table of operations
the kernel still holds (``inflight``: user_data -> whatever the op layer stored, which keeps
buffers alive until the final completion), and the buffer rings registered on it.
Completions come back one batch per ``enter()`` call as flat lists: no Python object is
built per completion here.
"""

from __future__ import annotations

import contextlib
import enum
import errno as _errno
import os
import socket
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from .._native import ffi, lib
from ._errors import RingClosedError, UringUnavailable, kernel_error, setup_error

__all__ = ["Batch", "Ring", "SetupFlags", "CQE_F_MORE", "CQE_F_BUFFER", "CQE_F_NOTIF"]

CQE_F_BUFFER: int = lib.TU_IORING_CQE_F_BUFFER
CQE_F_MORE: int = lib.TU_IORING_CQE_F_MORE
CQE_F_NOTIF: int = lib.TU_IORING_CQE_F_NOTIF
CQE_F_BUF_MORE: int = lib.TU_IORING_CQE_F_BUF_MORE
CQE_BUFFER_SHIFT = 16


class SetupFlags(enum.IntFlag):
    """``IORING_SETUP_*`` flags this project uses."""

    NONE = 0
    CQSIZE = lib.IORING_SETUP_CQSIZE
    SUBMIT_ALL = lib.IORING_SETUP_SUBMIT_ALL
    COOP_TASKRUN = lib.IORING_SETUP_COOP_TASKRUN
    TASKRUN_FLAG = lib.IORING_SETUP_TASKRUN_FLAG
    CQE32 = lib.IORING_SETUP_CQE32
    SINGLE_ISSUER = lib.IORING_SETUP_SINGLE_ISSUER
    DEFER_TASKRUN = lib.IORING_SETUP_DEFER_TASKRUN
    CQE_MIXED = lib.TU_IORING_SETUP_CQE_MIXED


#: What a ring asks for unless told otherwise: completions run only when we enter the
#: kernel (fewer interrupts), a userspace-visible "work pending" bit, and submission that
#: goes on past a bad SQE.
DEFAULT_FLAGS = (
    SetupFlags.SINGLE_ISSUER
    | SetupFlags.DEFER_TASKRUN
    | SetupFlags.COOP_TASKRUN
    | SetupFlags.TASKRUN_FLAG
    | SetupFlags.SUBMIT_ALL
)


def run_ring_flags() -> SetupFlags:
    """Flags for a trio run's ring: the defaults, plus 32-byte CQEs where zero-copy receive
    could be used (it needs CAP_NET_ADMIN), so a ZeroCopyReceiver can share the run's ring."""
    from ._caps import has_cap_net_admin  # noqa: PLC0415 - avoids a cycle at import time

    return DEFAULT_FLAGS | SetupFlags.CQE32 if has_cap_net_admin() else DEFAULT_FLAGS


#: Groups dropped, in this order, when the kernel refuses a flag set with EINVAL (only groups
#: asked for and not required): the task-running flags newest first (SINGLE_ISSUER 6.0 with
#: DEFER_TASKRUN 6.1, TASKRUN_FLAG and COOP_TASKRUN 5.19), SUBMIT_ALL (5.18), then CQE_MIXED
#: (newer than all of these, and refused together with CQE32) and CQSIZE.
_FALLBACK_ORDER = (
    SetupFlags.SINGLE_ISSUER | SetupFlags.DEFER_TASKRUN,
    SetupFlags.TASKRUN_FLAG,
    SetupFlags.COOP_TASKRUN,
    SetupFlags.SUBMIT_ALL,
    SetupFlags.CQE_MIXED,
    SetupFlags.CQSIZE,
)

_MAX_ENTRIES = 32768
_live_rings: weakref.WeakSet[Ring] = weakref.WeakSet()
# Buffers of ops a ring could not drain before closing: kept forever rather than freed
# while the kernel might still write into them.
_orphaned_keepalive: list[Any] = []


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FdLike = int | _HasFileno


class Batch(NamedTuple):
    """Completions reaped by one ``Ring.enter()``: parallel lists, index i is one CQE."""

    user_data: list[int]
    res: list[int]
    flags: list[int]
    #: Each CQE32's ``big_cqe`` (the kernel's name for its 16 more bytes) as two u64,
    #: at 2*i and 2*i+1; None on 16-byte rings.
    big_cqe: list[int] | None


#: ``Batch(...)`` without the Python-level ``__new__`` of a NamedTuple (once per enter).
_new_batch: Callable[[type[Batch], tuple[Any, ...]], Batch] = tuple.__new__

#: What ``Ring.enter`` returns when a signal interrupted the wait (empty, but not a timeout).
INTERRUPTED = Batch([], [], [], None)


def flag_names(flags: int) -> str:
    """``SINGLE_ISSUER|DEFER_TASKRUN`` style text for setup flags."""
    names = [f.name for f in SetupFlags if f.name and f.value and flags & f.value == f.value]
    return "|".join(names) or "none"


def _check_pow2(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0 or value & (value - 1) or value > _MAX_ENTRIES:
        raise ValueError(f"{name} must be a power of two between 1 and {_MAX_ENTRIES}, got {value}")


def _fd_of(fd: FdLike) -> int:
    if isinstance(fd, int) and not isinstance(fd, bool):
        n = fd
    elif hasattr(fd, "fileno"):
        n = fd.fileno()
    else:
        raise TypeError(f"expected an fd (int) or an object with fileno(), got {type(fd).__name__}")
    if n < 0:
        raise ValueError(f"file descriptor must be >= 0, got {n} (closed socket?)")
    return n


def writable_cbuf(buf: Any) -> Any:
    """``char[]`` over a writable Python buffer; holding it pins the buffer (no resize)."""
    try:
        return ffi.from_buffer(buf, require_writable=True)
    except (BufferError, TypeError):
        raise TypeError(
            f"a writable buffer (bytearray, memoryview) is needed, not {type(buf).__name__}"
        ) from None


def readable_cbuf(data: Any) -> Any:
    """``char[]`` over any bytes-like object, for sends."""
    try:
        return ffi.from_buffer(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is needed, not {type(data).__name__}") from None


class Ring:
    """An io_uring instance owned by the thread that created it.

    ``flags`` are what we would like, ``required`` what we cannot do without; flags that
    the kernel refuses are dropped group by group (see ``_FALLBACK_ORDER``) and the ones
    granted are in ``self.flags``. Raises :class:`~trio_uring.UringUnavailable` when no ring can be
    made, with the reason.

    :raises UringUnavailable: no ring can be set up here (the reason says why).
    :raises ValueError: ``entries`` or ``cq_entries`` is not a power of two, or a bad ``batch``.
    """

    def __init__(
        self,
        entries: int = 256,
        *,
        cq_entries: int | None = None,
        flags: SetupFlags = DEFAULT_FLAGS,
        required: SetupFlags = SetupFlags.NONE,
        batch: int = 512,
    ) -> None:
        _check_pow2("entries", entries)
        if cq_entries is not None:
            _check_pow2("cq_entries", cq_entries)
            if cq_entries < entries:
                raise ValueError(f"cq_entries ({cq_entries}) must be >= entries ({entries})")
            flags |= SetupFlags.CQSIZE
            required |= SetupFlags.CQSIZE
        if not isinstance(batch, int) or batch <= 0:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if required & SetupFlags.DEFER_TASKRUN:
            required |= SetupFlags.SINGLE_ISSUER
        want = SetupFlags(flags | required)
        out = ffi.new("tu_ring **")
        ret = -_errno.EINVAL
        tried: list[SetupFlags] = []
        drops = [g for g in _FALLBACK_ORDER if g & want and not g & required]
        while True:
            tried.append(want)
            ret = lib.tu_ring_new(entries, cq_entries or 0, int(want), out)
            if ret != -_errno.EINVAL or not drops:
                break
            want &= ~drops.pop(0)
        if ret < 0:
            if ret == -_errno.EINVAL:
                raise UringUnavailable(
                    f"the kernel refused every io_uring setup flag set tried "
                    f"({'; '.join(flag_names(f) for f in tried)}); required: {flag_names(required)}",
                    errno=_errno.EINVAL,
                    remedy="use a newer kernel or ask for fewer ring features",
                )
            raise setup_error(ret)
        self._ptr: Any = out[0]
        self._pid = os.getpid()
        self.flags = SetupFlags(lib.tu_ring_flags(self._ptr))
        self.features: int = lib.tu_ring_features(self._ptr)
        self.sq_entries: int = lib.tu_ring_sq_entries(self._ptr)
        self.cq_entries: int = lib.tu_ring_cq_entries(self._ptr)
        self.fd: int = lib.tu_ring_fd(self._ptr)
        if not self.features & lib.IORING_FEAT_EXT_ARG:
            lib.tu_ring_free(self._ptr)
            self._ptr = None
            raise UringUnavailable(
                "this kernel's io_uring cannot wait with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11)",
                remedy="use Linux >= 6.1",
            )
        self.cqe32 = bool(self.flags & SetupFlags.CQE32)
        #: Deferred work runs only inside this thread's io_uring_enter: no op touches a
        #: socket between two enters (see :meth:`undelivered`).
        self.defer_taskrun = bool(self.flags & SetupFlags.DEFER_TASKRUN)
        #: user_data -> the op layer's record, for every op whose final CQE is still due.
        self.inflight: dict[int, Any] = {}
        #: Incremented each time queued SQEs are handed to the kernel.
        self.submit_generation = 0
        self._queued = 0
        self._batch = batch
        self._ud = ffi.new("uint64_t[]", batch)
        self._res = ffi.new("int32_t[]", batch)
        self._fl = ffi.new("uint32_t[]", batch)
        self._big_cqe = ffi.new("uint64_t[]", 2 * batch) if self.cqe32 else ffi.NULL
        self._bufrings: dict[Any, Any] = {}
        self._next_bgid = 0
        self._zcrx: list[Any] = []
        _live_rings.add(self)

    # ---- state ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (or the ring belongs to the parent of a forked process)."""
        return self._ptr is None

    def _p(self) -> Any:
        p = self._ptr
        if p is None:
            raise RingClosedError("this io_uring ring is closed")
        return p

    @property
    def native(self) -> Any:
        """The ``tu_ring *`` for other native calls (raises if closed)."""
        return self._p()

    @property
    def sq_pending(self) -> int:
        """SQEs prepared but not yet handed to the kernel."""
        return int(lib.tu_ring_sq_pending(self._p()))

    @property
    def enter_calls(self) -> int:
        """How many ``io_uring_enter`` syscalls this ring has made."""
        return int(lib.tu_ring_enter_calls(self._p()))

    @property
    def sq_flags(self) -> int:
        """The SQ ring's flags word as the kernel last wrote it (``IORING_SQ_TASKRUN``, ...)."""
        return int(lib.tu_ring_sq_flags(self._p()))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<Ring {state} sq={self.sq_entries} cq={self.cq_entries} flags={flag_names(self.flags)}>"

    # ---- submission ----------------------------------------------------------------------
    def _prep(self, fn: Callable[..., int], *args: Any) -> int:
        p = self._p()
        slot = fn(p, *args)
        if slot == -_errno.EBUSY:
            # SQ full: hand what is queued to the kernel, then there is room again.
            self.submit()
            slot = fn(p, *args)
        if slot < 0:
            raise kernel_error(slot, "io_uring SQE")
        self._queued += 1
        return slot

    def submit(self) -> int:
        """Hand every queued SQE to the kernel without waiting; returns how many."""
        p = self._p()
        if self._queued:
            self.submit_generation += 1
            self._queued = 0
        ret = lib.tu_submit(p)
        if ret < 0:
            raise kernel_error(ret, "io_uring_enter")
        return int(ret)

    @property
    def queued(self) -> int:
        """SQEs prepared since the last submission."""
        return self._queued

    def unsubmitted(self, generation: int) -> bool:
        """True if an SQE prepared at ``generation`` has not been handed to the kernel."""
        return generation == self.submit_generation and self._queued > 0

    def drop_unsubmitted(self, slot: int) -> bool:
        """Turn a queued, unsubmitted SQE into a NOP whose CQE is ignored."""
        return bool(lib.tu_sqe_to_nop(self._p(), slot, 0) == 0)

    def has_work(self) -> bool:
        """Completions, or deferred work that will produce them, are waiting (no syscall)."""
        return bool(lib.tu_ring_has_work(self._p()))

    def undelivered(self) -> bool:
        """Completions the kernel posted that were not reaped yet (no syscall).

        On a :attr:`defer_taskrun` ring, False means every op's results so far have been
        reaped: data a receive op has not delivered is still in its socket.
        """
        return bool(lib.tu_ring_cq_undelivered(self._p()))

    def register_eventfd(self, fd: int) -> None:
        """Have the kernel signal ``fd`` whenever completions or deferred work arrive.

        Needed by anyone who waits *outside* ``io_uring_enter`` (epoll, poll): with
        DEFER_TASKRUN, deferred completions wake a registered eventfd but not pollers of
        the ring fd (measured on 6.18).
        """
        ret = lib.tu_register_eventfd(self._p(), fd)
        if ret < 0:
            raise kernel_error(ret, "IORING_REGISTER_EVENTFD")

    @property
    def can_coalesce(self) -> bool:
        """The kernel takes a minimum wait time (``IORING_FEAT_MIN_TIMEOUT``, Linux 6.12)."""
        return bool(self.features & lib.TU_IORING_FEAT_MIN_TIMEOUT)

    def set_coalesce(self, usec: int, nr: int = 16) -> None:
        """Let waits gather up to ``nr`` completions for the first ``usec`` microseconds.

        Applies to later :meth:`enter` calls that wait under a timeout longer than
        ``usec``: the kernel wakes the waiter at ``nr`` completions, or once ``usec`` have
        passed with at least one. An event that comes later than ``usec`` after the wait
        began is not delayed at all. ``usec=0`` turns it off. Needs :attr:`can_coalesce`.
        """
        if usec and not self.can_coalesce:
            raise UringUnavailable(
                "this kernel has no minimum wait time for io_uring_enter", remedy="use Linux 6.12 or newer"
            )
        if usec < 0 or nr < 1:
            raise ValueError(f"need usec >= 0 and nr >= 1, got {usec}, {nr}")
        lib.tu_ring_set_coalesce(self._p(), usec, nr)

    def enter(self, wait_nr: int = 0, timeout: float | None = None) -> Batch:
        """Submit everything queued, wait for ``wait_nr`` CQEs or ``timeout`` seconds, reap.

        ``timeout=None`` waits without limit (only if ``wait_nr`` > 0). With nothing queued,
        nothing to wait for and no deferred work or CQ overflow flagged by the kernel, this is
        a userspace check of the CQ: no syscall. A signal ends the wait early with an empty
        batch (the Python handler then runs).

        :raises OSError: ``io_uring_enter`` failed (``EEXIST``: called from another thread).
        :raises RingClosedError: the ring is closed.
        """
        p = self._p()
        if self._queued:
            self.submit_generation += 1
            self._queued = 0
        if timeout is None:
            ns = -1
        elif timeout <= 0:
            ns = 0
        else:
            ns = max(1, int(timeout * 1e9))
        n = lib.tu_enter(p, wait_nr, ns, self._batch, self._ud, self._res, self._fl, self._big_cqe)
        if n <= 0:
            if n == 0:
                return _new_batch(Batch, ([], [], [], [] if self.cqe32 else None))
            if n == -_errno.EINTR:
                return INTERRUPTED
            raise kernel_error(n, "io_uring_enter")
        return _new_batch(
            Batch,
            (
                ffi.unpack(self._ud, n),
                ffi.unpack(self._res, n),
                ffi.unpack(self._fl, n),
                ffi.unpack(self._big_cqe, 2 * n) if self.cqe32 else None,
            ),
        )

    # ---- SQE preparation (each returns the SQ slot; see drop_unsubmitted) ------------------
    def prep_nop(self, ud: int) -> int:
        """Queue a ``NOP``; its CQE has ``res`` 0. Like every ``prep_*``, returns the SQ slot."""
        return self._prep(lib.tu_prep_nop, ud)

    def prep_accept(
        self,
        fd: FdLike,
        ud: int,
        *,
        multishot: bool = False,
        flags: int = 0,
        addr: Any = ffi.NULL,
        addrlen: Any = ffi.NULL,
    ) -> int:
        """Queue an ``ACCEPT`` (``multishot``: one CQE per connection while ``CQE_F_MORE``);
        the accepted fd, close-on-exec, is the CQE's ``res``."""
        f = flags | socket.SOCK_CLOEXEC
        return self._prep(lib.tu_prep_accept, _fd_of(fd), addr, addrlen, f, multishot, ud)

    def prep_connect(self, fd: FdLike, sockaddr: Any, addrlen: int, ud: int) -> int:
        """Queue a ``CONNECT`` to ``sockaddr`` (a C ``struct sockaddr *`` the caller keeps alive)."""
        return self._prep(lib.tu_prep_connect, _fd_of(fd), sockaddr, addrlen, ud)

    def prep_recv(self, fd: FdLike, buf: Any, ud: int, *, nbytes: int | None = None, flags: int = 0) -> int:
        """Receive into ``buf`` (writable buffer); the caller keeps ``buf`` alive until the CQE."""
        n = _fd_of(fd)
        cbuf = buf if isinstance(buf, ffi.CData) else writable_cbuf(buf)
        size = len(cbuf) if nbytes is None else min(nbytes, len(cbuf))
        return self._prep(lib.tu_prep_recv, n, cbuf, size, flags, ud)

    def prep_recv_select(
        self,
        fd: FdLike,
        bgid: int,
        ud: int,
        *,
        multishot: bool = True,
        bundle: bool = False,
        nbytes: int = 0,
        flags: int = 0,
    ) -> int:
        """Receive into a buffer the kernel picks from buffer group ``bgid``."""
        return self._prep(lib.tu_prep_recv_select, _fd_of(fd), bgid, nbytes, flags, multishot, bundle, ud)

    def prep_recv_zc(self, fd: FdLike, zcrx_id: int, ud: int, *, nbytes: int = 0) -> int:
        """Queue a multishot ``RECV_ZC`` into the zcrx interface queue ``zcrx_id`` (CQE32 rings)."""
        return self._prep(lib.tu_prep_recv_zc, _fd_of(fd), zcrx_id, nbytes, ud)

    def prep_send(
        self, fd: FdLike, cbuf: Any, nbytes: int, ud: int, *, flags: int = 0, zerocopy: bool = False
    ) -> int:
        """Send ``nbytes`` from ``cbuf`` (a ``ffi.from_buffer`` the caller keeps alive)."""
        fn = lib.tu_prep_send_zc if zerocopy else lib.tu_prep_send
        return self._prep(fn, _fd_of(fd), cbuf, nbytes, flags, ud)

    def prep_send_flags(self, fd: int, cbuf: Any, nbytes: int, flags: int, ud: int) -> int:
        """:meth:`prep_send` with positional flags and an int fd: for stream sends made as
        io_uring ops (a full socket, or every send of a run with ``send="ring"``)."""
        return self._prep(lib.tu_prep_send, fd, cbuf, nbytes, flags, ud)

    def prep_sendmsg(self, fd: FdLike, msghdr: Any, ud: int, *, flags: int = 0) -> int:
        """Queue a ``SENDMSG`` of ``msghdr`` (a C ``struct msghdr *`` the caller keeps alive)."""
        return self._prep(lib.tu_prep_sendmsg, _fd_of(fd), msghdr, flags, ud)

    def prep_shutdown(self, fd: FdLike, how: int, ud: int) -> int:
        """Queue a ``SHUTDOWN`` (``how``: ``socket.SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``)."""
        return self._prep(lib.tu_prep_shutdown, _fd_of(fd), how, ud)

    def prep_close(self, fd: FdLike, ud: int) -> int:
        """Queue a ``CLOSE`` of ``fd``."""
        return self._prep(lib.tu_prep_close, _fd_of(fd), ud)

    def prep_poll(self, fd: FdLike, events: int, ud: int, *, multishot: bool = False) -> int:
        """Queue a ``POLL_ADD`` for ``events`` (``select.POLL*``); the CQE's ``res`` is the revents."""
        return self._prep(lib.tu_prep_poll, _fd_of(fd), events, multishot, ud)

    def prep_timeout(self, ts: Any, ud: int, *, count: int = 0, flags: int = 0) -> int:
        """``ts`` is a ``struct __kernel_timespec *`` (see :func:`timespec`) kept alive by the caller."""
        return self._prep(lib.tu_prep_timeout, ts, count, flags, ud)

    def prep_cancel(self, target_ud: int, ud: int = 0) -> int:
        """Queue an ``ASYNC_CANCEL`` of the op with user_data ``target_ud``."""
        return self._prep(lib.tu_prep_cancel, target_ud, ud)

    def prep_cancel_fd(self, fd: FdLike, ud: int = 0) -> int:
        """Queue an ``ASYNC_CANCEL`` of every op on ``fd``."""
        return self._prep(lib.tu_prep_cancel_fd, _fd_of(fd), ud)

    # ---- lifetime ------------------------------------------------------------------------
    def register(self, key: Any, obj: Any) -> None:
        """Keep a buffer ring bound to this ring's lifetime: ``close`` tells it the ring is gone.

        (zcrx interface queues are not registered here: they live in the op driver's
        ``extensions`` and their native part is freed with the native ring.)
        """
        self._bufrings[key] = obj

    def unregister(self, key: Any) -> None:
        """Forget what :meth:`register` kept under ``key`` (nothing if there is none)."""
        self._bufrings.pop(key, None)

    def free_bgid(self) -> int:
        """A buffer group id no buffer ring on this ring uses (ids are 16 bits: a process
        that opens and closes many receivers must reuse them)."""
        for _ in range(1 << 16):
            self._next_bgid = self._next_bgid % 0xFFFF + 1
            if ("bufring", self._next_bgid) not in self._bufrings:
                return self._next_bgid
        raise OSError(_errno.ENOSPC, "all 65535 buffer group ids of this ring are in use")

    def drain(self, timeout: float = 2.0, on_batch: Callable[[Batch], None] | None = None) -> None:
        """Cancel every op the kernel holds and reap until their final CQEs arrived.

        ``on_batch`` (the op layer's dispatch) receives what is reaped and removes finished
        ops from ``inflight``; without it, finished ops are simply forgotten.
        """
        if self._ptr is None or not self.inflight:
            return
        for ud in list(self.inflight):
            self.prep_cancel(ud)
        deadline = time.monotonic() + timeout
        while self.inflight:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            b = self.enter(1, min(left, 0.05))
            if on_batch is not None:
                on_batch(b)
                continue
            for ud, fl in zip(b.user_data, b.flags):
                if not fl & CQE_F_MORE:
                    self.inflight.pop(ud, None)

    def close(self) -> None:
        """Cancel and drain in-flight ops, then release the ring and with it the buffer rings
        and zcrx refill rings registered on it (their slabs and areas stay mapped while Python
        views of them exist). Idempotent."""
        if self._ptr is None:
            return
        if os.getpid() == self._pid:
            self.drain()
            if self.inflight:
                warnings.warn(
                    f"closing an io_uring ring with {len(self.inflight)} ops the kernel did not "
                    "finish cancelling; their buffers are kept alive for the process lifetime",
                    ResourceWarning,
                    stacklevel=2,
                )
                _orphaned_keepalive.append(self.inflight)
        for obj in list(self._bufrings.values()):
            obj._ring_closed()
        self._bufrings.clear()
        ptr, self._ptr = self._ptr, None
        self.inflight = {}
        lib.tu_ring_free(ptr)
        _live_rings.discard(self)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            self.close()

    def _forget_after_fork(self) -> None:
        """In a forked child: never touch the parent's ring; drop our fd reference to it."""
        if self._ptr is None:
            return
        self._ptr = None
        self.inflight = {}
        self._bufrings.clear()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def timespec(seconds: float) -> Any:
    """A ``struct __kernel_timespec`` for timeout SQEs."""
    ts = ffi.new("struct __kernel_timespec *")
    ts.tv_sec = int(seconds)
    ts.tv_nsec = int((seconds - int(seconds)) * 1e9)
    return ts


def _after_fork_in_child() -> None:
    for ring in list(_live_rings):
        ring._forget_after_fork()
    _live_rings.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
