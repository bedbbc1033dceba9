"""What this machine's io_uring can do, found by trying it (never by version guessing).

Every answer comes from a real attempt on a throwaway ring: setup flag sets, the opcode
probe, a multishot accept and a multishot recv over loopback, buffer-ring registration
with incremental consumption, and zcrx interface-queue registration on ``lo`` (which can
only fail, and *how* it fails tells whether the kernel has zcrx and whether we may use it).
"""

from __future__ import annotations

import errno as _errno
import os
import platform
import re
import socket

import attrs

from .._native import ffi, lib
from ._bufring import BufferRing, alloc_slab
from ._caps import has_cap_net_admin
from ._errors import UringUnavailable, read_sysctl, setup_error
from ._ring import CQE_F_MORE, Ring, SetupFlags

__all__ = ["ProbeReport", "probe"]

_OPCODES = {
    "NOP": lib.IORING_OP_NOP,
    "POLL_ADD": lib.IORING_OP_POLL_ADD,
    "SENDMSG": lib.IORING_OP_SENDMSG,
    "TIMEOUT": lib.IORING_OP_TIMEOUT,
    "ACCEPT": lib.IORING_OP_ACCEPT,
    "ASYNC_CANCEL": lib.IORING_OP_ASYNC_CANCEL,
    "CONNECT": lib.IORING_OP_CONNECT,
    "CLOSE": lib.IORING_OP_CLOSE,
    "SEND": lib.IORING_OP_SEND,
    "RECV": lib.IORING_OP_RECV,
    "SHUTDOWN": lib.IORING_OP_SHUTDOWN,
    "MSG_RING": lib.IORING_OP_MSG_RING,
    "SEND_ZC": lib.IORING_OP_SEND_ZC,
    "RECV_ZC": lib.TU_IORING_OP_RECV_ZC,
}
_FEATURES = {
    "NODROP": lib.IORING_FEAT_NODROP,
    "FAST_POLL": lib.IORING_FEAT_FAST_POLL,
    "EXT_ARG": lib.IORING_FEAT_EXT_ARG,
    "NATIVE_WORKERS": lib.IORING_FEAT_NATIVE_WORKERS,
    "CQE_SKIP": lib.IORING_FEAT_CQE_SKIP,
    "RECVSEND_BUNDLE": lib.TU_IORING_FEAT_RECVSEND_BUNDLE,
    "MIN_TIMEOUT": lib.TU_IORING_FEAT_MIN_TIMEOUT,  # wait coalescing (UringIOManager)
}
_SETUP_CHECKS = {
    "SINGLE_ISSUER|DEFER_TASKRUN": SetupFlags.SINGLE_ISSUER | SetupFlags.DEFER_TASKRUN,
    "COOP_TASKRUN|TASKRUN_FLAG": SetupFlags.COOP_TASKRUN | SetupFlags.TASKRUN_FLAG,
    "SUBMIT_ALL": SetupFlags.SUBMIT_ALL,
    "CQE32": SetupFlags.CQE32,
    "CQE_MIXED": SetupFlags.CQE_MIXED,
}
_ZCRX_RING = SetupFlags.SINGLE_ISSUER | SetupFlags.DEFER_TASKRUN | SetupFlags.CQE32


