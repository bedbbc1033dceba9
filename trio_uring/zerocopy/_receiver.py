"""``open_zc_receiver``: a nursery-scoped receiver of buffer leases, same API in every mode.

A :class:`Lease` is one completion's data, a read-only view straight into memory the
kernel filled: the zcrx area (modes ``zcrx`` and ``zcrx-nodev``) or a buffer ring owned by
the receiver (``copy``); where it comes from is the receiver's *source* (``_sources.py``).
Releasing a lease gives its buffer back to the kernel exactly once (a refill entry, or a
buffer-ring re-add), batched once per scheduler pass. When the ``async with`` block ends —
normally, by an error or by cancellation — the receive op is cancelled and awaited, and
every lease still out is returned; leases whose memory is still exported (``_lease.py``)
keep it until the export is gone.

The receiver has no task of its own: its completions are dispatched by the run's ring, and
its kernel work (refills, flushes) rides on the run's next submission.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import socket as _stdlib
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._core._counters import receiver_closed, receiver_opened
from .._core._errors import errno_error
from .._core._ops import MultishotOp, OpDriver
from .._core._plain import current_driver
from .._core._ring import CQE_F_MORE
from .._core._traps import cancel_shielded_checkpoint, proceed_uncancelled
from .._core._waiter import Conflict, Waiter
from .._net._receive_side import ReceiveSide, claim_receive_side
from .._net._worker import worker_zc_queue
from ._lease import HandedLease, Lease, exports_gone, keep_orphans, sweep_orphans
from ._sources import SOURCES, ReceiveSource
from ._zcrx import ZeroCopyUnavailable

if TYPE_CHECKING:
    from .._net._socket import UringSocket

__all__ = ["Lease", "ReceiverStatistics", "ZeroCopyReceiver", "open_zc_receiver"]

DEFAULT_AREA = 16 << 20


@attrs.define
class ReceiverStatistics:
    """A snapshot of one receiver's counters, from :meth:`ZeroCopyReceiver.statistics`."""

    #: ``"zcrx"``, ``"zcrx-nodev"`` or ``"copy"``: where the data arrives.
    mode: str
    #: Bytes delivered as leases.
    bytes: int = 0
    #: Data completions. Each is a lease, or joins the last queued lease when the kernel
    #: appended to the same buffer right after it (copy mode, a consumer that lags).
    completions: int = 0
    #: Leases delivered: every one goes back as one refill.
    leases: int = 0
    #: Leases handed out and not yet released.
    leases_out: int = 0
    #: Buffers given back to the kernel (refill entries, or buffer-ring re-adds).
    refills: int = 0
    #: The most leases out at once.
    high_water: int = 0
    #: Times the receive op was armed: once at the start, again after running dry or after
    #: the kernel ended the multishot op.
    rearms: int = 0
    #: ``ZCRX_CTRL_FLUSH_RQ`` calls made on this receiver's interface queue, which the
    #: receivers of one ring share (zcrx modes; 0 in copy mode).
    flushes: int = 0
    #: Why ``mode="auto"`` skipped the modes before this one ("" if none was skipped).
    fallback_reason: str = ""


