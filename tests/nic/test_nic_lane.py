"""The hardware zcrx path (``mode="zcrx"``) on a simulated NIC: runs in the NIC lane.

``make nic-lane`` runs this file inside ``scripts/kernel-vm --nic``: two netdevsim ports
(patched for zcrx, see scripts/nic/netdevsim-zcrx.patch) in two network namespaces, header
split on. The sender runs in the peer namespace, so every byte crosses the simulated NIC; a
flow steered to the queue the receiver bound is written by the simulated device straight
into the io_uring area (header split, payload in the area's buffers), any other flow reaches
the area through the kernel's copy fallback. Outside the lane every test is skipped. Each
test prints what it measured (``-s``): the receiver's statistics next to the kernel's page
pool counters and the simulated NIC's own.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

import trio_uring
from trio_uring import UringSocketStream, ZeroCopyUnavailable, open_zc_receiver
from trio_uring.socket import from_stdlib_socket
from trio_uring.zerocopy._doctor import check_interface

from .._util import tcp_pair, zcrx_ifq
from ._nic import MiB, Nic, digest

NIC = Nic.from_env()
pytestmark = pytest.mark.skipif(
    NIC is None, reason="needs the NIC lane (simulated zcrx NIC): make nic-lane, or scripts/kernel-vm --nic"
)


@pytest.fixture
def nic() -> Nic:
    assert NIC is not None
    return NIC


async def receive_all(rx: Any, h: Any, *, stall: float, timeout: float) -> None:
    """Hash every lease until the end of stream; fail if nothing arrives for ``stall``
    seconds or the whole takes longer than ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            with trio.fail_after(stall):
                batch = await rx.receive_batch()
            if not batch:
                return
            for lease in batch:
                with lease:
                    h.update(lease.data)


async def zc_receive(
    nic: Nic,
    conn: Any,
    *,
    queue: int,
    area_size: int,
    mode: str = "zcrx",
    interface: str | None = None,
    stall: float = 20,
    timeout: float = 300,
    inside: Callable[[Any], Any] | None = None,
) -> tuple[Any, bytes, Any]:
    """Receive ``conn`` to its end through a zero-copy receiver; statistics, digest and
    what ``inside(rx)`` returned after the last byte (while the receiver is still open)."""
    h = hashlib.sha256()
    stream = UringSocketStream(from_stdlib_socket(conn))
    async with (
        stream,
        open_zc_receiver(
            stream, interface=interface or nic.interface, queue=queue, area_size=area_size, mode=mode
        ) as rx,
    ):
        await receive_all(rx, h, stall=stall, timeout=timeout)
        seen = inside(rx) if inside is not None else None
        st = rx.statistics()
    return st, h.digest(), seen


def transfer(
    nic: Nic,
    total: int,
    seed: int,
    *,
    queue: int,
    steer_to: int | None,
    area_size: int,
    inside: Callable[[Any], Any] | None = None,
    stall: float = 20,
) -> tuple[Any, dict[str, int], Any]:
    """``total`` bytes from the peer namespace to a receiver bound to ``queue``, the flow
    steered to rx queue ``steer_to`` (None: where the NIC's own hashing puts it). Checks the
    bytes; returns the receiver's statistics, the simulated NIC's counter deltas and what
    ``inside`` returned."""
    out: list[Any] = []
    before = nic.sim_stats()
    with nic.listener() as lsock:
        port = lsock.getsockname()[1]
        steer = nic.steer(port, steer_to) if steer_to is not None else contextlib.nullcontext()
        with steer, nic.sender(lsock, total, seed) as conn:
            out.append(
                trio_uring.run(
                    lambda: zc_receive(
                        nic, conn, queue=queue, area_size=area_size, inside=inside, stall=stall
                    )
                )
            )
    st, got, seen = out[0]
    after = nic.sim_stats()
    assert got == digest(total, seed), "the bytes differ from what the peer sent"
    return st, {k: after[k] - before[k] for k in after}, seen


