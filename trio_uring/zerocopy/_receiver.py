"""``open_zc_receiver``: a nursery-scoped receiver of buffer leases, same API in every mode.

A :class:`Lease` is one completion's data, a read-only view straight into memory the
kernel filled: the zcrx area (modes ``zcrx`` and ``zcrx-nodev``) or a buffer ring owned by
the receiver (``copy``). Releasing a lease gives its buffer back to the kernel exactly once
(a refill entry, or a buffer-ring re-add), batched once per scheduler pass. When the
``async with`` block ends — normally, by an error or by cancellation — the receive op is
cancelled and awaited, and every lease still out is returned.

A released lease's view is released too, so reading through it raises instead of showing
bytes the kernel wrote later. If the memory is still exported elsewhere (a numpy array made
from ``lease.data``, a slice of it someone kept), the buffer is *not* given back until that
export is gone: nothing can ever observe recycled memory through a lease.

The receiver has no task of its own: its completions are dispatched by the run's ring, and
its kernel work (refills, flushes) rides on the run's next submission.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import socket as _stdlib
import sys
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._core._bufring import BufferRing
from .._core._caps import has_cap_net_admin
from .._core._counters import receiver_closed, receiver_opened
from .._core._ops import MultishotOp, OpDriver
from .._core._plain import current_driver
from .._core._ring import CQE_BUFFER_SHIFT, CQE_F_BUF_MORE, CQE_F_MORE, SetupFlags
from .._core._waiter import Waiter
from .._native import ffi
from .._net._socket import _Conflict
from ._zcrx import AREA_MASK, PAGE, Ifq, ZeroCopyUnavailable, get_ifq

if TYPE_CHECKING:
    from .._net._socket import UringSocket

__all__ = ["Lease", "ReceiverStatistics", "ZeroCopyReceiver", "open_zc_receiver"]

MODES = ("zcrx", "zcrx-nodev", "copy")
DEFAULT_AREA = 16 << 20
#: Copy-mode buffer sizes. With incremental consumption a buffer holds many completions, and
#: a bigger one lets a completion carry all that arrived since the last (measured: ~120 KiB
#: per completion at 256 KiB against ~60 KiB at 64 KiB, half the leases per byte). Without
#: it each completion takes a whole buffer, so they stay small.
_COPY_BUF_INC = 256 * 1024
_COPY_BUF = 64 * 1024


class Lease:
    """One completion's bytes, on loan from the kernel until :meth:`release`."""

    __slots__ = ("_exporter", "_key", "_owner", "_released", "_rx", "_view", "nbytes")

    def __init__(self, rx: ZeroCopyReceiver, exporter: Any, key: Any, nbytes: int) -> None:
        self._rx = rx
        self._exporter = exporter
        self._view: memoryview | None = None  # made on first use: a lease nobody reads costs less
        self._key = key
        self._released = False
        #: Set while the lease is released but its memory is still exported (numpy...):
        #: the mapping's owner, kept alive by the lease until the export is gone.
        self._owner: Any = None
        self.nbytes = nbytes

    @property
    def data(self) -> memoryview:
        """Read-only view of the bytes, valid until the lease is released."""
        view = self._view
        if view is None:
            if self._released:
                raise ValueError("this lease was released: its buffer went back to the kernel")
            view = self._view = memoryview(self._exporter).toreadonly()
        return view

    @property
    def released(self) -> bool:
        return self._released

    def tobytes(self) -> bytes:
        return self.data.tobytes()

    def release(self) -> None:
        """Give the buffer back to the kernel. Idempotent."""
        if not self._released:
            self._released = True
            self._rx._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __len__(self) -> int:
        return self.nbytes

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Lease {self.nbytes} bytes, {state}>"


@attrs.define
class ReceiverStatistics:
    mode: str
    bytes: int = 0
    completions: int = 0
    leases_out: int = 0
    refills: int = 0
    high_water: int = 0
    rearms: int = 0
    flushes: int = 0
    fallback_reason: str = ""


#: Released leases whose memory was still exported when their receiver closed. Each holds
#: its memory's owner (``Lease._owner``) so no export can point at unmapped memory, and is
#: dropped — letting the memory go — once its export is gone (see :func:`_sweep_orphans`).
_ORPHANS: list[Lease] = []


