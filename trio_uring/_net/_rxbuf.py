"""Stream receive path: multishot recv into the run's shared provided-buffer ring.

The kernel writes each socket's data into buffers of one buffer group per ring; a
completion becomes a chunk ``(bid, offset, length)`` queued on the socket's
:class:`StreamReceiver`, so by the time a task asks for data it usually sits in user
memory already, and it is copied exactly once (into the ``bytes`` handed out).

Buffers go back to the kernel in batches (once per scheduler pass). With incremental
consumption several chunks — of any socket — share one buffer, so a buffer is recycled
when its last chunk was consumed *and* the kernel said it is done with it.

Ownership of the shared pool (no connection can starve another):

* A socket whose unread data exceeds ``max_pending`` stops receiving (its multishot op is
  cancelled; TCP flow control pushes back on *its* peer) until its consumer catches up.
* The pool is a staging area, not storage: when fewer than a quarter of its buffers are
  left to the kernel, the unread chunks of every socket whose consumer is not waiting are
  copied into that socket's own memory (its *spill*, bounded by ``max_pending``) and their
  buffers go back to the kernel. Idle readers cost their own memory, never the pool.
* When the ring runs dry anyway (``ENOBUFS``), receives are re-armed as buffers come back,
  unless the consumer reads the socket itself in the meantime (``claim_idle``).
* A receiver that closes (explicitly, or its socket was collected) returns every buffer it
  holds; at the end of the run the ones still open move their data to their spill and
  detach, so the socket works in a later run.

A read that finds nothing queued while the op is armed first tries a plain ``recv``
(:meth:`StreamReceiver.read_early`), where that cannot overtake the op: a peer that answers
fast has its bytes in the socket before our next enter would run the op.

Bulk streams: the multishot op pays off for message-sized data (no recv syscall, no
readiness round trip). For a stream whose completions are large (``BULK_CHUNK`` or more)
it only adds work — a copy into the ring, then another into ``bytes`` — so the op is
stopped and the socket is read with plain ``recv`` calls (one copy), waiting with an
io_uring poll when it runs dry; a run of small reads switches back to the multishot op.
"""

from __future__ import annotations

import errno as _errno
import threading
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import trio
from trio.lowlevel import RunVar

from .._core._bufring import BufferRing
from .._core._errors import errno_error
from .._core._ops import MultishotOp, OpDriver
from .._core._plain import current_driver
from .._core._ring import CQE_F_MORE
from .._core._waiter import Waiter
from .._native import ffi

__all__ = ["BufferPool", "Handover", "StreamReceiver", "buffer_pool", "configure_receive_buffers"]

DEFAULT_ENTRIES = 512
DEFAULT_BUF_SIZE = 32 * 1024
DEFAULT_MAX_PENDING = 256 * 1024
#: A completion this large marks a bulk stream (see the module docstring).
BULK_CHUNK = 16 * 1024
#: How many smaller reads in a row end bulk mode (a poll wakes at the first bytes).
BULK_PATIENCE = 8

_POOL: RunVar[BufferPool] = RunVar("trio_uring_rx_pool")
_CONFIG: RunVar[tuple[int, int]] = RunVar("trio_uring_rx_config", default=(DEFAULT_ENTRIES, DEFAULT_BUF_SIZE))