# ---- registration ---------------------------------------------------------------------------------
def test_registration_on_every_queue(nic: Nic) -> None:
    """One ring binds every queue in turn (a receiver each, its flow steered there): the
    kernel reports every queue bound to io_uring while the ring lives, none after."""
    assert nic.queues >= 2
    total = 1 * MiB
    with contextlib.ExitStack() as stack:
        conns = []
        for q in range(nic.queues):
            lsock = stack.enter_context(nic.listener())
            stack.enter_context(nic.steer(lsock.getsockname()[1], q))
            conns.append(stack.enter_context(nic.sender(lsock, total, 100 + q)))
        before = nic.sim_stats()

        async def main() -> tuple[list[Any], list[int]]:
            res = [await zc_receive(nic, conn, queue=q, area_size=1 * MiB) for q, conn in enumerate(conns)]
            return res, nic.bound_queues()

        results, bound = trio_uring.run(main)
    sim = {k: v - before[k] for k, v in nic.sim_stats().items()}
    for q, (st, got, _) in enumerate(results):
        print(f"\nqueue {q}: {st}")
        assert st.mode == "zcrx" and st.bytes == total and got == digest(total, 100 + q)
    print(f"kernel: io_uring bound to rx queues {bound}; simulated NIC: {sim}")
    assert bound == list(range(nic.queues))
    assert sim["hds_payload_bytes"] >= nic.queues * total // 2 or not nic.simulated
    assert nic.bound_queues() == [], "a queue stayed bound after its ring closed"


def test_two_receivers_on_one_queue(nic: Nic) -> None:
    total = 8 * MiB
    before = nic.sim_stats()
    with nic.listener() as la, nic.listener() as lb:
        pa, pb = la.getsockname()[1], lb.getsockname()[1]
        with (
            nic.steer(pa, 1),
            nic.steer(pb, 1),
            nic.sender(la, total, 11) as ca,
            nic.sender(lb, total, 12) as cb,
        ):

            async def main() -> list[Any]:
                res: list[Any] = [None, None]
                sa, sb = UringSocketStream(from_stdlib_socket(ca)), UringSocketStream(from_stdlib_socket(cb))
                kw: dict[str, Any] = {
                    "interface": nic.interface,
                    "queue": 1,
                    "area_size": 2 * MiB,
                    "mode": "zcrx",
                }
                async with sa, sb, open_zc_receiver(sa, **kw) as ra, open_zc_receiver(sb, **kw) as rb:
                    assert zcrx_ifq(ra) is zcrx_ifq(rb) and zcrx_ifq(ra).users == 2

                    async def one(i: int, rx: Any) -> None:
                        h = hashlib.sha256()
                        await receive_all(rx, h, stall=20, timeout=300)
                        res[i] = (rx.statistics(), h.digest())

                    async with trio.open_nursery() as n:
                        n.start_soon(one, 0, ra)
                        n.start_soon(one, 1, rb)
                return res

            (sta, da), (stb, db) = trio_uring.run(main)
    sim = {k: v - before[k] for k, v in nic.sim_stats().items()}
    print(f"\nA {sta}\nB {stb}\nsim {sim}")
    assert da == digest(total, 11) and db == digest(total, 12)
    assert sim["hds_payload_bytes"] >= total or not nic.simulated  # both flows went through the DMA