def _sweep_orphans() -> None:
    """Forget orphaned leases nobody exports any more (each receiver open and close)."""
    if _ORPHANS:
        _ORPHANS[:] = [lease for lease in _ORPHANS if not _exports_gone(lease)]


def _exports_gone(lease: Lease) -> bool:
    """Release the lease's view; True once nothing else can read the lease's memory."""
    view = lease._view
    if view is not None:
        try:
            view.release()
        except BufferError:
            return False  # a buffer-protocol export of our view is alive (numpy, ...)
        lease._view = None
    # Slices of the view share its exporter through their managed buffer: while one is
    # alive the exporter has a reference besides ours (and getrefcount's argument).
    return sys.getrefcount(lease._exporter) <= 2


class ZeroCopyReceiver(trio.abc.ReceiveChannel[Lease]):
    """A ``ReceiveChannel[Lease]``; create it with :func:`open_zc_receiver`."""

    def __init__(self, driver: OpDriver, sock: UringSocket, mode: str, fallback_reason: str) -> None:
        self._driver = driver
        self._sock = sock
        self._fd = sock.fileno()
        self.mode = mode
        self._ready: deque[Lease] = deque()
        self._out: set[Lease] = set()
        self._zombies: list[Lease] = []
        self._waiter = Waiter()
        self._op: MultishotOp | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._closed = False
        self._sock_closed = False  # the socket was closed (by anyone) while we were open
        self._receiving = _Conflict("another task is already receiving from this zero-copy receiver")
        self._starved = False
        self._resume_at = 0  # after running dry, re-arm once this few leases are still out
        self._fallback_reason = fallback_reason
        # counters as plain ints (the hot path); statistics() makes the public snapshot
        self._bytes = self._completions = self._refills = self._high_water = self._rearms = 0
        self._ifq: Ifq | None = None
        self._bufs: BufferRing | None = None
        self._refs: list[int] = []
        #: Incremental buffers: where the kernel's next write into buffer ``bid`` starts;
        #: non-zero while it still writes there (the buffer must not be recycled yet).
        self._inc_off: list[int] = []
        self._recycle: list[int] = []
        self._flush_queued = False  # _flush is queued with driver.soon
        self._zombie_hook = False  # _check_zombies is a pre_enter hook
        self._inc = False
        self._base: Any = None
        self._buf_size = 0

    # ---- setup per mode ----------------------------------------------------------------------
    def _setup_copy(self, area_size: int) -> None:
        ring = self._driver.ring
        try:
            self._bufs = _copy_ring(ring, area_size, _COPY_BUF_INC, incremental=True)
        except OSError as exc:
            if exc.errno != _errno.EINVAL:  # EINVAL: this kernel lacks incremental buffers
                raise
            self._bufs = _copy_ring(ring, area_size, _COPY_BUF, incremental=False)
        entries = self._bufs.entries
        self._refs = [0] * entries
        self._inc_off = self._bufs._inc_offset  # BufferRing.take's state; take() is inlined below
        self._inc = self._bufs.incremental
        self._base = self._bufs._slab_ptr
        self._buf_size = self._bufs.buf_size

    def _arm(self) -> None:
        if self._op is not None or self._closed or self._eof or self._error is not None:
            return
        d = self._driver
        if d.closed or self._sock_closed or self._sock.fileno() != self._fd:
            return  # never arm on an fd number that may mean another connection by now
        if self._ifq is not None:
            self._op = d.start_multishot32(
                d.ring.prep_recv_zc, self._fd, self._ifq.zcrx_id, fd=self._fd, on_cqe32=self._on_zc_cqe
            )
        else:
            assert self._bufs is not None
            self._op = d.start_multishot(
                d.ring.prep_recv_select, self._fd, self._bufs.bgid, fd=self._fd, on_cqe=self._on_copy_cqe
            )
        self._rearms += 1

    # ---- completions ---------------------------------------------------------------------------
    def _deliver(self, lease: Lease) -> None:
        self._bytes += lease.nbytes
        self._completions += 1
        self._ready.append(lease)
        out = self._out
        out.add(lease)
        if len(out) > self._high_water:  # noqa: PLR1730 - a compare, not a call, per completion
            self._high_water = len(out)

    def _on_copy_cqe(self, res: int, flags: int) -> None:
        if res > 0:
            self._driver.bulk_bytes += res
            bid = flags >> CQE_BUFFER_SHIFT
            off = 0
            if self._inc:
                off = self._inc_off[bid]
                self._inc_off[bid] = off + res if flags & CQE_F_BUF_MORE else 0
            self._refs[bid] += 1
            self._deliver(Lease(self, ffi.buffer(self._base + (bid * self._buf_size + off), res), bid, res))
        if not flags & CQE_F_MORE or self._waiter.task is not None:
            self._after_cqe(res, flags, _errno.ENOBUFS)

    def _on_zc_cqe(self, res: int, flags: int, off: int) -> None:
        if res > 0 and flags & CQE_F_MORE:
            assert self._ifq is not None
            self._driver.bulk_bytes += res
            start = off & AREA_MASK
            self._deliver(Lease(self, ffi.buffer(self._ifq._slab + start, res), off, res))
        if not flags & CQE_F_MORE or self._waiter.task is not None:
            self._after_cqe(res, flags, _errno.ENOMEM)

    def _after_cqe(self, res: int, flags: int, starve_errno: int) -> None:
        if not flags & CQE_F_MORE:
            self._op = None
            if res == 0:
                self._eof = True
            elif res == -starve_errno:
                # Every buffer is leased out. Re-arm once half of them came back, not at the
                # first release: one buffer at a time would cost a re-arm per completion.
                self._starved = True
                held = len(self._out) + len(self._zombies)
                self._resume_at = held // 2
                if self._ifq is not None:
                    self._ifq.flush_wanted = True
                if held == 0:  # nothing of ours is out
                    self._starved = False
                    if self._ifq is not None:
                        self._ifq.starved.add(self)  # others hold the area: wait for their refills
                    else:
                        self._arm()  # our recycled buffers reach the kernel before this SQE
            elif res == -_errno.ENOSPC or (res > 0 and not self._closed):
                self._arm()  # the CQ was full, or the kernel ended the multishot itself
            elif res < 0 and res != -_errno.ECANCELED:
                self._error = OSError(-res, f"zero-copy receive: {os.strerror(-res)}")
        if self._waiter.task is not None and (self._ready or self._eof or self._error is not None):
            self._waiter.wake()

    # ---- giving buffers back -----------------------------------------------------------------
    def _memory_owner(self) -> Any:
        """What keeps the leases' memory mapped: the area's or the buffer ring's slab."""
        return self._ifq._slab if self._ifq is not None else self._base

    def _release(self, lease: Lease) -> None:
        self._out.discard(lease)
        if _exports_gone(lease):
            lease._exporter = None
            self._give_back(lease._key, lease.nbytes)
        else:
            lease._owner = self._memory_owner()
            self._zombies.append(lease)
            if not self._zombie_hook:  # first in its pass, so its refill goes out with it
                self._zombie_hook = True
                self._driver.pre_enter.insert(0, self._check_zombies)

    def _give_back(self, key: int, nbytes: int) -> None:
        self._refills += 1
        if self._ifq is not None:
            self._ifq.give_back(key, nbytes)
        else:
            refs = self._refs[key] - 1
            self._refs[key] = refs
            if refs == 0 and not self._inc_off[key]:
                self._recycle.append(key)
                if not self._flush_queued:
                    self._flush_queued = True
                    self._driver.soon(self._flush)
        if self._starved and not self._closed and len(self._out) + len(self._zombies) <= self._resume_at:
            self._starved = False
            if self._ifq is not None:
                self._ifq.flush_wanted = True
            self._driver.soon(self._arm)

    def _check_zombies(self) -> None:
        """Every pass while some exist: give back buffers whose exports are gone."""
        still = []
        for lease in self._zombies:
            if _exports_gone(lease):
                lease._exporter = lease._owner = None
                self._give_back(lease._key, lease.nbytes)
            else:
                still.append(lease)
        self._zombies = still
        if not still:
            self._driver.soon(self._unhook_zombies)  # not from inside the hook loop

    def _unhook_zombies(self) -> None:
        if self._zombie_hook and not self._zombies:
            self._zombie_hook = False
            with contextlib.suppress(ValueError):
                self._driver.pre_enter.remove(self._check_zombies)

    def _flush(self) -> None:
        """Before the next enter: the buffers given back since, in one ring re-add."""
        self._flush_queued = False
        if self._recycle and self._bufs is not None and not self._bufs.closed:
            self._bufs.recycle(self._recycle)
            self._recycle.clear()

    # ---- the channel -------------------------------------------------------------------------------
    async def _wait(self) -> None:
        """A checkpoint; if nothing is ready, sleep until something is (or the end)."""
        if self._closed:
            raise trio.ClosedResourceError("this zero-copy receiver is closed")
        if self._ready:
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._eof and self._error is None and not self._sock_closed:
            self._arm()
            await self._waiter.park()
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _end(self) -> BaseException | None:
        """Why nothing more will be received, or None if more may come."""
        if self._error is not None:
            exc = trio.BrokenResourceError(f"receive failed: {self._error}")
            exc.__cause__ = self._error
            return exc
        if self._closed:
            return trio.ClosedResourceError("this zero-copy receiver is closed")
        if self._sock_closed:
            return trio.ClosedResourceError("the socket of this zero-copy receiver was closed")
        return trio.EndOfChannel() if self._eof else None

    async def receive(self) -> Lease:
        """The next lease; ``EndOfChannel`` at end of stream. One task at a time."""
        with self._receiving:
            while True:
                await self._wait()
                if self._closed:  # aclose() began while we were at the checkpoint
                    raise trio.ClosedResourceError("this zero-copy receiver is closed")
                if self._ready:
                    return self._ready.popleft()
                end = self._end()
                if end is not None:
                    raise end

    async def receive_batch(self, max_leases: int = 64) -> list[Lease]:
        """Every lease already received (at least one, at most ``max_leases``), in order.

        One checkpoint for the whole batch instead of one per lease: the fast way to drain a
        busy stream. An empty list means end of stream. One task at a time.
        """
        if max_leases < 1:
            raise ValueError("max_leases must be >= 1")
        with self._receiving:
            while True:
                await self._wait()
                if self._closed:  # aclose() began while we were at the checkpoint
                    raise trio.ClosedResourceError("this zero-copy receiver is closed")
                ready = self._ready
                if ready:
                    if len(ready) <= max_leases:
                        batch = list(ready)
                        ready.clear()
                        return batch
                    return [ready.popleft() for _ in range(max_leases)]
                end = self._end()
                if isinstance(end, trio.EndOfChannel):
                    return []
                if end is not None:
                    raise end

    def statistics(self) -> ReceiverStatistics:
        return ReceiverStatistics(
            mode=self.mode,
            bytes=self._bytes,
            completions=self._completions,
            leases_out=len(self._out),
            refills=self._refills,
            high_water=self._high_water,
            rearms=self._rearms,
            flushes=self._ifq.flushes if self._ifq is not None else 0,
            fallback_reason=self._fallback_reason,
        )

    async def aclose(self) -> None:
        await self._shutdown()
        await trio.lowlevel.checkpoint()

    def _socket_closed(self) -> None:
        """The socket was closed (by any task): stop, and wake a waiter with ClosedResourceError."""
        self._sock_closed = True
        if self._op is not None and not self._driver.closed:
            self._driver.cancel(self._op)
        self._waiter.wake()

    async def _stop_op(self) -> None:
        """Cancel the receive op and wait for its final completion (shielded, bounded)."""
        d = self._driver
        op = self._op
        if op is None or d.closed:
            return
        d.cancel(op)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            while self._op is op and not d.closed:
                await trio.sleep(0)

    async def _shutdown(self) -> None:
        """Cancel the receive op, await its end, give undelivered data back to the stream,
        return every lease. Safe to repeat."""
        if self._closed:
            return
        self._closed = True
        d = self._driver
        await self._stop_op()
        sock = self._sock
        still_open = not self._sock_closed and sock.fileno() == self._fd
        # Taken from the socket but never handed out: it goes back in front of the stream.
        undelivered = b"".join([bytes(lease._exporter) for lease in self._ready]) if still_open else b""
        for lease in list(self._ready) + list(self._out):
            if not lease._released:
                lease.release()
        self._ready.clear()
        if self._zombies:
            self._check_zombies()
        self._flush()
        self._zombie_hook = False
        with contextlib.suppress(ValueError):
            d.pre_enter.remove(self._check_zombies)
        _ORPHANS.extend(self._zombies)  # exported still: they keep their memory until they are not
        self._zombies = []
        _sweep_orphans()
        if self._ifq is not None:
            self._ifq.starved.discard(self)
            self._ifq.flush()
            self._ifq.users -= 1
        if self._bufs is not None:
            # the kernel stops using the memory now; views still exported keep it mapped
            self._bufs.close()
        if sock._zc is self:
            sock._zc = None
        if still_open:
            error = self._error if isinstance(self._error, OSError) else None
            if undelivered or self._eof or error is not None:
                srx = sock._receiver()
                if srx is not None:
                    srx.give_back(undelivered, eof=self._eof, error=error)
        sock._recv_conflict._held = False  # the stream's receive side is its own again
        self._waiter.wake()