@attrs.frozen
class ProbeReport:
    """A snapshot of io_uring capabilities; ``str()`` gives the human report."""

    #: ``uname -r``: the kernel release
    kernel: str
    #: whether a ring could be set up and used; if not, ``reason``, ``remedy`` and ``errno`` say why
    usable: bool
    #: why io_uring cannot be used (None if it can)
    reason: str | None = None
    #: what to change so that it can
    remedy: str | None = None
    #: the kernel's answer to the call that failed
    errno: int | None = None
    #: sysctl ``kernel.io_uring_disabled`` (0 allows all, 1 a group, 2 nobody); None if unreadable
    io_uring_disabled: str | None = None
    #: ``IORING_FEAT_*`` names the kernel reports (``MIN_TIMEOUT``: wait coalescing, ...)
    features: frozenset[str] = frozenset()
    #: setup flag sets tried on a throwaway ring, and whether the kernel took each
    setup_flags: dict[str, bool] = attrs.Factory(dict)
    #: ``IORING_OP_*`` names the kernel supports, of those trio-uring uses
    opcodes: frozenset[str] = frozenset()
    #: a multishot ``ACCEPT`` delivered a connection and stayed armed (Linux 5.19)
    multishot_accept: bool = False
    #: a multishot ``RECV`` into a buffer ring delivered data and stayed armed (Linux 6.0)
    multishot_recv: bool = False
    #: provided buffer rings can be registered (Linux 5.19)
    buffer_rings: bool = False
    #: buffer rings with incremental consumption, ``IOU_PBUF_RING_INC`` (Linux 6.12)
    incremental_buffers: bool = False
    #: bundled receives and sends, ``IORING_FEAT_RECVSEND_BUNDLE`` (Linux 6.10)
    bundle: bool = False
    #: the process has CAP_NET_ADMIN (zcrx registration and 32-byte CQEs need it)
    cap_net_admin: bool = False
    #: "available" (kernel has zcrx; a NIC with queue API can register), "no-permission",
    #: "kernel-lacks-zcrx", or "unusable: <errno>".
    zcrx_kernel: str = "unknown"
    #: device-less zcrx (``ZCRX_REG_NODEV``, Linux >= 7.1) registered on this kernel
    zcrx_nodev: bool = False
    #: why device-less zcrx is not available ("" if it is)
    zcrx_nodev_reason: str = ""

    @property
    def kernel_version(self) -> tuple[int, ...]:
        """``kernel`` as numbers: ``(6, 18, 44)`` for ``"6.18.44-1-amd64"``."""
        return kernel_version(self.kernel)

    def __str__(self) -> str:
        def yn(v: bool) -> str:
            return "yes" if v else "no"

        lines = [f"kernel            {self.kernel}"]
        if not self.usable:
            lines.append(f"io_uring          UNAVAILABLE: {self.reason}")
            if self.remedy:
                lines.append(f"  to fix          {self.remedy}")
            return "\n".join(lines)
        lines += [
            "io_uring          usable",
            f"sysctl            kernel.io_uring_disabled = {self.io_uring_disabled}",
            f"features          {' '.join(sorted(self.features))}",
            "setup flags       " + " ".join(f"{k}={yn(v)}" for k, v in self.setup_flags.items()),
            f"opcodes           {' '.join(sorted(self.opcodes))}",
            f"multishot accept  {yn(self.multishot_accept)}",
            f"multishot recv    {yn(self.multishot_recv)}",
            f"buffer rings      {yn(self.buffer_rings)} (incremental: {yn(self.incremental_buffers)}, "
            f"bundles: {yn(self.bundle)})",
            f"CAP_NET_ADMIN     {yn(self.cap_net_admin)}",
            f"zcrx (hardware)   {self.zcrx_kernel}",
            f"zcrx (device-less) {yn(self.zcrx_nodev)}"
            + (f": {self.zcrx_nodev_reason}" if self.zcrx_nodev_reason else ""),
        ]
        return "\n".join(lines)


def kernel_version(release: str) -> tuple[int, ...]:
    nums: list[int] = []
    for part in release.split("-", maxsplit=1)[0].split(".")[:3]:
        digits = re.match(r"\d*", part)
        nums.append(int(digits.group()) if digits and digits.group() else 0)
    return tuple(nums)


def _try_multishot_accept(ring: Ring) -> bool:
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        ring.prep_accept(lsock, 1, multishot=True)
        ring.submit()
        with socket.create_connection(lsock.getsockname(), timeout=2):
            b = ring.enter(1, 2.0)
        ok = False
        for res, fl in zip(b.res, b.flags):
            if res >= 0:
                os.close(res)
                ok = bool(fl & CQE_F_MORE)
        ring.prep_cancel(1)
        ring.enter(0, 0)
        return ok


def _try_multishot_recv(ring: Ring, bufs: BufferRing) -> bool:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_recv_select(a, bufs.bgid, 2, multishot=True)
        ring.submit()
        b.send(b"x")
        batch = ring.enter(1, 2.0)
        ok = any(r == 1 and fl & CQE_F_MORE for r, fl in zip(batch.res, batch.flags))
        ring.prep_cancel(2)
        ring.enter(0, 0)
        return ok


