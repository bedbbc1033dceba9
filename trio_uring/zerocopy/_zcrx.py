"""zcrx interface queues: registration (with errors that say what to change), the shared
ifq per (ring, interface, queue), and the refill-ring protocol.

A registered ifq owns an *area* (memory the NIC — or, device-less, the kernel — writes
payloads into) and a *refill ring* through which the application hands each completion's
buffer back. Receivers on the same ring, interface and queue share one ifq. Refill entries
are queued as leases are released and published once per scheduler pass (one release
store of the tail); when a receiver runs out of area, ``ZCRX_CTRL_FLUSH_RQ`` makes the
kernel take them at once (device-less mode needs it; a NIC queue does when the data came
through the kernel's copy fallback, see ``Ifq.flush_wanted``).
"""

from __future__ import annotations

import errno as _errno
import os
import socket
from typing import Any

from .._core._bufring import alloc_slab
from .._core._errors import Unavailable
from .._core._ops import OpDriver
from .._native import ffi, lib

__all__ = ["Ifq", "ZeroCopyUnavailable", "get_ifq", "registration_error", "ynl_header_split"]

AREA_SHIFT = int(lib.TU_IORING_ZCRX_AREA_SHIFT)
AREA_MASK = (1 << AREA_SHIFT) - 1
#: Registration failures that depend on the request or the moment (memory to pin, fds): never cached.
_TRANSIENT = frozenset({_errno.ENOMEM, _errno.EMFILE, _errno.ENFILE, _errno.EAGAIN})
PAGE = os.sysconf("SC_PAGESIZE")
NODEV = int(lib.TU_ZCRX_REG_NODEV)


class ZeroCopyUnavailable(Unavailable):
    """A zero-copy mode cannot be used; ``reason`` names the requirement, ``remedy`` the fix."""


def ynl_header_split(interface: str) -> str:
    """Header split on, hds-thresh 0, through the kernel's own netlink tool (tools/net/ynl in
    the kernel source): for an ethtool older than 6.12, which cannot set them."""
    return (
        "tools/net/ynl/pyynl/cli.py --family ethtool --do rings-set --json "
        f'\'{{"header": {{"dev-name": "{interface}"}}, "tcp-data-split": "enabled", "hds-thresh": 0}}\''
    )


