"""The real zcrx kernel path, device-less (Linux >= 7.1): runs in the kernel lane VM.

``make test`` runs this file inside ``scripts/kernel-vm``; on an older kernel it is skipped.
Each test prints the receiver's statistics (``-s`` shows them).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
import trio

import trio_uring
from trio_uring import UringSocketStream, open_zc_receiver

from .._util import MiB, blocks, digest, tcp_pair, zcrx_ifq

#: Skipped where the kernel lacks device-less zcrx (see tests/conftest.py).
pytestmark = pytest.mark.kernel
BLOCK = 256 * 1024


async def send_all_then_eof(tx: UringSocketStream, total: int, seed: int) -> None:
    async with tx:
        for b in blocks(total, seed, BLOCK):
            await tx.send_all(b)
        await tx.send_eof()


def test_auto_picks_zcrx_nodev_after_hardware_fails() -> None:
    async def main() -> None:
        tx, rxs = tcp_pair()
        async with tx, rxs, open_zc_receiver(rxs, interface="lo") as rx:
            assert rx.mode == "zcrx-nodev"
            assert rx.statistics().fallback_reason.startswith("zcrx: lo cannot do zero-copy receive")
            await tx.send_all(b"hello zcrx")
            with await rx.receive() as lease:
                assert bytes(lease.data) == b"hello zcrx"

    trio_uring.run(main)


async def zc_transfer(total: int, seed: int, area_size: int) -> Any:
    """Send ``total`` bytes over loopback TCP, receive them through a device-less zcrx
    receiver hashing each lease in place; check the bytes, return the statistics."""
    tx, rxs = tcp_pair()
    h = hashlib.sha256()
    async with trio.open_nursery() as n:
        n.start_soon(send_all_then_eof, tx, total, seed)
        async with rxs, open_zc_receiver(rxs, mode="zcrx-nodev", area_size=area_size) as rx:
            async for lease in rx:
                with lease:
                    h.update(lease.data)
            stats = rx.statistics()
    assert h.digest() == digest(total, seed, BLOCK)
    return stats


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_64MiB_byte_exact_through_a_small_area(runner: Any) -> None:
    st = runner(zc_transfer, 64 * MiB, 1, 1 * MiB)
    print(f"\n64 MiB through a 1 MiB area ({runner.__module__}): {st}")
    assert st.bytes == 64 * MiB and st.refills == st.leases and st.leases_out == 0
    assert st.completions > 256 and st.flushes > 0  # the area was recycled many times over


def test_enospc_rearm_with_a_tiny_cq() -> None:
    # a 4-entry CQ: the multishot ends with -ENOSPC again and again
    st = trio_uring.run(zc_transfer, 16 * MiB, 2, 4 * MiB, entries=2)
    print(f"\ntiny CQ: {st}")
    assert st.rearms > 1


def test_enomem_while_leases_are_held_then_recovery() -> None:
    total, seed = 4 * MiB, 3
    out: list[Any] = []

    async def main() -> None:
        tx, rxs = tcp_pair()
        h = hashlib.sha256()
        async with trio.open_nursery() as n:
            n.start_soon(send_all_then_eof, tx, total, seed)
            async with rxs, open_zc_receiver(rxs, mode="zcrx-nodev", area_size=64 * 1024) as rx:
                held: list[Any] = []
                async for lease in rx:
                    h.update(lease.data)
                    held.append(lease)
                    if rx._starved:  # the kernel answered -ENOMEM: every niov is leased out
                        out.append(len(held) + len(rx._ready))
                        random.Random(4).shuffle(held)  # and give them back out of order
                        for x in held:
                            x.release()
                        held.clear()
                for x in held:
                    x.release()
                out.append(rx.statistics())
        assert h.digest() == digest(total, seed, BLOCK)

    trio_uring.run(main)
    st = out[-1]
    print(f"\nENOMEM with {out[0]} leases out (16-buffer area), then recovery: {st}")
    assert len(out) > 1, "the area never ran out"
    assert st.refills == st.leases and st.bytes == total


def test_scope_exit_returns_every_lease() -> None:
    out: list[Any] = []

    async def main() -> None:
        tx, rxs = tcp_pair()
        async with tx, rxs, trio.open_nursery() as n:
            n.start_soon(tx.send_all, b"x" * 200_000)
            with trio.CancelScope() as cs:
                async with open_zc_receiver(rxs, mode="zcrx-nodev", area_size=1 * MiB) as rx:
                    leases = [await rx.receive() for _ in range(5)]
                    out.append(rx)
                    cs.cancel()
                    await trio.sleep_forever()
            assert all(x.released for x in leases)
            n.cancel_scope.cancel()

    trio_uring.run(main)
    st = out[0].statistics()
    print(f"\nscope exit: {st}")
    assert st.leases_out == 0 and st.refills == st.leases


def test_two_receivers_share_one_ifq() -> None:
    async def main() -> None:
        (tx1, rx1), (tx2, rx2) = tcp_pair(), tcp_pair()
        async with (
            tx1,
            rx1,
            tx2,
            rx2,
            open_zc_receiver(rx1, mode="zcrx-nodev") as a,
            open_zc_receiver(rx2, mode="zcrx-nodev") as b,
        ):
            assert zcrx_ifq(a) is zcrx_ifq(b) and zcrx_ifq(a).users == 2
            await tx1.send_all(b"one")
            await tx2.send_all(b"two")
            with await a.receive() as la, await b.receive() as lb:
                assert (bytes(la.data), bytes(lb.data)) == (b"one", b"two")

    trio_uring.run(main)


def test_bad_refill_entries_are_refused_before_the_kernel() -> None:
    async def main() -> None:
        tx, rxs = tcp_pair()
        async with tx, rxs, open_zc_receiver(rxs, mode="zcrx-nodev", area_size=1 * MiB) as rx:
            ifq = zcrx_ifq(rx)
            for off, length in [(1 << 48, 100), (0, 0), (1 * MiB, 1), (1 * MiB - 10, 100)]:
                with pytest.raises(ValueError, match="not a buffer of this zcrx area"):
                    ifq.give_back(off, length)
            await tx.send_all(b"still fine")
            with await rx.receive() as lease:
                assert bytes(lease.data) == b"still fine"

    trio_uring.run(main)


def test_socket_closed_before_its_zero_copy_receive_was_submitted() -> None:
    """The CQE32 receive op is withdrawn (its SQE becomes a NOP) and completes at once: the
    receiver ends with ClosedResourceError without waiting for the kernel."""

    async def main() -> None:
        tx, rxs = tcp_pair()
        async with tx:
            t0 = trio.current_time()
            async with open_zc_receiver(rxs, mode="zcrx-nodev", area_size=1 * MiB) as rx:
                rx._arm()  # queued, not yet submitted
                await rxs.aclose()
                assert rx._op is None
                with pytest.raises(trio.ClosedResourceError):
                    await rx.receive()
            assert trio.current_time() - t0 < 2

    trio_uring.run(main)