def test_two_queues_at_once(nic: Nic) -> None:
    total = 8 * MiB
    before = nic.sim_stats()
    with nic.listener() as la, nic.listener() as lb:
        pa, pb = la.getsockname()[1], lb.getsockname()[1]
        with (
            nic.steer(pa, 1),
            nic.steer(pb, 2),
            nic.sender(la, total, 21) as ca,
            nic.sender(lb, total, 22) as cb,
        ):

            async def main() -> list[Any]:
                res: list[Any] = [None, None, None]
                sa, sb = UringSocketStream(from_stdlib_socket(ca)), UringSocketStream(from_stdlib_socket(cb))
                base: dict[str, Any] = {"interface": nic.interface, "area_size": 2 * MiB, "mode": "zcrx"}
                async with (
                    sa,
                    sb,
                    open_zc_receiver(sa, queue=1, **base) as ra,
                    open_zc_receiver(sb, queue=2, **base) as rb,
                ):
                    assert zcrx_ifq(ra) is not zcrx_ifq(rb)
                    res[2] = nic.bound_queues()

                    async def one(i: int, rx: Any) -> None:
                        h = hashlib.sha256()
                        await receive_all(rx, h, stall=20, timeout=300)
                        res[i] = (rx.statistics(), h.digest())

                    async with trio.open_nursery() as n:
                        n.start_soon(one, 0, ra)
                        n.start_soon(one, 1, rb)
                return res

            (sta, da), (stb, db), bound = trio_uring.run(main)
    sim = {k: v - before[k] for k, v in nic.sim_stats().items()}
    print(f"\nqueue 1 {sta}\nqueue 2 {stb}\nbound {bound}; sim {sim}")
    assert bound == [1, 2]
    assert da == digest(total, 21) and db == digest(total, 22)
    assert sim["hds_payload_bytes"] >= total or not nic.simulated


def test_queue_busy(nic: Nic) -> None:
    """A queue bound by one ring cannot be bound by another: the kernel refuses with EEXIST
    ("designated queue already memory provider bound"; Linux 7.2 says EBUSY only for AF_XDP
    and leased queues), and the error names the queue and what holds it."""

    def other_ring() -> ZeroCopyUnavailable:
        async def attempt() -> ZeroCopyUnavailable:
            tx, rxs = tcp_pair()
            async with tx, rxs:
                with pytest.raises(ZeroCopyUnavailable) as info:
                    async with open_zc_receiver(rxs, interface=nic.interface, queue=1, mode="zcrx"):
                        pass
                return info.value

        return trio.run(attempt)

    async def main() -> ZeroCopyUnavailable:
        tx, rxs = tcp_pair()
        async with (
            tx,
            rxs,
            open_zc_receiver(rxs, interface=nic.interface, queue=1, mode="zcrx", area_size=1 * MiB),
        ):
            assert nic.bound_queues() == [1]
            return await trio.to_thread.run_sync(other_ring)

    err = trio_uring.run(main)
    print(f"\nsecond ring on queue 1: {err}")
    assert err.errno == errno.EEXIST
    assert f"queue 1 of {nic.interface} is taken" in str(err)


@pytest.fixture(scope="class")
def header_split_off() -> Iterator[Nic]:
    """Header split off for the tests of TestHeaderSplitOff (one switch each way: ynl is
    slow in the VM), back on afterwards (the switch fails loudly if it cannot)."""
    assert NIC is not None
    NIC.set_header_split(False)
    try:
        yield NIC
    finally:
        NIC.set_header_split(True)


class TestHeaderSplitOff:
    def test_header_split_off_names_the_command(self, header_split_off: Nic) -> None:
        nic = header_split_off

        async def main() -> ZeroCopyUnavailable:
            tx, rxs = tcp_pair()
            async with tx, rxs:
                with pytest.raises(ZeroCopyUnavailable) as info:
                    async with open_zc_receiver(rxs, interface=nic.interface, queue=1, mode="zcrx"):
                        pass
                return info.value

        err = trio_uring.run(main)
        print(f"\nheader split off: {err}")
        assert err.errno == errno.EINVAL
        assert f"ethtool -G {nic.interface} tcp-data-split on" in str(err)
        assert "tools/net/ynl" in str(err)  # for an ethtool older than 6.12 (Debian 12's is 6.1)

    def test_auto_with_queue_1_ends_in_the_best_mode(self, header_split_off: Nic) -> None:
        """``auto`` with interface and queue=1 where the hardware attempt fails (header split
        off): the device-less attempt must not pass the queue on, so the receiver ends in
        zcrx-nodev (this kernel has it), and fallback_reason names the real cause."""
        nic = header_split_off

        async def main() -> Any:
            tx, rxs = tcp_pair()
            async with tx, rxs, open_zc_receiver(rxs, interface=nic.interface, queue=1) as rx:
                await tx.send_all(b"auto")
                with await rx.receive() as lease:
                    assert bytes(lease.data) == b"auto"
                return rx.statistics()

        st = trio_uring.run(main)
        print(f"\nauto, queue=1, header split off: {st}")
        assert st.mode == "zcrx-nodev"
        assert "header/data split" in st.fallback_reason and "7.1" not in st.fallback_reason