def _copy_ring(ring: Any, area_size: int, buf_size: int, *, incremental: bool) -> BufferRing:
    """A buffer ring of about ``area_size`` bytes in at least 16 buffers where it can be.

    Every lease holds (part of) one buffer until released, so the buffer count bounds how
    many leases a consumer can hold before receiving stops: small areas get small buffers.
    """
    while buf_size > 4096 and buf_size * 16 > area_size:
        buf_size >>= 1
    entries = 1
    while entries * buf_size < area_size and entries < 32768:
        entries <<= 1
    return BufferRing(ring, entries=entries, buf_size=buf_size, incremental=incremental)


def _uring_socket(obj: Any) -> UringSocket:
    """The io_uring socket behind ``obj`` (a UringSocket or a stream over one)."""
    from .._net._socket import UringSocket  # noqa: PLC0415 - zerocopy sits beside _net

    sock = getattr(obj, "socket", obj)
    if not isinstance(sock, UringSocket):
        raise TypeError(
            f"open_zc_receiver needs a trio_uring socket or a stream over one, not {type(obj).__name__}. "
            "The receiver takes over the socket's receive side and gives back what it did not deliver, "
            "which only an io_uring socket can do: create it with trio_uring.open_tcp_stream, "
            "serve_tcp or trio_uring.socket, or wrap one with trio_uring.socket.from_stdlib_socket(sock)"
        )
    if sock.fileno() < 0:
        raise trio.ClosedResourceError("the socket is closed")
    if sock.type != _stdlib.SOCK_STREAM:
        raise ValueError("zero-copy receive needs a TCP stream socket")
    return sock


