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
from typing import Any

import attrs
import trio

from .._core._bufring import BufferRing
from .._core._caps import has_cap_net_admin
from .._core._ops import MultishotOp, OpDriver
from .._core._plain import current_driver
from .._core._ring import CQE_BUFFER_SHIFT, CQE_F_BUF_MORE, CQE_F_MORE, SetupFlags
from .._core._waiter import Waiter
from .._native import ffi
from ._zcrx import AREA_MASK, Ifq, ZeroCopyUnavailable, get_ifq

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

    __slots__ = ("_exporter", "_key", "_released", "_rx", "_view", "nbytes")

    def __init__(self, rx: ZeroCopyReceiver, exporter: Any, key: Any, nbytes: int) -> None:
        self._rx = rx
        self._exporter = exporter
        self._view: memoryview | None = None  # made on first use: a lease nobody reads costs less
        self._key = key
        self._released = False
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


#: Owners of memory that released-but-still-exported leases point into: kept mapped for
#: the life of the process rather than risk a view onto unmapped or recycled memory.
_PINNED: list[Any] = []


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

    def __init__(self, driver: OpDriver, fd: int, mode: str, fallback_reason: str) -> None:
        self._driver = driver
        self._fd = fd
        self.mode = mode
        self._ready: deque[Lease] = deque()
        self._out: set[Lease] = set()
        self._zombies: list[Lease] = []
        self._waiter = Waiter()
        self._op: MultishotOp | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._closed = False
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
        if self._ifq is not None:
            self._op = d.start_multishot32(d.ring.prep_recv_zc, self._fd, self._ifq.zcrx_id,
                                           fd=self._fd, on_cqe32=self._on_zc_cqe)
        else:
            assert self._bufs is not None
            self._op = d.start_multishot(d.ring.prep_recv_select, self._fd, self._bufs.bgid,
                                         fd=self._fd, on_cqe=self._on_copy_cqe)
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
        return self._ifq if self._ifq is not None else self._bufs

    def _release(self, lease: Lease) -> None:
        self._out.discard(lease)
        if _exports_gone(lease):
            lease._exporter = None
            self._give_back(lease._key, lease.nbytes)
        else:
            self._zombies.append(lease)
            owner = self._memory_owner()
            if not any(o is owner for o in _PINNED):
                _PINNED.append(owner)
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
                lease._exporter = None
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
        if not self._eof and self._error is None:
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
        return trio.EndOfChannel() if self._eof else None

    async def receive(self) -> Lease:
        await self._wait()
        if self._ready:
            return self._ready.popleft()
        end = self._end()
        if end is None:  # another task took what was ready while this one was at the checkpoint
            return await self.receive()
        raise end

    async def receive_batch(self, max_leases: int = 64) -> list[Lease]:
        """Every lease already received (at least one, at most ``max_leases``), in order.

        One checkpoint for the whole batch instead of one per lease: the fast way to drain a
        busy stream. An empty list means end of stream.
        """
        if max_leases < 1:
            raise ValueError("max_leases must be >= 1")
        await self._wait()
        ready = self._ready
        if ready:
            if len(ready) <= max_leases:
                batch = list(ready)
                ready.clear()
                return batch
            return [ready.popleft() for _ in range(max_leases)]
        end = self._end()
        if end is None:
            return await self.receive_batch(max_leases)
        if isinstance(end, trio.EndOfChannel):
            return []
        raise end

    def statistics(self) -> ReceiverStatistics:
        return ReceiverStatistics(
            mode=self.mode, bytes=self._bytes, completions=self._completions, leases_out=len(self._out),
            refills=self._refills, high_water=self._high_water, rearms=self._rearms,
            flushes=self._ifq.flushes if self._ifq is not None else 0, fallback_reason=self._fallback_reason)

    async def aclose(self) -> None:
        await self._shutdown()
        await trio.lowlevel.checkpoint()

    async def _shutdown(self) -> None:
        """Cancel the receive op, await its end, return every lease. Safe to repeat."""
        if self._closed:
            return
        self._closed = True
        d = self._driver
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            if self._op is not None and not d.closed:
                op = self._op
                d.cancel(op)
                while op.ud in d.ring.inflight and not d.ring.closed:
                    await trio.sleep(0.001)
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
        if self._ifq is not None:
            self._ifq.starved.discard(self)
            self._ifq.flush()
            self._ifq.users -= 1
        if self._bufs is not None:
            # the kernel stops using the memory now; views still exported keep it mapped
            self._bufs.close()
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


def _socket_fd(obj: Any) -> tuple[int, Any, int]:
    """(fd, UringSocket or None, address family) for a stream or a socket."""
    from .._net._socket import UringSocket  # noqa: PLC0415 - zerocopy sits beside _net

    sock = getattr(obj, "socket", obj)
    if not hasattr(sock, "fileno"):
        raise TypeError(f"expected a socket or a stream over one, not {type(obj).__name__}")
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the socket is closed")
    if getattr(sock, "type", _stdlib.SOCK_STREAM) != _stdlib.SOCK_STREAM:
        raise ValueError("zero-copy receive needs a TCP stream socket")
    family = getattr(sock, "family", _stdlib.AF_INET)
    return fd, sock if isinstance(sock, UringSocket) else None, int(family)