# ---- leases and teardown ------------------------------------------------------------------------
def test_teardown_while_leases_are_out(nic: Nic) -> None:
    """The run (and its ring) ends while the user still holds leases: they are released,
    reading one raises, and the kernel unbinds the queue."""
    held: list[Any] = []
    stats: list[Any] = []
    with (
        nic.listener() as lsock,
        nic.steer(lsock.getsockname()[1], 1),
        nic.sender(lsock, 4 * MiB, 31, check=False) as conn,
    ):

        async def main() -> None:
            stream = UringSocketStream(from_stdlib_socket(conn))
            async with (
                stream,
                open_zc_receiver(
                    stream, interface=nic.interface, queue=1, mode="zcrx", area_size=1 * MiB
                ) as rx,
            ):
                with trio.fail_after(60):
                    while len(held) < 32:
                        held.append(await rx.receive())
                assert nic.bound_queues() == [1]
                stats.append(rx.statistics())
            stats.append(rx.statistics())

        trio_uring.run(main)
    print(f"\nwith {len(held)} leases out: {stats[0]}\nafter: {stats[1]}")
    assert stats[0].leases_out >= 32
    assert all(lease.released for lease in held)
    with pytest.raises(ValueError, match="released"):
        held[0].data  # noqa: B018 - the access is the test
    assert stats[1].leases_out == 0 and stats[1].refills == stats[1].leases
    assert nic.bound_queues() == []


def test_scope_exit_returns_every_buffer(nic: Nic) -> None:
    """Leases held when a receiver's scope is cancelled all go back; a second receiver on
    the same ring and queue then moves the rest of 16 MiB through the same 1 MiB area, and
    the stream arrives byte-exact across the two receivers.

    (With a 256 KiB area - 64 buffers - the receiver stalls before its first lease: the
    queue's page pool keeps up to 128 of the area's buffers in its own cache, and bytes that
    arrived before the queue was bound need the copy fallback, which finds the area empty.)"""
    total, area = 16 * MiB, 1 * MiB
    out: list[Any] = []
    h = hashlib.sha256()
    with nic.listener() as lsock:
        port = lsock.getsockname()[1]
        with nic.steer(port, 1), nic.sender(lsock, total, 41) as c1:

            async def main() -> None:
                s1 = UringSocketStream(from_stdlib_socket(c1))
                kw: dict[str, Any] = {
                    "interface": nic.interface,
                    "queue": 1,
                    "area_size": area,
                    "mode": "zcrx",
                }
                async with s1:
                    leases: list[Any] = []
                    with trio.CancelScope() as cs:
                        async with open_zc_receiver(s1, **kw) as rx:
                            with trio.fail_after(60):
                                while len(leases) < 16:
                                    lease = await rx.receive()
                                    h.update(lease.data)
                                    leases.append(lease)
                            cs.cancel()
                            await trio.sleep_forever()
                    out.append(rx.statistics())
                    assert all(lease.released for lease in leases)
                    # the rest of the stream, through the same (shared) ifq and area
                    async with open_zc_receiver(s1, **kw) as rx2:
                        assert zcrx_ifq(rx2) is zcrx_ifq(rx)
                        await receive_all(rx2, h, stall=20, timeout=300)
                        out.append(rx2.statistics())

            trio_uring.run(main)
    first, second = out
    print(f"\nscope exit with 16 leases out: {first}\nthen: {second}")
    assert h.digest() == digest(total, 41)
    assert first.leases_out == 0 and first.refills == first.leases
    # what the first receiver had received but not handed out went back to the stream and
    # reaches the second as one lease that is a copy in user memory: no buffer to give back
    handed_back = 1 if first.completions > 16 else 0
    assert second.leases_out == 0 and second.refills == second.leases - handed_back


