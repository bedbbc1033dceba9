"""ZeroCopyReceiver in copy mode, end to end on the real kernel, under both integrations."""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import pickle
import random
import socket as stdsocket
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream, open_zc_receiver

from .._util import MiB, Runner, blocks, copy_bufs, digest
from .._util import uring_pair as pair


async def send_then_eof(stream: UringSocketStream, chunks: Any) -> None:
    async with stream:
        for c in chunks:
            await stream.send_all(c)
        await stream.send_eof()


async def transfer_through(total: int, mode: str) -> tuple[bytes, Any]:
    """``blocks(total)`` sent over a stream pair and taken through a receiver in ``mode`` with
    the README's ``async for`` loop: the SHA-256 of what arrived, and the receiver's statistics."""
    tx, rx_stream = pair()
    h = hashlib.sha256()
    async with trio.open_nursery() as n:
        n.start_soon(send_then_eof, tx, blocks(total))
        async with open_zc_receiver(rx_stream, mode=mode) as rx:
            assert rx.mode == mode
            async for lease in rx:
                with lease:
                    h.update(lease.data)
            st = rx.statistics()
    await rx_stream.aclose()
    return h.digest(), st


@pytest.mark.parametrize(
    ("runner", "total"),
    [(trio_uring.run, 256 * MiB), (trio.run, 64 * MiB)],
    ids=["trio_uring.run-256MiB", "trio.run-64MiB"],
)
def test_byte_exact_bulk_transfer(runner: Runner, total: int) -> None:
    stats: list[Any] = []

    async def main() -> bytes:
        data, st = await transfer_through(total, "copy")
        stats.append(st)
        return data

    assert runner(main) == digest(total)
    st = stats[0]
    assert st.bytes == total and st.leases_out == 0
    assert st.refills == st.leases > 0  # every lease went back exactly once


def test_slow_consumer_holding_many_leases_loses_nothing(run: Runner) -> None:
    """A 256 KiB area (4 buffers) and a consumer that hoards leases: the kernel runs out of
    buffers again and again, receiving resumes as they come back, every byte arrives."""

    async def main() -> None:
        tx, rx_stream = pair()
        total = 16 * MiB
        h = hashlib.sha256()
        async with trio.open_nursery() as n:
            n.start_soon(send_then_eof, tx, blocks(total, size=256 * 1024))
            async with open_zc_receiver(rx_stream, mode="copy", area_size=256 * 1024) as rx:
                held: list[Any] = []
                async for lease in rx:
                    h.update(lease.data)
                    held.append(lease)
                    if len(held) >= 3:
                        await trio.sleep(0.001)
                        for x in held:
                            x.release()
                        held.clear()
                st = rx.statistics()
        assert h.digest() == digest(total, size=256 * 1024)
        assert st.rearms > 1  # the receive had to be re-armed after running dry
        await rx_stream.aclose()

    run(main)