def _zcrx_ifq(driver: OpDriver, mode: str, interface: str | None, queue: int, area_size: int, *,
              family: int) -> Ifq:
    """The ifq for ``mode`` on this run's ring, or ZeroCopyUnavailable naming what is missing."""
    if family not in (_stdlib.AF_INET, _stdlib.AF_INET6):
        raise ZeroCopyUnavailable(f"zcrx receives TCP only; this is an {_stdlib.AddressFamily(family).name} "
                                  "socket", "use mode='copy' (or 'auto') for it")
    if mode == "zcrx" and interface is None:
        raise ZeroCopyUnavailable("mode 'zcrx' needs interface= (the NIC that receives the traffic)",
                                  "pass interface='eth0' (see `ip link`) and queue=N")
    if not has_cap_net_admin():
        raise ZeroCopyUnavailable(
            "zcrx needs CAP_NET_ADMIN in the initial user namespace",
            "run as root or grant the capability (setcap cap_net_admin+ep, or "
            "AmbientCapabilities=CAP_NET_ADMIN in a systemd unit)")
    flags = driver.ring.flags
    if not flags & SetupFlags.CQE32 or not flags & SetupFlags.DEFER_TASKRUN:
        raise ZeroCopyUnavailable("the run's ring lacks CQE32 or DEFER_TASKRUN (the kernel refused them)",
                                  "use Linux >= 6.15")
    return get_ifq(driver, interface, queue, area_size, nodev=(mode == "zcrx-nodev"))


@contextlib.asynccontextmanager
async def open_zc_receiver(stream_or_socket: Any, *, interface: str | None = None,
                           queue: int | None = None, area_size: int = DEFAULT_AREA,
                           mode: str = "auto") -> AsyncIterator[ZeroCopyReceiver]:
    """Receive ``stream_or_socket``'s data as :class:`Lease` objects for the block's duration.

    ``mode="auto"`` tries ``zcrx`` (needs ``interface``), then ``zcrx-nodev`` (Linux >= 7.1),
    then ``copy``, and records in ``statistics().fallback_reason`` why earlier ones were
    skipped; an explicit mode raises :class:`ZeroCopyUnavailable` instead of falling back.
    Data the stream had already received but not handed out is delivered first (as leases
    over the stream's buffers). Do not read the stream by other means inside the block.
    """
    if mode not in (*MODES, "auto"):
        raise ValueError(f"mode must be one of {', '.join((*MODES, 'auto'))}, not {mode!r}")
    if not isinstance(area_size, int) or area_size <= 0:
        raise ValueError(f"area_size must be a positive int, got {area_size!r}")
    fd, usock, family = _socket_fd(stream_or_socket)
    driver = current_driver()
    reasons: list[str] = []
    chosen, ifq = "copy", None
    for m in (MODES if mode == "auto" else (mode,)):
        if m == "copy":
            chosen = m
            break
        try:
            ifq = _zcrx_ifq(driver, m, interface, 0 if queue is None else queue, area_size, family=family)
        except ZeroCopyUnavailable as exc:
            if mode != "auto":
                raise
            reasons.append(f"{m}: {exc.reason}")
        else:
            chosen = m
            break
    rx = ZeroCopyReceiver(driver, fd, chosen, "; ".join(reasons))
    if ifq is not None:
        rx._ifq = ifq
        ifq.users += 1
    else:
        rx._setup_copy(area_size)
    try:
        if usock is not None and usock._rx is not None:
            await _take_over(rx, usock)
        yield rx
    finally:
        await rx._shutdown()


async def _take_over(rx: ZeroCopyReceiver, usock: Any) -> None:
    """Stop the stream's own receive op and hand its queued data out first, in order."""
    srx = usock._rx
    d = rx._driver
    op = srx._op
    if op is not None:
        d.cancel(op)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            while op.ud in d.ring.inflight:
                await trio.sleep(0.001)
    pool = srx._pool
    for bid, off, ln in list(srx._chunks):
        start = bid * pool.size + off
        lease = _PoolLease(rx, ffi.buffer(pool.bufs._slab_ptr + start, ln), bid, ln, pool)
        rx._deliver(lease)
    srx._chunks.clear()
    srx._pending = 0
    if srx._eof:
        rx._eof = True
    srx.closed = True
    usock._rx = None


class _PoolLease(Lease):
    """A lease over data the stream had already received into the run's shared buffers."""

    __slots__ = ("_pool",)

    def __init__(self, rx: ZeroCopyReceiver, exporter: Any, key: int, nbytes: int, pool: Any) -> None:
        super().__init__(rx, exporter, key, nbytes)
        self._pool = pool

    def release(self) -> None:
        if not self._released:
            self._released = True
            rx = self._rx
            rx._out.discard(self)
            if _exports_gone(self):
                self._pool.release(self._key)
            elif not any(o is self._pool for o in _PINNED):
                _PINNED.append(self._pool)  # that shared buffer stays out for good