def _zcrx_attempt(flags: int, interface: str = "lo", queue: int = 0) -> int:
    """Register an ifq on ``interface``/``queue`` on a throwaway zcrx-capable ring, and drop it
    with the ring at once: 0 or -errno. Device-less (``flags``) takes no interface or queue."""
    try:
        ring = Ring(8, flags=_ZCRX_RING, required=_ZCRX_RING)
    except UringUnavailable as exc:
        return -(exc.errno or _errno.EINVAL)
    with ring:
        slab, _view = alloc_slab(16 * 4096)
        out = ffi.new("tu_zcrx **")
        info = ffi.new("struct tu_zcrx_info *")
        try:
            idx = 0 if flags else socket.if_nametoindex(interface)
        except OSError:
            return -_errno.ENODEV
        return int(
            lib.tu_zcrx_register(
                ring.native, idx, 0 if flags else queue, 64, flags, slab, 16 * 4096, out, info
            )
        )


def probe() -> ProbeReport:
    """Find out, by trying, what io_uring on this machine can do."""
    release = platform.release()
    disabled = read_sysctl("kernel/io_uring_disabled")
    ret = lib.tu_try_setup(0)
    if ret < 0:
        exc = setup_error(ret)
        return ProbeReport(
            kernel=release,
            usable=False,
            reason=exc.reason,
            remedy=exc.remedy,
            errno=exc.errno,
            io_uring_disabled=disabled,
        )
    setup = {name: lib.tu_try_setup(int(f)) == 0 for name, f in _SETUP_CHECKS.items()}
    ring = Ring(16)
    with ring:
        ops = ffi.new("uint8_t[]", 256)
        lib.tu_probe_opcodes(ring.native, ops, 256)
        opcodes = frozenset(name for name, op in _OPCODES.items() if ops[op])
        features = frozenset(name for name, bit in _FEATURES.items() if ring.features & bit)
        accept_ms = _try_multishot_accept(ring)
        try:
            bufs: BufferRing | None = BufferRing(ring, entries=2, buf_size=64, incremental=None)
        except OSError:
            bufs = None
        recv_ms = _try_multishot_recv(ring, bufs) if bufs else False
        inc = bool(bufs and bufs.incremental)
    zc = _zcrx_attempt(0)
    cap = has_cap_net_admin()
    if zc == -_errno.EOPNOTSUPP:
        zcrx = (
            "available: the kernel has zcrx; registration needs a NIC whose driver has the "
            "queue API (bnxt, mlx5, fbnic, gve), see `python -m trio_uring doctor --interface IF`"
        )
    elif zc == -_errno.EPERM:
        zcrx = "no permission: registration needs CAP_NET_ADMIN in the initial user namespace"
    elif zc == -_errno.EINVAL and "RECV_ZC" not in opcodes:
        zcrx = "kernel lacks zcrx (Linux >= 6.15 with CONFIG_IO_URING_ZCRX=y needed)"
    elif zc == 0:
        zcrx = "available (registered on lo: this kernel accepts software devices)"
    else:
        zcrx = f"unusable: registration on lo failed with {_errno.errorcode.get(-zc, zc)}"
    nodev = _zcrx_attempt(lib.TU_ZCRX_REG_NODEV) if zc != -_errno.EPERM else -_errno.EPERM
    if nodev == 0:
        nodev_reason = ""
    elif nodev == -_errno.EPERM:
        nodev_reason = "needs CAP_NET_ADMIN"
    elif nodev == -_errno.EINVAL:
        nodev_reason = "kernel has no ZCRX_REG_NODEV (Linux >= 7.1 needed)"
    else:
        nodev_reason = f"registration failed with {_errno.errorcode.get(-nodev, nodev)}"
    return ProbeReport(
        kernel=release,
        usable=True,
        io_uring_disabled=disabled,
        features=features,
        setup_flags=setup,
        opcodes=opcodes,
        multishot_accept=accept_ms,
        multishot_recv=recv_ms,
        buffer_rings=bufs is not None,
        incremental_buffers=inc,
        bundle="RECVSEND_BUNDLE" in features,
        cap_net_admin=cap,
        zcrx_kernel=zcrx,
        zcrx_nodev=nodev == 0,
        zcrx_nodev_reason=nodev_reason,
    )