class ZeroCopyReceiver(trio.abc.ReceiveChannel[Lease]):
    """A ``ReceiveChannel[Lease]``; create it with :func:`open_zc_receiver`."""

    def __init__(
        self, driver: OpDriver, side: ReceiveSide, source: ReceiveSource, fallback_reason: str
    ) -> None:
        self._driver = driver
        self._side = side
        self._fd = side.fd
        self._source = source
        source.rx = self
        self.mode = source.mode
        self._ready: deque[Lease] = deque()
        self._out: set[Lease] = set()
        self._zombies: list[Lease] = []
        self._waiter = Waiter()
        self._op: MultishotOp | None = None
        self._eof = False
        self._error: OSError | None = None
        self._closed = False
        self._receiving = Conflict("another task is already receiving from this zero-copy receiver")
        self._starved = False
        self._resume_at = 0  # after running dry, re-arm once this few leases are still out
        self._fallback_reason = fallback_reason
        # counters as plain ints (the hot path); statistics() makes the public snapshot
        self._bytes = self._completions = self._leases = self._refills = self._high_water = self._rearms = 0
        self._zombie_hook = False  # _check_zombies is a pre_enter hook
        #: The thread the run's tasks run in, and the way back into the run from others: a
        #: lease handed to a worker thread may be released there.
        self._thread = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()

    # ---- the receive op --------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._op is not None or self._closed or self._eof or self._error is not None:
            return
        if self._driver.closed or not self._side.usable:
            return  # never arm on an fd number that may mean another connection by now
        self._op = self._source.arm(self._fd)
        self._rearms += 1

    def _deliver(self, lease: Lease) -> None:
        """A completion's lease (called by the source): queue it for the consumer."""
        self._bytes += lease.nbytes
        self._completions += 1
        self._leases += 1
        self._ready.append(lease)
        out = self._out
        out.add(lease)
        if len(out) > self._high_water:  # noqa: PLR1730 - a compare, not a call, per completion
            self._high_water = len(out)

    def _extend_last(self, nbytes: int) -> None:
        """A completion joined to the last queued lease, which nobody was handed (the
        source grew that lease by ``nbytes``): counted, not queued."""
        self._bytes += nbytes
        self._completions += 1

    def _after_cqe(self, res: int, flags: int) -> None:
        """The op's end (no ``CQE_F_MORE``), or a completion while a task waits."""
        if not flags & CQE_F_MORE:
            self._op = None
            if res == 0:
                self._eof = True
            elif res == -self._source.starve_errno:
                # Every buffer is leased out. Re-arm once half of them came back, not at the
                # first release: one buffer at a time would cost a re-arm per completion.
                held = len(self._out) + len(self._zombies)
                self._resume_at = held // 2
                self._starved = held > 0
                self._source.ran_dry(holding=held > 0)
            elif res == -_errno.ENOSPC or (res > 0 and not self._closed):
                self._arm()  # the CQ was full, or the kernel ended the multishot itself
            elif res < 0 and res != -_errno.ECANCELED:
                self._error = errno_error(res, "zero-copy receive")
        if self._waiter.task is not None and (self._ready or self._eof or self._error is not None):
            self._waiter.wake()

    # ---- giving buffers back -----------------------------------------------------------------
    def _release(self, lease: Lease) -> None:
        if threading.get_ident() != self._thread:
            self._in_run(self._release, lease)
            return
        self._out.discard(lease)
        if exports_gone(lease):
            lease._exporter = None
            self._give_back(lease._key, lease.nbytes)
        else:
            lease._owner = self._source.memory_owner()
            self._zombies.append(lease)
            if not self._zombie_hook:  # first in its pass, so its refill goes out with it
                self._zombie_hook = True
                self._driver.pre_enter.insert(0, self._check_zombies)

    def _forget(self, lease: Lease) -> None:
        """A lease that holds no buffer of ours (a :class:`HandedLease`) was released."""
        if threading.get_ident() != self._thread:
            self._in_run(self._forget, lease)
            return
        self._out.discard(lease)

    def _in_run(self, fn: Any, lease: Lease) -> None:
        """A lease released in another thread: the buffer bookkeeping and the ring belong to
        the run's thread, so the release runs there, at once if the run sleeps (its token
        wakes it). A run that ended has closed its receivers and taken every buffer back."""
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, lease)

    def _give_back(self, key: Any, nbytes: int) -> None:
        self._refills += 1
        self._source.give_back(key, nbytes)
        # A task parked in receive() re-arms at once: it waits for data now, and the leases
        # held elsewhere may never come back before it gets some (a worker keeping a window).
        if (
            self._starved
            and not self._closed
            and (len(self._out) + len(self._zombies) <= self._resume_at or self._waiter.task is not None)
        ):
            self._starved = False
            self._source.resuming()
            self._driver.soon(self._arm)

    def _check_zombies(self) -> None:
        """Every pass while some exist: give back buffers whose exports are gone."""
        still = []
        for lease in self._zombies:
            if exports_gone(lease):
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

    # ---- the channel -------------------------------------------------------------------------------
    async def _wait(self) -> None:
        """A checkpoint; if nothing is ready, sleep until something is (or the end)."""
        if self._closed:
            raise trio.ClosedResourceError("this zero-copy receiver is closed")
        if not proceed_uncancelled():
            await trio.lowlevel.checkpoint_if_cancelled()
        if self._ready:
            await cancel_shielded_checkpoint()
            return
        if not self._eof and self._error is None and not self._side.closed:
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
        if self._side.closed:
            return trio.ClosedResourceError("the socket of this zero-copy receiver was closed")
        return trio.EndOfChannel() if self._eof else None

    async def receive(self) -> Lease:
        """The next lease; ``EndOfChannel`` at end of stream. One task at a time.

        :raises trio.EndOfChannel: the peer closed its side and every lease was handed out.
        :raises trio.BusyResourceError: another task is receiving from this receiver.
        :raises trio.ClosedResourceError: the receiver or its socket was closed.
        :raises trio.BrokenResourceError: the connection broke (reset by the peer, say).
        """
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

    async def __anext__(self) -> Lease:
        # ``async for lease in rx``: receive()'s common case inline (a lease is there: one
        # checkpoint, no sleep), a coroutine layer less per lease than trio's __anext__
        receiving = self._receiving
        if self._ready and not receiving.held and not self._closed:
            receiving.held = True
            try:
                if not proceed_uncancelled():
                    await trio.lowlevel.checkpoint_if_cancelled()
                await cancel_shielded_checkpoint()
                if self._ready and not self._closed:
                    return self._ready.popleft()
            finally:
                receiving.held = False
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive_batch(self, max_leases: int = 64) -> list[Lease]:
        """Every lease already received (at least one, at most ``max_leases``), in order.

        One checkpoint for the whole batch instead of one per lease: the fast way to drain a
        busy stream. An empty list means end of stream. One task at a time.

        :raises ValueError: ``max_leases`` < 1.
        :raises trio.BusyResourceError: another task is receiving from this receiver.
        :raises trio.ClosedResourceError: the receiver or its socket was closed.
        :raises trio.BrokenResourceError: the connection broke (reset by the peer, say).
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
        """This receiver's counters now (see :class:`ReceiverStatistics`)."""
        return ReceiverStatistics(
            mode=self.mode,
            bytes=self._bytes,
            completions=self._completions,
            leases=self._leases,
            leases_out=len(self._out),
            refills=self._refills,
            high_water=self._high_water,
            rearms=self._rearms,
            flushes=self._source.flushes,
            fallback_reason=self._fallback_reason,
        )

    async def aclose(self) -> None:
        """End receiving now, as leaving the ``async with`` block does: the receive op is
        cancelled and awaited, undelivered data goes back to the stream, every lease is
        returned. Idempotent; the block's end is then a no-op."""
        await self._shutdown()
        await trio.lowlevel.checkpoint()

    # ---- endings ---------------------------------------------------------------------------------
    def _socket_closed(self) -> None:
        """The socket was closed (by any task): stop, and wake a waiter with ClosedResourceError."""
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
        usable = self._side.usable
        # Taken from the socket but never handed out: it goes back in front of the stream.
        undelivered = b"".join([bytes(lease._exporter) for lease in self._ready]) if usable else b""
        for lease in list(self._ready) + list(self._out):
            if not lease._released:
                lease.release()
        self._ready.clear()
        if self._zombies:
            self._check_zombies()
        self._zombie_hook = False
        with contextlib.suppress(ValueError):
            d.pre_enter.remove(self._check_zombies)
        keep_orphans(self._zombies)  # exported still: they keep their memory until they are not
        self._zombies = []
        self._source.close()
        # ENOTCONN ends a receiver opened before connect(), not the connection: not handed on
        error = self._error if self._error is not None and self._error.errno != _errno.ENOTCONN else None
        self._side.give_back(undelivered, eof=self._eof, error=error)
        self._waiter.wake()


