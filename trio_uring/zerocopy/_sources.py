"""Receive sources: where a ZeroCopyReceiver's leases come from, one class per mode.

A source arms the multishot receive op, turns each data completion into a :class:`Lease`
over memory it owns, takes buffers back when leases are released, and says what to do
when the kernel runs out of buffers. The receiver (``_receiver.py``) is the channel and
the lease bookkeeping; it never looks at how a mode works. Adding a mode is one subclass
of :class:`ReceiveSource` plus its entry in :data:`SOURCES`.

* :class:`ZcrxSource` (``zcrx``): a NIC queue's zcrx interface queue; completions are
  offsets into the registered area (32-byte CQEs).
* :class:`NodevSource` (``zcrx-nodev``): the same protocol without a device (Linux >= 7.1);
  the kernel copies payloads into the area.
* :class:`CopySource` (``copy``): a provided-buffer ring of the receiver's own; any
  io_uring kernel.
"""

from __future__ import annotations

import errno as _errno
import socket as _stdlib
from typing import TYPE_CHECKING, Any, ClassVar

from .._core._bufring import BufferRing
from .._core._caps import has_cap_net_admin
from .._core._ops import MultishotOp, OpDriver
from .._core._ring import CQE_F_MORE, SetupFlags
from .._native import ffi
from ._lease import Lease
from ._zcrx import AREA_MASK, PAGE, Ifq, ZeroCopyUnavailable, get_ifq

if TYPE_CHECKING:
    from .._core._probe import ProbeReport
    from ._receiver import ZeroCopyReceiver

__all__ = ["SOURCES", "CopySource", "NodevSource", "ReceiveSource", "ZcrxSource"]

#: Copy-mode buffer sizes. With incremental consumption a buffer holds many completions, and
#: a lease joins the completions appended to its buffer while it waits in the queue, so a
#: lease can grow to a whole buffer. Bigger buffers mean fewer leases per byte for a consumer
#: that lags, and ``async for`` passes the scheduler once per lease (measured, user-space
#: instructions per 64 KiB: ``async for`` 21.2k at 256 KiB, 6.6k at 1 MiB; ``receive_batch``
#: 8.8k and 5.9k). 1 MiB keeps 16 buffers in the default 16 MiB area. Without incremental
#: consumption each completion takes a whole buffer, so they stay small.
COPY_BUF_INC = 1024 * 1024
COPY_BUF = 64 * 1024
#: The smallest area a NIC queue can work with: its page pool caches up to 128 buffers (512
#: KiB of 4 KiB pages) that the receiver never sees; measured on the simulated NIC, a 256 KiB
#: area stalled before the first lease.
MIN_NIC_AREA = 1 << 20


class ReceiveSource:
    """One receive mode: the op, the memory leases point into, and giving buffers back."""

    #: The mode's name (``statistics().mode``, ``open_zc_receiver(mode=...)``).
    mode: ClassVar[str]
    #: The errno that ends the receive op when every buffer is leased out.
    starve_errno: ClassVar[int]
    #: The receiver the completions go to (set by the receiver when it is made).
    rx: ZeroCopyReceiver

    @classmethod
    def open(
        cls, driver: OpDriver, sock: Any, *, interface: str | None, queue: int | None, area_size: int
    ) -> ReceiveSource:
        """A source for ``sock`` on this run, or :class:`ZeroCopyUnavailable` saying why not."""
        raise NotImplementedError

    @classmethod
    def describe(cls, report: ProbeReport, interface: str | None) -> str | None:
        """How the doctor lists this mode on this machine; None where it cannot work."""
        raise NotImplementedError

    def arm(self, fd: int) -> MultishotOp:
        """Start the multishot receive on ``fd``; its completions call ``rx`` back."""
        raise NotImplementedError

    def give_back(self, key: Any, nbytes: int) -> None:
        """A lease's buffer is free again; it reaches the kernel with the next submission."""
        raise NotImplementedError

    def memory_owner(self) -> Any:
        """What keeps the leases' memory mapped (held by leases exported past their release)."""
        raise NotImplementedError

    def ran_dry(self, holding: bool) -> None:
        """The op ended for lack of buffers. ``holding``: our leases are out and will come
        back (the receiver re-arms then); otherwise the source re-arms when it can."""

    def resuming(self) -> None:
        """The receiver re-arms after running dry: the kernel should see returned buffers."""

    @property
    def flushes(self) -> int:
        """Syscalls made to make the kernel take returned buffers (``statistics().flushes``)."""
        return 0

    def close(self) -> None:
        """The receiver closed (its op is gone, its leases returned): give everything back."""