# ---- bulk data through the simulated DMA ---------------------------------------------------------
def test_256MiB_byte_exact_with_simulated_dma(nic: Nic) -> None:
    total = 256 * MiB
    st, sim, pools = transfer(
        nic, total, 51, queue=1, steer_to=1, area_size=16 * MiB, inside=lambda rx: nic.io_uring_pool_stats()
    )
    print(f"\n256 MiB: {st}\nsimulated NIC: {sim}\nio_uring page pool stats (kernel): {pools}")
    assert st.mode == "zcrx" and st.bytes == total and st.leases_out == 0
    # the device wrote (almost) all of it into the area: only what arrived before the queue
    # was bound came through the copy fallback
    # and the page pool handed out the area's buffers, many times more than the area has:
    # refill entries were consumed by the pool
    allocs = pools.get("alloc-fast", 0) + pools.get("alloc-slow", 0)
    assert allocs > 4 * (16 * MiB) // 4096
    if nic.simulated:
        assert sim["hds_payload_bytes"] >= total * 0.95
        assert allocs >= sim["hds_niovs"]


def test_64MiB_through_a_1MiB_area_on_the_bound_queue(nic: Nic) -> None:
    st, sim, _ = transfer(nic, 64 * MiB, 61, queue=1, steer_to=1, area_size=1 * MiB)
    print(f"\n64 MiB via a 1 MiB area, on the bound queue: {st}\nsim {sim}")
    assert st.bytes == 64 * MiB and (sim["hds_payload_bytes"] >= 60 * MiB or not nic.simulated)


# ---- the doctor ---------------------------------------------------------------------------------------
def test_doctor_reports_the_simulated_nic(nic: Nic) -> None:
    report = check_interface(nic.interface, queue=1)
    print(f"\n{report}")
    assert report.exists and report.rx_queues == nic.queues
    assert report.driver == "netdevsim" or not nic.simulated
    # it read the ring settings (the lane installs ethtool) and found header split on
    assert not any("could not read ring settings" in f for f in report.findings)
    assert not any("header/data split is" in f for f in report.findings), "header split is on"
    assert any(f"ethtool -N {nic.interface}" in c for c in report.fixes)  # how to steer flows


def test_doctor_says_zcrx_is_possible_on_the_simulated_nic(nic: Nic) -> None:
    """netdevsim is no driver the doctor knows by name: asked to try, it registers the queue
    for a moment and the kernel's answer decides."""
    assert not check_interface(nic.interface, queue=1).ok  # by name only
    report = check_interface(nic.interface, queue=1, attempt=True)
    print(f"\ndoctor --try on the simulated NIC:\n{report}")
    assert report.ok and any("registering queue 1 worked" in f for f in report.findings)


# ---- issue 15, item 3: the two bugs ------------------------------------------------------
def test_64MiB_through_a_1MiB_area_off_the_bound_queue(nic: Nic) -> None:
    """The flow lands on queue 0 while the receiver bound queue 1: every byte comes through
    the kernel's copy fallback, whose buffers return through the refill ring only when the
    bound queue's page pool allocates; hardware mode flushes the ring (ZCRX_CTRL_FLUSH_RQ)
    when the receiver runs dry, so the transfer keeps flowing (before: stalled at ~1 MiB)."""
    st, sim, _ = transfer(nic, 64 * MiB, 71, queue=1, steer_to=0, area_size=1 * MiB, stall=15)
    print(f"\n64 MiB via a 1 MiB area, off the bound queue: {st}\nsim {sim}")
    assert st.bytes == 64 * MiB and st.flushes > 0