def _zcrx_ifq(
    driver: OpDriver, mode: str, interface: str | None, queue: int, area_size: int, *, family: int
) -> Ifq:
    """The ifq for ``mode`` on this run's ring, or ZeroCopyUnavailable naming what is missing."""
    if family not in (_stdlib.AF_INET, _stdlib.AF_INET6):
        raise ZeroCopyUnavailable(
            f"zcrx receives TCP only; this is an {_stdlib.AddressFamily(family).name} socket",
            "use mode='copy' (or 'auto') for it",
        )
    if mode == "zcrx" and interface is None:
        raise ZeroCopyUnavailable(
            "mode 'zcrx' needs interface= (the NIC that receives the traffic)",
            "pass interface='eth0' (see `ip link`) and queue=N",
        )
    if not has_cap_net_admin():
        raise ZeroCopyUnavailable(
            "zcrx needs CAP_NET_ADMIN in the initial user namespace",
            "run as root or grant the capability (setcap cap_net_admin+ep, or "
            "AmbientCapabilities=CAP_NET_ADMIN in a systemd unit)",
        )
    flags = driver.ring.flags
    if not flags & SetupFlags.CQE32 or not flags & SetupFlags.DEFER_TASKRUN:
        raise ZeroCopyUnavailable(
            "the run's ring lacks CQE32 or DEFER_TASKRUN (the kernel refused them)", "use Linux >= 6.15"
        )
    # the area is mapped in whole pages: round up rather than refuse
    area = -(-area_size // PAGE) * PAGE
    return get_ifq(driver, interface, queue, area, nodev=(mode == "zcrx-nodev"))


def _check_args(mode: str, queue: int | None, area_size: int) -> None:
    if mode not in (*MODES, "auto"):
        raise ValueError(f"mode must be one of {', '.join((*MODES, 'auto'))}, not {mode!r}")
    if not isinstance(area_size, int) or isinstance(area_size, bool) or area_size <= 0:
        raise ValueError(f"area_size must be a positive int, got {area_size!r}")
    if queue is not None and (
        not isinstance(queue, int) or isinstance(queue, bool) or not 0 <= queue < 1 << 32
    ):
        raise ValueError(f"queue must be an rx queue index (an int >= 0, see `ethtool -l IF`), got {queue!r}")


@contextlib.asynccontextmanager
async def open_zc_receiver(
    stream_or_socket: Any,
    *,
    interface: str | None = None,
    queue: int | None = None,
    area_size: int = DEFAULT_AREA,
    mode: str = "auto",
) -> AsyncIterator[ZeroCopyReceiver]:
    """Receive ``stream_or_socket``'s data as :class:`Lease` objects for the block's duration.

    ``mode="auto"`` tries ``zcrx`` (needs ``interface``), then ``zcrx-nodev`` (Linux >= 7.1),
    then ``copy``, and records in ``statistics().fallback_reason`` why earlier ones were
    skipped; an explicit mode raises :class:`ZeroCopyUnavailable` instead of falling back.

    The receiver owns the socket's receive side while the block runs: another receiver or
    a stream read meanwhile raises ``trio.BusyResourceError``. Data the stream had already
    received comes first; data the receiver took from the socket but did not hand out goes
    back to the stream when the block ends, so nothing is lost either way. Closing the
    socket (from any task) ends the receiver with ``trio.ClosedResourceError``.
    """
    _check_args(mode, queue, area_size)
    sock = _uring_socket(stream_or_socket)
    driver = current_driver()
    conflict = sock._recv_conflict
    if conflict._held:
        raise trio.BusyResourceError(
            "this socket's receive side is in use: another task is receiving from it, or another "
            "zero-copy receiver is open on it"
        )
    reasons: list[str] = []
    chosen, ifq = "copy", None
    for m in MODES if mode == "auto" else (mode,):
        if m == "copy":
            chosen = m
            break
        try:
            ifq = _zcrx_ifq(
                driver, m, interface, 0 if queue is None else queue, area_size, family=int(sock.family)
            )
        except ZeroCopyUnavailable as exc:
            if mode != "auto":
                raise
            reasons.append(f"{m}: {exc.reason}")
        else:
            chosen = m
            break
    rx = ZeroCopyReceiver(driver, sock, chosen, "; ".join(reasons))
    if ifq is not None:
        rx._ifq = ifq
        ifq.users += 1
    else:
        rx._setup_copy(area_size)
    conflict._held = True
    sock._zc = rx
    _sweep_orphans()
    receiver_opened(rx, chosen, reasons)  # statistics(); logs why auto skipped modes
    try:
        await _take_over(rx, sock)
        yield rx
    finally:
        receiver_closed(rx, rx._bytes)
        await rx._shutdown()


async def _take_over(rx: ZeroCopyReceiver, sock: UringSocket) -> None:
    """Stop the stream's own receive op and hand its queued data out first, in order."""
    srx = sock._rx
    if srx is None:
        return
    if srx.detached:  # from an earlier run: its data carries over into this run's receiver
        srx = sock._receiver()
        if srx is None:
            return
    await srx.quiesce()
    data = srx.hand_over()
    if data:
        rx._deliver(_HandedLease(rx, data, 0, len(data)))
    rx._eof = srx.eof
    rx._error = srx.error


class _HandedLease(Lease):
    """Bytes the stream had received before the receiver opened: a copy in our own memory,
    so releasing it gives nothing back to the kernel."""

    __slots__ = ()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._rx._out.discard(self)
            view, self._view = self._view, None
            if view is not None:
                with contextlib.suppress(BufferError):  # immutable bytes: an export is harmless
                    view.release()