class CopySource(ReceiveSource):
    """``copy``: a multishot recv into a provided-buffer ring owned by this receiver."""

    mode = "copy"
    starve_errno = _errno.ENOBUFS

    def __init__(self, driver: OpDriver, area_size: int) -> None:
        self.driver = driver
        try:
            bufs = copy_ring(driver.ring, area_size, COPY_BUF_INC, incremental=True)
        except OSError as exc:
            if exc.errno != _errno.EINVAL:  # EINVAL: this kernel lacks incremental buffers
                raise
            bufs = copy_ring(driver.ring, area_size, COPY_BUF, incremental=False)
        self.bufs = bufs
        self._take = bufs.take
        self._base = bufs.memory_ptr
        self._buf_size = bufs.buf_size
        #: Leases out per buffer, and whether the kernel may still append to it (incremental).
        self._refs = [0] * bufs.entries
        self._held = [False] * bufs.entries
        self._recycle: list[int] = []
        self._flush_queued = False
        #: Where the last lease delivered ends in the area (see _on_cqe); -1 before the first.
        self._tail_end = -1

    @classmethod
    def open(
        cls, driver: OpDriver, sock: Any, *, interface: str | None, queue: int | None, area_size: int
    ) -> CopySource:
        return cls(driver, area_size)

    @classmethod
    def describe(cls, report: ProbeReport, interface: str | None) -> str | None:
        return cls.mode

    def arm(self, fd: int) -> MultishotOp:
        d = self.driver
        return d.start_multishot(d.ring.prep_recv_select, fd, self.bufs.bgid, fd=fd, on_cqe=self._on_cqe)

    def _on_cqe(self, res: int, flags: int) -> None:
        rx = self.rx
        if res > 0:
            self.driver.bulk_bytes += res
            bid, off, last = self._take(res, flags)
            self._held[bid] = not last
            start = bid * self._buf_size + off
            ready = rx._ready
            # ready[-1], if any, is the last lease delivered (the queue is FIFO): nobody has it
            if ready and ready[-1]._key == bid and self._tail_end == start:
                # The kernel appended to the buffer right after the last lease, which nobody
                # has been handed yet: that lease grows to cover both (in place: it has no
                # view yet). A consumer that lags gets fewer, larger leases: fewer scheduler
                # passes per MiB for ``async for``, which passes one per lease. Leases never
                # span buffers, so a consumer holding fewer leases than there are buffers
                # always leaves the kernel somewhere to write.
                lease = ready[-1]
                first = start - lease.nbytes  # where the queued lease begins
                lease.nbytes += res
                lease._exporter = ffi.buffer(self._base + first, lease.nbytes)
                rx._extend_last(res)
            else:
                self._refs[bid] += 1
                rx._deliver(Lease(rx, ffi.buffer(self._base + start, res), bid, res))
            self._tail_end = start + res
        if not flags & CQE_F_MORE or rx._waiter.task is not None:
            rx._after_cqe(res, flags)

    def give_back(self, key: int, nbytes: int) -> None:
        refs = self._refs[key] - 1
        self._refs[key] = refs
        if refs == 0 and not self._held[key]:
            self._recycle.append(key)
            if not self._flush_queued:
                self._flush_queued = True
                self.driver.soon(self._flush)

    def _flush(self) -> None:
        """Before the next enter: the buffers given back since, in one ring re-add."""
        self._flush_queued = False
        if self._recycle and not self.bufs.closed:
            self.bufs.recycle(self._recycle)
            self._recycle.clear()

    def memory_owner(self) -> Any:
        return self._base

    def ran_dry(self, holding: bool) -> None:
        if not holding:
            self.rx._arm()  # our recycled buffers reach the kernel before this SQE

    def close(self) -> None:
        self._flush()
        # the kernel stops using the memory now; views still exported keep it mapped
        self.bufs.close()