def _check_args(mode: str, interface: str | None, queue: int | None, area_size: int) -> None:
    if mode != "auto" and mode not in SOURCES:
        raise ValueError(f"mode must be one of {', '.join((*SOURCES, 'auto'))}, not {mode!r}")
    if not isinstance(area_size, int) or isinstance(area_size, bool) or area_size <= 0:
        raise ValueError(f"area_size must be a positive int, got {area_size!r}")
    if queue is not None and (
        not isinstance(queue, int) or isinstance(queue, bool) or not 0 <= queue < 1 << 32
    ):
        raise ValueError(f"queue must be an rx queue index (an int >= 0, see `ethtool -l IF`), got {queue!r}")
    if mode == "zcrx-nodev" and (interface is not None or queue is not None):
        raise ValueError(
            "mode 'zcrx-nodev' receives without a device: interface= and queue= do not apply "
            "(use mode='zcrx' for a NIC queue, or 'auto' to try it first)"
        )


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
    if sock.getsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_ACCEPTCONN):
        raise ValueError("zero-copy receive needs a connected stream socket, not a listening one")
    return sock


def _open_source(
    driver: OpDriver,
    sock: UringSocket,
    mode: str,
    *,
    interface: str | None,
    queue: int | None,
    area_size: int,
) -> tuple[ReceiveSource, list[str]]:
    """The source for ``mode`` (``auto``: the first that works), and why others were skipped."""
    reasons: list[str] = []
    names = list(SOURCES) if mode == "auto" else [mode]
    for name in names:
        try:
            source = SOURCES[name].open(driver, sock, interface=interface, queue=queue, area_size=area_size)
        except ZeroCopyUnavailable as exc:
            if name == names[-1]:
                raise
            reasons.append(f"{name}: {exc.reason}")
        else:
            return source, reasons
    raise AssertionError("unreachable: the last mode raises or returns")


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
    In a worker of ``serve_tcp_workers(zc=ZcConfig(...))``, leaving out both ``interface``
    and ``queue`` means that worker's interface and queue.

    The receiver owns the socket's receive side while the block runs: another receiver or
    a stream read meanwhile raises ``trio.BusyResourceError``. Data the stream had already
    received comes first; data the receiver took from the socket but did not hand out goes
    back to the stream when the block ends, so nothing is lost either way. Closing the
    socket (from any task) ends the receiver with ``trio.ClosedResourceError``.

    ``area_size`` (bytes, default 16 MiB, rounded up to whole pages) is the memory data
    arrives in; ``interface`` and ``queue`` name the NIC and rx queue for ``zcrx``.

    :raises ZeroCopyUnavailable: an explicit ``mode`` cannot be used here (its ``reason``
        and ``remedy`` say why and what to change); ``auto`` raises it only if ``copy``
        fails too.
    :raises ValueError: an unknown ``mode``, a bad ``area_size`` or ``queue``, or
        ``interface``/``queue`` with ``mode="zcrx-nodev"``; a socket that is not TCP.
    :raises TypeError: ``stream_or_socket`` is not an io_uring socket or a stream over one.
    :raises trio.BusyResourceError: another receiver or a stream read has the socket's
        receive side.
    :raises trio.ClosedResourceError: the socket is closed.
    """
    if interface is None and queue is None and mode != "zcrx-nodev":
        interface, queue = worker_zc_queue()  # under serve_tcp_workers(zc=...): this worker's queue
    _check_args(mode, interface, queue, area_size)
    sock = _uring_socket(stream_or_socket)
    driver = current_driver()
    side = claim_receive_side(sock)  # BusyResourceError while someone else receives
    try:
        source, reasons = _open_source(
            driver, sock, mode, interface=interface, queue=queue, area_size=area_size
        )
    except BaseException:
        side.give_back(b"", eof=False, error=None)
        raise
    rx = ZeroCopyReceiver(driver, side, source, "; ".join(reasons))
    side.on_close = rx._socket_closed
    sweep_orphans()
    receiver_opened(rx, rx.mode, reasons)  # statistics(); logs why auto skipped modes
    try:
        handed = await side.take_over()  # the stream's queued data comes first, in order
        if handed.data:
            rx._deliver(HandedLease(rx, handed.data, 0, len(handed.data)))
        rx._eof, rx._error = handed.eof, handed.error
        yield rx
    finally:
        receiver_closed(rx, rx._bytes)
        await rx._shutdown()