def configure_receive_buffers(entries: int = DEFAULT_ENTRIES, buf_size: int = DEFAULT_BUF_SIZE) -> None:
    """Size this run's shared receive buffer ring (``entries`` buffers of ``buf_size``).

    Call before the run's sockets receive: the ring is made when a receive first has to wait
    for data, and from then on this raises ``RuntimeError``.

    :raises TypeError: ``entries`` or ``buf_size`` is not an int.
    :raises ValueError: ``entries`` is not a power of two up to 32768, or ``buf_size`` is not
        between 256 bytes and 16 MiB.
    :raises RuntimeError: the run's receive buffers are already in use (or no run is active).
    """
    for name, value in (("entries", entries), ("buf_size", buf_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if entries <= 0 or entries & (entries - 1) or entries > 32768:
        raise ValueError(f"entries must be a power of two up to 32768, got {entries}")
    if not 256 <= buf_size <= 1 << 24:
        raise ValueError(f"buf_size must be between 256 bytes and 16 MiB, got {buf_size}")
    try:
        _POOL.get()
    except LookupError:
        _CONFIG.set((entries, buf_size))
        return
    raise RuntimeError("the receive buffers of this run are already in use; configure them earlier")


def buffer_pool() -> BufferPool:
    """This run's shared stream buffer pool, created on first use."""
    try:
        return _POOL.get()
    except LookupError:
        pass
    entries, size = _CONFIG.get()
    pool = BufferPool(current_driver(), entries, size)
    _POOL.set(pool)
    return pool


class BufferPool:
    """The run's buffer group for stream receives, with batched recycling."""

    def __init__(self, driver: OpDriver, entries: int, buf_size: int) -> None:
        self.driver = driver
        self.bufs = BufferRing(driver.ring, entries=entries, buf_size=buf_size, incremental=None)
        self.mem = self.bufs.memory
        #: The same memory as a cffi buffer: slicing it makes ``bytes`` in one step (0.17 µs
        #: for a 64-byte message against 0.42 µs through a memoryview slice).
        self.cmem = ffi.buffer(self.bufs.memory_ptr, entries * buf_size)
        self.size = buf_size
        self.entries = entries
        #: Buffers the kernel can receive into right now (the rest hold unread chunks).
        self.in_kernel = entries
        #: Below this many buffers in the kernel, idle readers' chunks are spilled.
        self.low_water = max(1, entries // 4)
        #: Bytes copied out of the pool into sockets' own memory (a counter, for statistics).
        self.spilled_bytes = 0
        self._refs = [0] * entries  # chunks handed out and not yet consumed
        self._held = [False] * entries  # the kernel may still append to this buffer (INC)
        self._take = self.bufs.take
        self._recycle: list[int] = []
        self.starved: set[StreamReceiver] = set()
        #: Receivers holding chunks: the candidates for spilling under pressure.
        self.holders: set[StreamReceiver] = set()
        driver.pre_enter.append(self.flush)

    def release(self, bid: int) -> None:
        refs = self._refs[bid] - 1
        self._refs[bid] = refs
        if refs == 0 and not self._held[bid]:
            self._recycle.append(bid)

    @property
    def pressure(self) -> bool:
        return self.in_kernel + len(self._recycle) < self.low_water

    def flush(self) -> None:
        """Give consumed buffers back (one native call), then re-arm starved receivers.

        Under pressure, first spill the chunks of receivers nobody is waiting on, so their
        buffers go back in the same call.
        """
        if (not self._recycle and not self.holders) or self.bufs.closed:
            return  # the common pass: nothing to give back, nobody to spill
        if self.holders and self.pressure:
            for rx in list(self.holders):
                if rx._waiter.task is None:  # a waiting consumer takes its chunks this pass
                    rx.spill()
        if not self._recycle:
            return
        self.bufs.recycle(self._recycle)
        self.in_kernel += len(self._recycle)
        self._recycle.clear()
        if self.starved:
            starved, self.starved = self.starved, set()
            for rx in starved:
                rx.arm()


class Handover(NamedTuple):
    """A stream's receive side as handed to a new owner: its queued bytes and how it ended."""

    data: bytes
    eof: bool
    error: OSError | None


def _other_run() -> None:
    raise trio.BusyResourceError(
        "this socket is in use by a trio run in another thread; a socket belongs to one run at a time"
    )


class StreamReceiver:
    """The receive side of one stream socket: a multishot recv and its queued data.

    Data is queued in two places, in this order: the *spill* (bytes in the socket's own
    memory: moved out of the shared pool under pressure, handed back by a zero-copy
    receiver, or kept from an earlier run) and the *chunks* (still in pool buffers).
    """

    __slots__ = (
        "__weakref__",
        "_chunks",
        "_eof",
        "_error",
        "_fd",
        "_fd_closed",
        "_op",
        "_pending",
        "_pool",
        "_spill",
        "_stopping",
        "_waiter",
        "bulk",
        "closed",
        "detached",
        "max_pending",
        "thread",
        "token",
    )

    def __init__(
        self, fd: int, max_pending: int = DEFAULT_MAX_PENDING, carry: StreamReceiver | None = None
    ) -> None:
        self._fd = fd
        self._pool = buffer_pool()
        self._chunks: deque[tuple[int, int, int]] = deque()
        self._spill = bytearray()
        self._pending = 0
        self._op: MultishotOp | None = None
        self._waiter = Waiter()
        self._eof = False
        self._error: OSError | None = None
        self.closed = False
        #: Someone announced the fd's close (``notify_closing``, ``close_fd_ops``): a waiter
        #: raises ClosedResourceError and nothing re-arms on that fd number.
        self._fd_closed = False
        #: The run this receiver belonged to ended: the socket makes a new one.
        self.detached = False
        #: The run's thread and token: another thread hands its work over through the token.
        self.thread = threading.get_ident()
        self.token = trio.lowlevel.current_trio_token()
        self.max_pending = max_pending
        self._stopping = False  # a cancel of ``_op`` is on its way
        #: Nonzero: read with plain ``recv`` (see the module docstring); counts down on
        #: small reads, set by a large completion or read.
        self.bulk = 0
        if carry is not None:  # what an earlier run's receiver of this socket kept
            self._spill = carry._spill
            self._pending = len(self._spill)
            self._eof, self._error = carry._eof, carry._error
        self._pool.driver.own(self)

    @property
    def driver(self) -> OpDriver:
        return self._pool.driver

    # ---- kernel side ------------------------------------------------------------------------
    def arm(self) -> None:
        if (
            self._op is not None
            or self._eof
            or self._error is not None
            or self.closed
            or self._fd_closed
            or self._pending > self.max_pending
        ):
            return
        pool = self._pool
        if pool.driver.closed:
            return
        self._stopping = False
        self._op = pool.driver.start_multishot(
            pool.driver.ring.prep_recv_select, self._fd, pool.bufs.bgid, fd=self._fd, on_cqe=self._on_cqe
        )

    def _on_cqe(self, res: int, flags: int) -> None:
        if res > 0:
            # account for the buffer (inline: once per completion of every stream)
            pool = self._pool
            bid, off, last = pool._take(res, flags)
            pool._refs[bid] += 1
            pool._held[bid] = not last
            if last:
                pool.in_kernel -= 1  # the kernel moved on to the next buffer
            if self.closed:
                pool.release(bid)
            else:
                if not self._chunks:
                    self._pool.holders.add(self)
                self._chunks.append((bid, off, res))
                self._pending += res
                if flags & CQE_F_MORE and not self._stopping and self._op is not None:
                    if res >= BULK_CHUNK:
                        self.bulk = BULK_PATIENCE
                        self._stop()
                    elif self._pending > self.max_pending:
                        self._stop()  # backpressure: stop until drained
        if not flags & CQE_F_MORE:
            op, self._op = self._op, None
            if res == -_errno.ECANCELED and op is not None and op.closed:
                self._fd_closed = True  # closed behind the socket's back: wake, never re-arm
                self._waiter.wake()
                return
            if res == 0:
                self._eof = True
            elif res == -_errno.ENOBUFS:
                if self._pool.pressure and self._waiter.task is None:
                    self.spill()  # our own chunks must not keep our own receive from resuming
                if not self._chunks:
                    self._pool.starved.add(self)  # others hold the buffers: wait for recycling
            elif res < 0 and res != -_errno.ECANCELED:
                self._error = errno_error(res)
            elif not self.closed and self._waiter.task is not None:
                # a task waits for data (the kernel ended the multishot on its own, e.g. CQ
                # pressure, or a backpressure cancel met a drained queue): keep receiving.
                # Otherwise the op stays off until the consumer asks again (see ``idle``).
                self.arm()
        if self._waiter.task is not None and (self._chunks or self._eof or self._error is not None):
            self._waiter.wake()

    def _stop(self) -> None:
        assert self._op is not None
        self._stopping = True
        self._pool.driver.cancel(self._op)

    def spill(self) -> None:
        """Move the queued chunks out of the shared pool into this socket's own memory."""
        chunks = self._chunks
        if not chunks:
            return
        pool, mem, size, spill = self._pool, self._pool.mem, self._pool.size, self._spill
        moved = 0
        for bid, off, ln in chunks:
            start = bid * size + off
            spill += mem[start : start + ln]
            pool.release(bid)
            moved += ln
        chunks.clear()
        pool.spilled_bytes += moved
        pool.holders.discard(self)

    # ---- task side --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._chunks) or bool(self._spill) or self._eof or self._error is not None

    @property
    def queued(self) -> int:
        """Received bytes waiting in user memory (the pool's buffers and the spill)."""
        return self._pending

    @property
    def idle(self) -> bool:
        """No recv op in the kernel and nothing queued: the next bytes are in the socket.

        Then a plain ``recv`` is in order (nothing received earlier can be overtaken): for
        a bulk stream that outran its consumer — the op was cancelled for backpressure —
        that is one syscall and one copy per call, where the multishot op would copy into
        the ring first and be cancelled and re-armed every few calls.
        """
        return (
            self._op is None
            and not self._chunks
            and not self._spill
            and not self._eof
            and self._error is None
            and not self.closed
        )

    def claim_idle(self) -> bool:
        """:attr:`idle`, for a caller that then reads the socket itself and may wait for it.

        A receiver whose op ended on ``ENOBUFS`` is re-armed by the pool when buffers come
        back (``BufferPool.flush``). Armed while such a read waits for readiness, the op
        would take the bytes the read waits for, and the read would get the ones after
        them: so the claim takes the receiver off that list. A later :meth:`wait` arms the
        op again.
        """
        if not self.idle:
            return False
        self._pool.starved.discard(self)
        return True

    async def wait(self) -> None:
        """Park until data, EOF or an error is there. Cancellation has no effect on data."""
        if self.thread != threading.get_ident():
            _other_run()
        self.arm()
        if self.ready:
            return
        if self._fd_closed:
            raise trio.ClosedResourceError("another task closed this fd")
        await self._waiter.park()
        if self.closed or self._fd_closed:
            raise trio.ClosedResourceError("another task closed this socket")

    def read_early(self, recv: Callable[[], bytes]) -> bytes | None:
        """The socket's next bytes with ``recv()`` while the receive op is armed but has
        delivered nothing we hold: ``None`` when that cannot be done in order, or the socket
        is empty (the caller then waits for the op).

        A task that asks for data its peer already sent would otherwise park until the next
        enter runs the op — a scheduler pass and a wake-up per read in a ping-pong. In order
        only on a ring whose deferred work runs in our own enters (DEFER_TASKRUN), with every
        completion posted so far reaped: then the op has taken nothing out of the socket
        that we do not hold, and nothing can take bytes out until our next enter. When the
        op runs after this read, it finds the socket empty and keeps waiting.
        """
        if (
            self._op is None
            or self._stopping
            or self._chunks
            or self._spill
            or self._eof
            or self._error is not None
            or self.closed
            or self._fd_closed
            or self.detached
        ):
            return None
        d = self._pool.driver
        ring = d.ring
        if d.reaped_by_task or not ring.defer_taskrun or d.closed or ring.undelivered():
            return None
        try:
            data = recv()
        except BlockingIOError:
            return None
        if not data:
            self._eof = True
        elif len(data) >= BULK_CHUNK:
            self.bulk = BULK_PATIENCE  # a bulk stream: plain reads from here on (module docstring)
            self._stop()
        return data

    def _raise_error(self) -> None:
        err = self._error
        assert err is not None
        # a fresh exception each time: re-raising one object would grow its traceback
        raise OSError(err.errno, err.strerror)

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of queued data (b"" at EOF); raises a stored error."""
        if self._spill:
            return self._take_spill(max_bytes)
        chunks = self._chunks
        if not chunks:
            if self._error is not None:
                self._raise_error()
            return b""
        pool, size = self._pool, self._pool.size
        bid, off, ln = chunks[0]
        if ln >= max_bytes or len(chunks) == 1:  # the common cases: one chunk answers it
            k = ln if ln < max_bytes else max_bytes
            start = bid * size + off
            data: bytes = pool.cmem[start : start + k]
            if k == ln:
                chunks.popleft()
                pool.release(bid)
                if not chunks:
                    pool.holders.discard(self)
            else:
                chunks[0] = (bid, off + k, ln - k)
            self._pending -= k
            return data
        mem = pool.mem
        parts: list[memoryview] = []
        need = max_bytes
        while chunks and need:
            bid, off, ln = chunks[0]
            k = ln if ln <= need else need
            start = bid * size + off
            parts.append(mem[start : start + k])
            if k == ln:
                chunks.popleft()
                pool.release(bid)
            else:
                chunks[0] = (bid, off + k, ln - k)
            need -= k
        if not chunks:
            pool.holders.discard(self)
        data = b"".join(parts)
        self._pending -= len(data)
        return data

    def _take_spill(self, max_bytes: int) -> bytes:
        spill = self._spill
        data = bytes(spill[:max_bytes])
        del spill[:max_bytes]  # bytearray deletes from the front without moving the rest
        self._pending -= len(data)
        return data

    def take_into(self, buf: memoryview) -> int:
        data = self.take(len(buf))
        buf[: len(data)] = data
        return len(data)

    def peek(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of queued data, left queued (``MSG_PEEK``)."""
        if max_bytes <= len(self._spill) or not self._chunks:
            if not self._spill and self._error is not None:
                self._raise_error()
            return bytes(self._spill[:max_bytes])
        parts = [bytes(self._spill)]
        need = max_bytes - len(self._spill)
        mem, size = self._pool.mem, self._pool.size
        for bid, off, ln in self._chunks:
            if not need:
                break
            k = min(ln, need)
            parts.append(bytes(mem[bid * size + off : bid * size + off + k]))
            need -= k
        return b"".join(parts)

    # ---- handing the receive side over (zero-copy receivers) ---------------------------------
    async def hand_over(self) -> Handover:
        """Give the receive side to a new owner (a zero-copy receiver): stop the receive op,
        wait for its final completion (shielded, bounded), and return everything queued.

        Afterwards the queue is empty and the op stays off until the stream is read again,
        so the new owner receives what follows, in order. :meth:`give_back` returns what
        the new owner took from the socket but did not use.
        """
        op = self._op
        if op is not None:
            self._stopping = True
            self._pool.driver.cancel(op)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                while self._op is op:
                    await trio.sleep(0)
        self._pool.starved.discard(self)
        self.spill()
        data = bytes(self._spill)
        self._spill.clear()
        self._pending = 0
        return Handover(data, self._eof, self._error)

    def give_back(self, data: bytes, *, eof: bool, error: OSError | None) -> None:
        """Put bytes taken by a zero-copy receiver back in front of the queue."""
        if data:
            self._spill[:0] = data
            self._pending += len(data)
        self._eof = self._eof or eof
        if error is not None and self._error is None:
            self._error = error

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def error(self) -> OSError | None:
        return self._error

    # ---- endings ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop receiving, give every buffer back, wake a waiting task (it raises Closed)."""
        if self.closed:
            return
        self.closed = True
        pool = self._pool
        pool.starved.discard(self)
        pool.holders.discard(self)
        if self._op is not None and not pool.driver.closed:
            pool.driver.cancel(self._op)
        for bid, _off, _ln in self._chunks:
            pool.release(bid)
        self._chunks.clear()
        self._spill = bytearray()
        self._pending = 0
        self._waiter.wake()

    def run_ended(self) -> None:
        """The run's ring is gone: keep the queued data in our own memory and detach."""
        if not self.closed:
            self.spill()
        self._op = None
        self.detached = True
