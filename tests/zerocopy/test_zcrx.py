"""zcrx modes on this kernel: ABI layout, the refill-entry writer, and every registration
error path that can be reached here, each mapped to its message and remedy. (The data path
runs for real in the kernel lane: tests/kernel/.)"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio
from trio_uring._native import ffi, lib

import trio_uring
from trio_uring import ZeroCopyUnavailable, open_zc_receiver
from trio_uring._core._caps import has_cap_net_admin
from trio_uring._core._ring import Ring, SetupFlags
from trio_uring.socket import from_stdlib_socket
from trio_uring.zerocopy._doctor import check_interface
from trio_uring.zerocopy._zcrx import registration_error

ZC_RING = SetupFlags.SINGLE_ISSUER | SetupFlags.DEFER_TASKRUN | SetupFlags.CQE32
NODEV_KERNEL = trio_uring.probe().zcrx_nodev


def test_struct_layout_matches_the_kernel_uapi() -> None:
    out = ffi.new("uint32_t[]", 64)
    n = lib.tu_abi_layout(out, 64)
    # sizes and offsets from include/uapi/linux/io_uring(/zcrx).h
    assert list(out)[:n] == [
        96,
        8,
        12,
        16,
        24,
        32,
        64,
        68,  # io_uring_zcrx_ifq_reg
        48,
        16,
        24,
        28,  # io_uring_zcrx_area_reg
        64,
        16,
        24,  # io_uring_region_desc
        16,
        8,
        12,  # io_uring_zcrx_rqe
        16,
        32,
        72,  # io_uring_zcrx_cqe, _offsets, zcrx_ctrl
        40,
        14,  # io_uring_buf_reg (flags at 14)
        64,
        44,  # io_uring_sqe, zcrx_ifq_idx at byte 44
        16,  # io_uring_cqe
    ]


def test_refill_entries_are_written_as_the_kernel_reads_them() -> None:
    rqes = ffi.new("struct tu_zcrx_rqe[]", 8)
    token = 3 << lib.TU_IORING_ZCRX_AREA_SHIFT
    offs = ffi.new("uint64_t[]", [token | 0x5000, token | 0x1000, token | 0x7000])
    lens = ffi.new("uint32_t[]", [4096, 100, 1])
    # tail 6 with mask 7: entries land in slots 6, 7, 0 (wrap-around)
    assert lib.tu_zcrx_fill_rqes(rqes, 7, 6, token, 0x8000, offs, lens, 3) == 3
    assert [(rqes[i].off, rqes[i].len, rqes[i].__pad) for i in (6, 7, 0)] == [
        (token | 0x5000, 4096, 0),
        (token | 0x1000, 100, 0),
        (token | 0x7000, 1, 0),
    ]


@pytest.mark.parametrize(
    ("off", "length", "why"),
    [
        ((1 << lib.TU_IORING_ZCRX_AREA_SHIFT) | 0x1000, 100, "another area's token"),
        (0x1000, 0, "zero length"),
        (0x8000, 1, "past the area"),
        (0x7F00, 0x200, "runs past the area"),
    ],
)
def test_bad_refill_entries_are_refused_before_the_kernel_sees_them(off: int, length: int, why: str) -> None:
    rqes = ffi.new("struct tu_zcrx_rqe[]", 4)
    offs = ffi.new("uint64_t[]", [0x1000, off])
    lens = ffi.new("uint32_t[]", [100, length])
    assert lib.tu_zcrx_fill_rqes(rqes, 3, 0, 0, 0x8000, offs, lens, 2) == -errno.EINVAL, why
    assert all(rqes[i].off == 0 and rqes[i].len == 0 for i in range(4)), "nothing may be written"


def register(ring: Ring, if_idx: int, flags: int = 0, area: int = 16 * 4096) -> int:
    raw = lib.tu_slab_alloc(area)
    try:
        out = ffi.new("tu_zcrx **")
        info = ffi.new("struct tu_zcrx_info *")
        return int(lib.tu_zcrx_register(ring.native, if_idx, 0, 64, flags, raw, area, out, info))
    finally:
        lib.tu_slab_free(raw)


def test_registration_on_loopback_fails_with_eopnotsupp_and_says_why() -> None:
    with Ring(8, flags=ZC_RING, required=ZC_RING) as ring:
        ret = register(ring, 1)
    assert ret == -errno.EOPNOTSUPP
    msg = str(registration_error(ret, interface="lo", queue=0, nodev=False))
    assert "lo cannot do zero-copy receive" in msg and "bnxt_en" in msg and "zcrx-nodev" in msg


def test_registration_flag_errors_map_to_their_cause() -> None:
    with Ring(8, flags=ZC_RING, required=ZC_RING) as ring:
        bad_flags = register(ring, 1, flags=1 << 7)
    assert bad_flags == -errno.EINVAL
    msg = str(registration_error(bad_flags, interface="eth0", queue=0, nodev=False))
    assert "tcp-data-split on" in msg and "hds-thresh 0" in msg
    with Ring(8, flags=SetupFlags.NONE) as plain:  # no DEFER_TASKRUN / CQE32
        assert register(plain, 1) == -errno.EINVAL


@pytest.mark.skipif(NODEV_KERNEL, reason="this kernel has device-less zcrx: see tests/kernel/")
def test_device_less_mode_on_a_kernel_without_it() -> None:
    with Ring(8, flags=ZC_RING, required=ZC_RING) as ring:
        ret = register(ring, 0, flags=int(lib.TU_ZCRX_REG_NODEV))
    assert ret == -errno.EINVAL
    assert "Linux >= 7.1" in str(registration_error(ret, interface=None, queue=0, nodev=True))


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_explicit_modes_raise_and_auto_falls_back_with_reasons(runner: object) -> None:
    async def main() -> None:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            b = socket.create_connection(lsock.getsockname())
            a = from_stdlib_socket(lsock.accept()[0])
        with a, b:
            with pytest.raises(ZeroCopyUnavailable, match="needs interface="):
                async with open_zc_receiver(a, mode="zcrx"):
                    pass
            with pytest.raises(ZeroCopyUnavailable, match="cannot do zero-copy receive") as info:
                async with open_zc_receiver(a, mode="zcrx", interface="lo"):
                    pass
            assert info.value.errno == errno.EOPNOTSUPP
            with pytest.raises(ZeroCopyUnavailable, match=r"needs area_size >= 1 MiB") as small:
                async with open_zc_receiver(a, mode="zcrx", interface="lo", area_size=256 << 10):
                    pass
            assert "area_size=1048576" in str(small.value)
            with pytest.raises(ZeroCopyUnavailable, match=r"no network interface 'nosuch0'"):
                async with open_zc_receiver(a, mode="zcrx", interface="nosuch0"):
                    pass
            if not NODEV_KERNEL:
                with pytest.raises(ZeroCopyUnavailable, match=r"7\.1"):
                    async with open_zc_receiver(a, mode="zcrx-nodev"):
                        pass
            for queue in (None, 0, 1):
                # the queue is the NIC's: device-less zcrx is tried without it (the kernel
                # refuses device-less registration with any interface or queue set)
                async with open_zc_receiver(a, interface="lo", queue=queue) as rx:
                    reason = rx.statistics().fallback_reason
                    assert rx.mode == ("zcrx-nodev" if NODEV_KERNEL else "copy"), (queue, reason)
                    assert reason.startswith("zcrx: lo cannot do zero-copy receive")
                    if not NODEV_KERNEL:
                        assert "zcrx-nodev: device-less zcrx" in reason
            for kwargs in ({"interface": "lo"}, {"queue": 1}, {"queue": 0}):
                with pytest.raises(ValueError, match="receives without a device"):
                    async with open_zc_receiver(a, mode="zcrx-nodev", **kwargs):
                        pass

    runner(main)  # type: ignore[operator]


# Drops CAP_NET_ADMIN from the effective and permitted sets (capset, v3) before the payload.
_DROP_NET_ADMIN = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
hdr = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0))
data = ctypes.create_string_buffer(24)
assert libc.capget(hdr, data) == 0
eff, perm, inh, eff1, perm1, inh1 = struct.unpack("=6I", data.raw)
mask = ~(1 << 12) & 0xFFFFFFFF
data = ctypes.create_string_buffer(struct.pack("=6I", eff & mask, perm & mask, inh, eff1, perm1, inh1))
assert libc.capset(hdr, data) == 0, ctypes.get_errno()
"""