def test_out_of_order_release_and_use_after_release(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        payload = os.urandom(2 * MiB)
        async with trio.open_nursery() as n:
            n.start_soon(send_then_eof, tx, [payload])
            async with open_zc_receiver(rx_stream, mode="copy") as rx:
                leases = [lease async for lease in rx]
                got = b"".join(bytes(x.data) for x in leases)
                assert got == payload
                kept_view = leases[0].data
                random.Random(3).shuffle(leases)
                for x in leases:
                    x.release()
                    x.release()  # idempotent
                with pytest.raises(ValueError, match="released"):
                    leases[0].data  # noqa: B018
                with pytest.raises(ValueError):
                    bytes(kept_view)  # the view itself was released: never recycled bytes
                st = rx.statistics()
                assert st.refills == st.leases == len(leases)
        await rx_stream.aclose()

    run(main)


def test_exported_memory_is_not_recycled_until_the_export_is_gone(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream, open_zc_receiver(rx_stream, mode="copy", area_size=64 * 1024) as rx:
            await tx.send_all(b"A" * 1000)
            lease = await rx.receive()
            exported = pickle.PickleBuffer(lease.data)  # a buffer export, like numpy's
            sliced = lease.data[:10]
            before = rx.statistics().refills
            lease.release()
            assert lease.released
            assert rx.statistics().refills == before  # still exported: not given back
            hooks = trio_uring.lowlevel.current_driver().pre_enter
            assert rx._check_zombies in hooks  # looked at every pass while it is exported
            # more traffic through the only buffer must not touch the exported bytes
            await tx.send_all(b"B" * 1000)
            with trio.move_on_after(0.1):
                (await rx.receive()).release()
            assert bytes(exported.raw()) == b"A" * 1000 and bytes(sliced) == b"A" * 10
            del exported, sliced
            gc.collect()
            await trio.sleep(0.01)  # the next pass notices the exports are gone
            await tx.send_all(b"C" * 10)
            (await rx.receive()).release()
            assert rx.statistics().refills >= before + 1
            await trio.lowlevel.checkpoint()
            assert rx._check_zombies not in hooks  # and no longer once none is left

    run(main)


def test_idle_receivers_add_no_work_per_pass(run: Runner) -> None:
    async def main() -> None:
        d = trio_uring.lowlevel.current_driver()
        hooks = list(d.pre_enter)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(30):
                tx, rx_stream = pair()
                stack.push_async_callback(tx.aclose)
                stack.push_async_callback(rx_stream.aclose)
                await stack.enter_async_context(open_zc_receiver(rx_stream, mode="copy", area_size=64 * 1024))
            await trio.lowlevel.checkpoint()
            assert d.pre_enter == hooks  # nothing runs per pass for a receiver with nothing to do
            assert not d._soon

    run(main)


def test_scope_exit_by_exception_and_cancellation_returns_everything(run: Runner) -> None:
    async def main() -> None:
        for how in ("error", "cancel"):
            tx, rx_stream = pair()
            seen: list[Any] = []
            held: list[Any] = []
            with pytest.RaisesGroup(KeyError) if how == "error" else trio.CancelScope() as outer:
                async with tx, rx_stream, trio.open_nursery() as n:
                    n.start_soon(tx.send_all, os.urandom(4 * MiB))
                    async with open_zc_receiver(rx_stream, mode="copy") as rx:
                        seen.append(rx)
                        held += [await rx.receive() for _ in range(3)]
                        assert rx.statistics().leases_out >= 3
                        if how == "error":
                            raise KeyError("boom")
                        assert isinstance(outer, trio.CancelScope)
                        outer.cancel()
                        await trio.sleep_forever()
            rx = seen[0]
            st = rx.statistics()
            assert st.leases_out == 0 and st.refills == st.leases
            assert all(x.released for x in held)
            assert copy_bufs(rx).closed  # unregistered from the kernel

    run(main)


def test_many_receivers_at_once(run: Runner) -> None:
    async def main() -> None:
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            tx, rx_stream = pair()
            data = random.Random(i).randbytes(200_000 + i)
            async with trio.open_nursery() as n:
                n.start_soon(send_then_eof, tx, [data])
                async with open_zc_receiver(rx_stream, mode="copy", area_size=256 * 1024) as rx:
                    got = bytearray()
                    async for lease in rx:
                        with lease:
                            got += lease.data
            await rx_stream.aclose()
            results[i] = hashlib.sha256(got).digest()
            assert got == data

        async with trio.open_nursery() as n:
            for i in range(20):
                n.start_soon(one, i)
        assert len(results) == 20

    run(main)


def test_data_already_received_by_the_stream_comes_first(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        payload = os.urandom(500_000)
        async with trio.open_nursery() as n:
            n.start_soon(send_then_eof, tx, [payload])
            head = await rx_stream.receive_some(100)  # arms the stream's own receive
            await trio.testing.wait_all_tasks_blocked()
            rest = bytearray()
            async with open_zc_receiver(rx_stream) as rx:
                async for lease in rx:
                    with lease:
                        rest += lease.data
        assert head + bytes(rest) == payload
        await rx_stream.aclose()

    run(main)


def test_bad_arguments_are_rejected_clearly(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream:
            with pytest.raises(ValueError, match="mode must be one of"):
                async with open_zc_receiver(rx_stream, mode="fast"):
                    pass
            with pytest.raises(ValueError, match="area_size"):
                async with open_zc_receiver(rx_stream, area_size=0):
                    pass
            with pytest.raises(TypeError, match="socket"):
                async with open_zc_receiver(42):
                    pass
            with stdsocket.socket() as plain, pytest.raises(TypeError, match="from_stdlib_socket"):
                async with open_zc_receiver(plain):  # a stdlib socket: nothing to give data back to
                    pass
            udp = trio_uring.socket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
            with udp, pytest.raises(ValueError, match="TCP stream"):
                async with open_zc_receiver(udp):
                    pass
            closed = trio_uring.socket.socket()
            closed.close()
            with pytest.raises(trio.ClosedResourceError):
                async with open_zc_receiver(closed):
                    pass
            for queue in (-1, 2**32, "0", True):
                with pytest.raises(ValueError, match="queue must be"):
                    async with open_zc_receiver(rx_stream, queue=queue):  # type: ignore[arg-type]
                        pass
            async with open_zc_receiver(rx_stream, mode="copy") as rx:
                pass
            with pytest.raises(trio.ClosedResourceError):
                await rx.receive()

    run(main)


def test_receive_batch_drains_in_order_with_one_checkpoint(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        payload = os.urandom(3 * MiB)
        got = bytearray()
        batches = 0
        async with trio.open_nursery() as n:
            n.start_soon(send_then_eof, tx, [payload])
            async with open_zc_receiver(rx_stream, mode="copy") as rx:
                with pytest.raises(ValueError, match="max_leases"):
                    await rx.receive_batch(0)
                while batch := await rx.receive_batch(max_leases=4):
                    assert 1 <= len(batch) <= 4
                    batches += 1
                    for lease in batch:
                        with lease:
                            got += lease.data
                assert await rx.receive_batch() == []  # still the end of the stream
        assert got == payload and batches < rx.statistics().completions + 1
        await rx_stream.aclose()

    run(main)


def test_lease_view_is_made_on_first_use_and_unread_leases_go_back(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream, open_zc_receiver(rx_stream, mode="copy") as rx:
            await tx.send_all(b"x" * 100)
            lease = await rx.receive()
            assert lease.data is lease.data and bytes(lease.data) == b"x" * 100
            lease.release()
            await tx.send_all(b"y" * 100)
            unread = await rx.receive()
            unread.release()  # never looked at: given back all the same
            with pytest.raises(ValueError, match="released"):
                unread.data  # noqa: B018
            st = rx.statistics()
            assert st.refills == st.leases == 2 and st.leases_out == 0

    run(main)


def test_cancelled_receive_batch_keeps_the_ready_leases(run: Runner) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream, open_zc_receiver(rx_stream, mode="copy") as rx:
            await tx.send_all(b"z")
            (await rx.receive()).release()  # the receive op is armed now
            await tx.send_all(b"z" * 4999)
            with trio.fail_after(5):
                while not rx._ready:  # received, not yet handed out
                    await trio.sleep(0.001)
            with trio.CancelScope() as cs:
                cs.cancel()
                await rx.receive_batch()
            assert cs.cancelled_caught
            got = bytearray()
            with trio.fail_after(5):
                while len(got) < 4999:
                    for lease in await rx.receive_batch():
                        with lease:
                            got += lease.data
            assert got == b"z" * 4999

    run(main)


def test_copy_mode_without_incremental_buffers(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel without IOU_PBUF_RING_INC refuses the flag (EINVAL): whole 64 KiB buffers then."""
    from trio_uring.zerocopy import _sources  # noqa: PLC0415 - the module patched here

    real = _sources.copy_ring

    def no_incremental(ring: Any, area_size: int, buf_size: int, *, incremental: bool) -> Any:
        if incremental:
            raise OSError(errno.EINVAL, "IORING_REGISTER_PBUF_RING: Invalid argument")
        return real(ring, area_size, buf_size, incremental=incremental)

    monkeypatch.setattr(_sources, "copy_ring", no_incremental)

    async def main() -> None:
        tx, rx_stream = pair()
        total = 8 * MiB
        h = hashlib.sha256()
        async with trio.open_nursery() as n:
            n.start_soon(send_then_eof, tx, blocks(total))
            async with open_zc_receiver(rx_stream, mode="copy") as rx:
                bufs = copy_bufs(rx)
                assert not bufs.incremental and bufs.buf_size == 64 * 1024
                async for lease in rx:
                    with lease:
                        h.update(lease.data)
        await rx_stream.aclose()
        assert h.digest() == digest(total)

    run(main)


@pytest.mark.parametrize(
    ("area", "buf"), [(16 * MiB, MiB), (4 * MiB, 256 * 1024), (256 * 1024, 16 * 1024), (4096, 4096)]
)
def test_copy_buffers_are_sized_to_the_area(area: int, buf: int) -> None:
    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream, open_zc_receiver(rx_stream, mode="copy", area_size=area) as rx:
            bufs = copy_bufs(rx)
            assert bufs.incremental and bufs.buf_size == buf
            assert bufs.entries * buf >= area  # never less than asked for

    trio_uring.run(main)


def test_one_task_at_a_time_per_receiver(run: Runner) -> None:
    """A receiver has one consumer (like a stream's receive side): a second task gets
    BusyResourceError at once instead of sleeping forever, even past the end of stream."""

    async def main() -> None:
        tx, rx_stream = pair()
        async with rx_stream, open_zc_receiver(rx_stream, mode="copy") as rx:
            got: list[bytes] = []

            async def take_all() -> None:
                async for lease in rx:
                    with lease:
                        got.append(lease.tobytes())

            async with trio.open_nursery() as n:
                n.start_soon(take_all)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError):
                    await rx.receive()
                with pytest.raises(trio.BusyResourceError):
                    await rx.receive_batch()
                await tx.send_all(b"2")
                await tx.aclose()
            assert got == [b"2"]
            assert await rx.receive_batch() == []  # the end of stream, for whoever asks next

    run(main)


def test_async_for_takes_a_ready_lease_at_a_checkpoint_and_a_cancel_loses_none(run: Runner) -> None:
    """``async for``'s fast path (a lease is there): a checkpoint per lease, Busy while another
    task receives, and a cancel at that checkpoint leaves the lease for the next receive."""

    async def main() -> None:
        tx, rx_stream = pair()
        async with rx_stream, open_zc_receiver(rx_stream, mode="copy") as rx:
            await tx.send_all(b"zero")
            with await rx.receive() as lease:  # the receive op is armed from here on
                assert lease.tobytes() == b"zero"
            await tx.send_all(b"first")
            with trio.fail_after(5):
                while not rx._ready:
                    await trio.sleep(0.001)
            with trio.CancelScope() as cs:
                cs.cancel()
                await rx.__anext__()  # cancelled at its checkpoint: nothing taken
            assert cs.cancelled_caught and len(rx._ready) == 1
            rx._receiving.held = True  # as while another task is in receive()
            try:
                with pytest.raises(trio.BusyResourceError):
                    await rx.__anext__()
            finally:
                rx._receiving.held = False
            with trio.testing.assert_checkpoints():
                lease = await rx.__anext__()
            with lease:
                assert lease.tobytes() == b"first"
            await tx.aclose()
            with pytest.raises(StopAsyncIteration):
                await rx.__anext__()

    run(main)


def test_a_mode_is_one_source_class_and_its_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver needs nothing of a mode but its ReceiveSource: a new one, registered,
    receives byte-exact, and every buffer it lent comes back through it."""
    from trio_uring.zerocopy import _sources  # noqa: PLC0415 - the registry extended here

    given: list[Any] = []

    class Counted(_sources.CopySource):
        mode = "counted"

        def give_back(self, key: int, nbytes: int) -> None:
            given.append(key)
            super().give_back(key, nbytes)

    monkeypatch.setitem(_sources.SOURCES, "counted", Counted)

    async def main() -> None:
        total = 4 * MiB
        data, st = await transfer_through(total, "counted")
        assert data == digest(total)
        assert len(given) == st.leases == st.refills and st.leases_out == 0

    trio_uring.run(main)


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_completions_into_the_same_buffer_join_a_lease_nobody_was_handed(runner: Runner) -> None:
    """Copy mode: the kernel appending to a buffer right after the last queued lease makes one
    lease of both (fewer scheduler passes per MiB for ``async for``); a lease already handed
    out never grows, and every lease goes back once."""

    async def arrived(rx: Any, completions: int) -> None:
        with trio.fail_after(5):
            while rx.statistics().completions < completions:
                await trio.sleep(0.001)

    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, open_zc_receiver(rx_stream, mode="copy") as rx:
            await tx.send_all(b"w")
            with await rx.receive() as lease:  # arms the receive op
                assert bytes(lease.data) == b"w"
            await tx.send_all(b"a" * 1000)
            await arrived(rx, 2)
            await tx.send_all(b"b" * 1000)
            await arrived(rx, 3)
            await tx.send_all(b"x" * 500)  # a third completion grows the same queued lease
            await arrived(rx, 4)
            st = rx.statistics()
            assert (st.completions, st.leases, st.leases_out) == (4, 2, 1)
            joined = await rx.receive()
            assert bytes(joined.data) == b"a" * 1000 + b"b" * 1000 + b"x" * 500 and len(joined) == 2500
            await tx.send_all(b"c" * 10)
            await arrived(rx, 5)
            assert bytes(joined.data) == b"a" * 1000 + b"b" * 1000 + b"x" * 500  # handed out: not grown
            with await rx.receive() as later:
                assert bytes(later.data) == b"c" * 10
            joined.release()
            st = rx.statistics()
            assert (st.completions, st.leases, st.refills, st.leases_out) == (5, 3, 3, 0)
        await rx_stream.aclose()

    runner(main)