class ZcrxSource(ReceiveSource):
    """``zcrx``: ``RECV_ZC`` on an interface queue's zcrx area, shared per (ring, queue)."""

    mode = "zcrx"
    starve_errno = _errno.ENOMEM

    def __init__(self, driver: OpDriver, ifq: Ifq) -> None:
        self.driver = driver
        self.ifq = ifq
        self._area = ifq.area_ptr
        ifq.users += 1

    @classmethod
    def open(
        cls, driver: OpDriver, sock: Any, *, interface: str | None, queue: int | None, area_size: int
    ) -> ZcrxSource:
        _check_zcrx(driver, sock, interface_missing=interface is None)
        assert interface is not None
        if area_size < MIN_NIC_AREA:
            raise ZeroCopyUnavailable(
                f"mode 'zcrx' needs area_size >= {MIN_NIC_AREA >> 20} MiB, got {area_size}: the queue's page "
                "pool keeps up to 128 of the area's buffers in its own cache, and the receiver stalls "
                "when the rest cannot hold what arrives",
                f"pass area_size={MIN_NIC_AREA} or more (the default is 16 MiB)",
            )
        return cls(driver, get_ifq(driver, interface, queue or 0, _pages(area_size), nodev=False))

    @classmethod
    def describe(cls, report: ProbeReport, interface: str | None) -> str | None:
        if not report.zcrx_kernel.startswith("available") or not report.cap_net_admin:
            return None
        return "zcrx (see below)" if interface else "zcrx (with a capable NIC: --interface IF)"

    def arm(self, fd: int) -> MultishotOp:
        d = self.driver
        return d.start_multishot_big_cqe(
            d.ring.prep_recv_zc, fd, self.ifq.zcrx_id, fd=fd, on_big_cqe=self._on_big_cqe
        )

    def _on_big_cqe(self, res: int, flags: int, big_cqe: int) -> None:
        rx = self.rx
        if res > 0 and flags & CQE_F_MORE:
            self.driver.bulk_bytes += res
            rx._deliver(Lease(rx, ffi.buffer(self._area + (big_cqe & AREA_MASK), res), big_cqe, res))
        if not flags & CQE_F_MORE or rx._waiter.task is not None:
            rx._after_cqe(res, flags)

    def give_back(self, key: int, nbytes: int) -> None:
        self.ifq.give_back(key, nbytes)

    def memory_owner(self) -> Any:
        return self._area

    def ran_dry(self, holding: bool) -> None:
        self.ifq.flush_wanted = True
        if not holding:
            self.ifq.starved.add(self.rx)  # others hold the area: re-armed at their refills

    def resuming(self) -> None:
        self.ifq.flush_wanted = True

    @property
    def flushes(self) -> int:
        return self.ifq.flushes

    def close(self) -> None:
        ifq = self.ifq
        ifq.starved.discard(self.rx)
        ifq.flush()
        ifq.users -= 1


class NodevSource(ZcrxSource):
    """``zcrx-nodev``: zcrx without a device (Linux >= 7.1); the kernel copies into the area."""

    mode = "zcrx-nodev"

    @classmethod
    def describe(cls, report: ProbeReport, interface: str | None) -> str | None:
        return cls.mode if report.zcrx_nodev else None

    @classmethod
    def open(
        cls, driver: OpDriver, sock: Any, *, interface: str | None, queue: int | None, area_size: int
    ) -> NodevSource:
        # Device-less registration takes no interface or queue (the kernel refuses either with
        # EINVAL), so the ones meant for ``zcrx`` are not passed on.
        _check_zcrx(driver, sock)
        return cls(driver, get_ifq(driver, None, 0, _pages(area_size), nodev=True))


#: Every mode by name, in the order ``mode="auto"`` tries them (the best first).
SOURCES: dict[str, type[ReceiveSource]] = {src.mode: src for src in (ZcrxSource, NodevSource, CopySource)}


def _check_zcrx(driver: OpDriver, sock: Any, *, interface_missing: bool = False) -> None:
    """What every zcrx mode needs of the socket, the caller, the process and the run's ring."""
    family = int(sock.family)
    if family not in (_stdlib.AF_INET, _stdlib.AF_INET6):
        raise ZeroCopyUnavailable(
            f"zcrx receives TCP only; this is an {_stdlib.AddressFamily(family).name} socket",
            "use mode='copy' (or 'auto') for it",
        )
    if interface_missing:
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


def _pages(area_size: int) -> int:
    """The area is mapped in whole pages: round up rather than refuse."""
    return -(-area_size // PAGE) * PAGE


def copy_ring(ring: Any, area_size: int, buf_size: int, *, incremental: bool) -> BufferRing:
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