def _without_net_admin(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _DROP_NET_ADMIN + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not has_cap_net_admin(), reason="requires root (CAP_NET_ADMIN) to drop it")
def test_without_cap_net_admin_the_error_says_so() -> None:
    res = _without_net_admin("""
import errno, socket, trio, trio_uring
from trio_uring._core._caps import has_cap_net_admin
from trio_uring._core._ring import Ring, SetupFlags
from trio_uring._native import ffi, lib
from trio_uring.zerocopy._zcrx import registration_error
f = SetupFlags.SINGLE_ISSUER | SetupFlags.DEFER_TASKRUN | SetupFlags.CQE32
with Ring(8, flags=f, required=f) as ring:
    raw = lib.tu_slab_alloc(65536)
    ret = lib.tu_zcrx_register(ring.native, 1, 0, 64, 0, raw, 65536, ffi.new("tu_zcrx **"),
                               ffi.new("struct tu_zcrx_info *"))
print("KERNEL", ret, registration_error(ret, interface="lo", queue=0, nodev=False))
async def main():
    a = trio_uring.socket.socket()  # TCP (zcrx receives nothing else); unconnected is enough here
    try:
        async with trio_uring.open_zc_receiver(a, mode="zcrx-nodev"):
            pass
    except trio_uring.ZeroCopyUnavailable as exc:
        print("API", exc)
    async with trio_uring.open_zc_receiver(a, interface="lo") as rx:
        print("AUTO", rx.mode, rx.statistics().fallback_reason)
trio_uring.run(main)
""")
    assert res.returncode == 0, res.stderr
    assert f"KERNEL {-errno.EPERM} zcrx registration needs CAP_NET_ADMIN" in res.stdout
    assert "API zcrx needs CAP_NET_ADMIN" in res.stdout and "setcap" in res.stdout
    assert "AUTO copy zcrx: zcrx needs CAP_NET_ADMIN" in res.stdout


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="requires root and iproute2 to make a network namespace with a veth pair",
)
def test_veth_in_our_own_namespace_fails_with_eopnotsupp() -> None:
    ns = f"tu-zc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "tuv0", "type", "veth", "peer", "name", "tuv1"], check=True
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "tuv0", "up"], check=True)
        code = """
import trio, trio_uring, socket
async def main():
    a = trio_uring.socket.socket()
    try:
        async with trio_uring.open_zc_receiver(a, mode="zcrx", interface="tuv0"):
            pass
    except trio_uring.ZeroCopyUnavailable as exc:
        print("ERRNO", exc.errno, exc)
trio_uring.run(main)
"""
        res = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert f"ERRNO {errno.EOPNOTSUPP} tuv0 cannot do zero-copy receive" in res.stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_doctor_reads_nic_state_without_changing_it(tmp_path: Path) -> None:
    def nic(name: str, driver: str | None, queues: int) -> None:
        base = tmp_path / name
        (base / "queues").mkdir(parents=True)
        for q in range(queues):
            (base / "queues" / f"rx-{q}").mkdir()
        if driver:
            drv = tmp_path / "drivers" / driver
            drv.mkdir(parents=True)
            (base / "device").mkdir()
            (base / "device" / "driver").symlink_to(drv)

    nic("swdev", None, 1)
    nic("old0", "e1000e", 4)
    nic("bnxt0", "bnxt_en", 1)
    sw = check_interface("swdev", sysfs=tmp_path)
    assert not sw.ok and "software device" in str(sw)
    old = check_interface("old0", sysfs=tmp_path)
    assert not old.ok and "'e1000e' is not known" in str(old)
    bn = check_interface("bnxt0", queue=3, sysfs=tmp_path)
    assert not bn.ok and "queue 3 does not exist" in str(bn)
    assert "ethtool -L bnxt0 combined 4" in str(bn)
    assert not check_interface("nosuch", sysfs=tmp_path).exists
    assert "software device" in str(check_interface("lo"))


def test_zcrx_modes_refuse_non_tcp_sockets() -> None:
    async def main() -> None:
        a, b = trio_uring.socket.socketpair()
        with a, b:
            with pytest.raises(ZeroCopyUnavailable, match="TCP only; this is an AF_UNIX socket"):
                async with open_zc_receiver(a, mode="zcrx-nodev"):
                    pass
            async with open_zc_receiver(a) as rx:
                assert rx.mode == "copy"
                assert "zcrx-nodev: zcrx receives TCP only" in rx.statistics().fallback_reason

    trio_uring.run(main)