def registration_error(err: int, *, interface: str | None, queue: int, nodev: bool) -> ZeroCopyUnavailable:
    """Map ``IORING_REGISTER_ZCRX_IFQ`` failures (see the kernel's validation order) to causes."""
    code = -err if err < 0 else err
    name = _errno.errorcode.get(code, str(code))
    dev = interface or "the interface"
    if code == _errno.EPERM:
        return ZeroCopyUnavailable(
            "zcrx registration needs CAP_NET_ADMIN in the initial user namespace (EPERM)",
            "run as root or grant the capability: setcap cap_net_admin+ep on the Python binary, "
            "or AmbientCapabilities=CAP_NET_ADMIN in the systemd unit; containers need it on the host",
            errno=code,
        )
    if nodev and code == _errno.EINVAL:
        return ZeroCopyUnavailable(
            "device-less zcrx (ZCRX_REG_NODEV) needs Linux >= 7.1; this kernel refused the flag (EINVAL)",
            "use Linux 7.1 or newer, or a NIC with zcrx support (mode='zcrx')",
            errno=code,
        )
    if code == _errno.ENODEV:
        return ZeroCopyUnavailable(
            f"no network interface {dev!r} in this network namespace (ENODEV)",
            "pass interface= the name shown by `ip link` for the NIC that receives the traffic",
            errno=code,
        )
    if code == _errno.EOPNOTSUPP:
        return ZeroCopyUnavailable(
            f"{dev} cannot do zero-copy receive (EOPNOTSUPP): its driver has no queue management API "
            "or no DMA device (software devices like lo, veth, virtio_net never can)",
            "use a NIC whose driver supports io_uring zcrx (bnxt_en, mlx5, fbnic, gve) or, on Linux "
            ">= 7.1, mode='zcrx-nodev'; `python -m trio_uring doctor --interface IF` checks a NIC",
            errno=code,
        )
    if code == _errno.ERANGE:
        return ZeroCopyUnavailable(
            f"queue {queue} does not exist on {dev} (ERANGE)",
            f"pick a queue below the channel count (`ethtool -l {dev}`), or add channels: "
            f"`ethtool -L {dev} combined N`",
            errno=code,
        )
    if code == _errno.EINVAL:
        return ZeroCopyUnavailable(
            f"{dev} refused the zcrx queue (EINVAL): header/data split must be on with hds-thresh 0, "
            "or the ring lacks DEFER_TASKRUN/CQE32, or the kernel predates zcrx (Linux < 6.15)",
            f"`ethtool -G {dev} tcp-data-split on` and `ethtool -G {dev} hds-thresh 0` (ethtool >= 6.12; "
            f"with an older one: `{ynl_header_split(dev)}`); use Linux >= 6.15",
            errno=code,
        )
    if code == _errno.EEXIST:
        return ZeroCopyUnavailable(
            f"queue {queue} of {dev} is taken (EEXIST): an XDP program is attached, or another "
            "zcrx/devmem user bound the queue",
            f"detach XDP (`ip link set {dev} xdp off`) or use another queue",
            errno=code,
        )
    if code == _errno.EBUSY:
        return ZeroCopyUnavailable(
            f"queue {queue} of {dev} is used by AF_XDP (EBUSY)", "use another queue", errno=code
        )
    if code == _errno.ENODATA:
        return ZeroCopyUnavailable(
            f"{dev}'s driver did not give queue {queue} a memory-provider page pool (ENODATA)",
            "update the NIC driver/firmware to a version with io_uring zcrx support",
            errno=code,
        )
    if code == _errno.ENOMEM:
        return ZeroCopyUnavailable(
            "could not pin the zcrx area (ENOMEM): RLIMIT_MEMLOCK too low or memory exhausted",
            "raise `ulimit -l` or use a smaller area_size",
            errno=code,
        )
    return ZeroCopyUnavailable(f"zcrx registration failed: {os.strerror(code)} ({name})", errno=code)


class Ifq:
    """One registered interface queue, its area and refill ring, shared per ring."""

    def __init__(
        self,
        driver: OpDriver,
        interface: str | None,
        queue: int,
        area_size: int,
        *,
        rq_entries: int,
        nodev: bool,
    ) -> None:
        if area_size <= 0 or area_size % PAGE:
            raise ValueError(f"area_size must be a positive multiple of {PAGE}, got {area_size}")
        self.driver = driver
        self.nodev = nodev
        self.interface = interface
        self.queue = queue
        #: The area's C pointer and owner: leases view it through per-lease buffers.
        self.area_ptr, _view = alloc_slab(area_size)
        self.area_size = area_size
        if nodev:
            if_idx = 0
        else:
            if interface is None:
                raise ZeroCopyUnavailable(
                    "mode 'zcrx' needs interface= (the NIC that receives the traffic)",
                    "pass interface='eth0' (see `ip link`) and queue=N",
                )
            try:
                if_idx = socket.if_nametoindex(interface)
            except OSError:
                err = registration_error(-_errno.ENODEV, interface=interface, queue=queue, nodev=False)
                raise err from None
        out = ffi.new("tu_zcrx **")
        self._info = ffi.new("struct tu_zcrx_info *")
        ret = lib.tu_zcrx_register(
            driver.ring.native,
            if_idx,
            queue,
            rq_entries,
            NODEV if nodev else 0,
            self.area_ptr,
            area_size,
            out,
            self._info,
        )
        if ret < 0:
            raise registration_error(ret, interface=interface, queue=queue, nodev=nodev)
        self._ptr: Any = out[0]
        self.zcrx_id = int(self._info.zcrx_id)
        self.rq_entries = int(self._info.rq_entries)
        self._offs: list[int] = []
        self._lens: list[int] = []
        self.refills = 0
        self.flushes = 0
        self.users = 0
        #: The kernel takes refilled buffers back when the queue's page pool allocates: on a
        #: NIC, only when traffic reaches the bound queue (data that arrived on other queues
        #: was copied into the area and its buffers would wait), device-less never. A
        #: ``ZCRX_CTRL_FLUSH_RQ`` syscall (Linux >= 6.19) makes it take them now. It is made
        #: when a receiver ran out of area (-ENOMEM) or the refill ring fills up, not per pass.
        self.flush_wanted = False
        self.can_flush = True
        #: Refill entries published since the last flush (a flush that takes none frees nothing:
        #: re-arming starved receivers after it would only run them dry again, every pass).
        self._unflushed = 0
        #: Receivers that ran dry while holding nothing: re-armed when buffers come back.
        self.starved: set[Any] = set()
        driver.pre_enter.append(self.flush)

    def give_back(self, off: int, length: int) -> None:
        """Queue one refill entry (published with the next submission).

        The kernel silently skips malformed entries (and the buffer would leak), so they are
        refused here, before the kernel could see them.
        """
        start = off & AREA_MASK
        if (off ^ self._info.area_token) >> AREA_SHIFT or length <= 0 or start + length > self.area_size:
            raise ValueError(f"not a buffer of this zcrx area: offset {off:#x}, length {length}")
        self._offs.append(off)
        self._lens.append(length)

    def flush(self) -> None:
        """Publish queued refill entries (one release store), flush them where needed."""
        if self.driver.ring.closed or not (self._offs or self.flush_wanted):
            return
        n = len(self._offs)
        done = (
            0
            if not n
            else lib.tu_zcrx_refill(
                self._ptr, ffi.new("uint64_t[]", self._offs), ffi.new("uint32_t[]", self._lens), n
            )
        )
        if done < 0:  # give_back validates; reaching this is a bug, and nothing was written
            raise RuntimeError(f"zcrx refill rejected a batch: {os.strerror(-done)}")
        self.refills += done
        self._unflushed += done
        del self._offs[:done]
        del self._lens[:done]
        if self.starved:
            self.flush_wanted = True
        flushed = False
        if self.can_flush and (self.flush_wanted or lib.tu_zcrx_rq_space(self._ptr) < self.rq_entries // 4):
            self.flush_wanted = False
            ret = lib.tu_zcrx_flush_rq(self.driver.ring.native, self._ptr)
            if ret == 0:
                self.flushes += 1
                # it made the kernel take refills it had not taken: buffers came back
                flushed, self._unflushed = self._unflushed > 0, 0
            elif ret in (-_errno.EINVAL, -_errno.EOPNOTSUPP) and not self.nodev:
                # no ZCRX_CTRL_FLUSH_RQ (Linux < 6.19): refills wait for the queue's page pool
                self.can_flush = False
        if (done or flushed) and self.starved:  # buffers went back: receivers waiting can go on
            starved, self.starved = self.starved, set()
            for rx in starved:
                rx._arm()


def get_ifq(
    driver: OpDriver,
    interface: str | None,
    queue: int,
    area_size: int,
    *,
    nodev: bool,
    rq_entries: int = 4096,
) -> Ifq:
    """The ifq of this ring for (interface, queue), registered on first use.

    A registration that failed is remembered for the ring's lifetime: the next receiver
    gets the same error without another attempt — a fresh exception each time, built from
    the remembered cause, so no traceback (and nothing it references) accumulates.
    """
    registry: dict[Any, Ifq | ZeroCopyUnavailable] = driver.extensions.setdefault("zcrx_ifqs", {})
    key = (None if nodev else interface, queue, nodev)
    ifq = registry.get(key)
    if isinstance(ifq, ZeroCopyUnavailable):
        raise ifq.fresh()
    if ifq is None:
        try:
            ifq = Ifq(driver, interface, queue, area_size, rq_entries=rq_entries, nodev=nodev)
        except ZeroCopyUnavailable as exc:
            if exc.errno not in _TRANSIENT:  # a smaller area may pin where this one did not
                registry[key] = exc.fresh()  # without this traceback: it references the caller's frames
            raise
        registry[key] = ifq
    return ifq
