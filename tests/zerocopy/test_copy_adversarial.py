"""Copy-mode receivers against consumers that hold, hand on and give back leases in odd ways."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import trio
import trio.testing

from trio_uring import UringSocketStream, open_zc_receiver

from .._util import MiB, Runner, copy_bufs
from .._util import uring_pair as pair


async def send_then_eof(stream: UringSocketStream, chunks: Iterable[bytes]) -> None:
    async with stream:
        for c in chunks:
            await stream.send_all(c)
        await stream.send_eof()


async def wait_until(cond: Callable[[], bool], timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.001)


async def fill_and_hold(tx: UringSocketStream, rx: Any) -> tuple[bytes, list[Any]]:
    """Run ``rx`` (a small area) dry and take every lease: what was sent, and the leases,
    which pin every buffer."""
    bufs = copy_bufs(rx)
    await tx.send_all(b"w")
    (await rx.receive()).release()  # the receive op is armed from here on
    payload = os.urandom(bufs.entries * bufs.buf_size + 10_000)
    await tx.send_all(payload)
    await wait_until(lambda: rx._op is None)  # ran dry: every buffer is in a queued lease
    held = await rx.receive_batch(1000)
    assert len(held) >= bufs.entries
    return payload, held


def test_a_parked_receive_resumes_when_a_buffer_comes_back(run: Runner) -> None:
    """A task waiting in ``receive()`` while another task holds leases: after running dry the
    receiver must resume as soon as the kernel could take more, not only once half of the
    leases held at that moment came back. Otherwise a pipeline whose worker keeps a window of
    more than half the area's buffers (9 of the 16 1 MiB buffers of the default area) waits
    forever with free buffers: the worker for the next lease, the receiver for releases."""

    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream, open_zc_receiver(rx_stream, mode="copy", area_size=64 * 1024) as rx:
            _, held = await fill_and_hold(tx, rx)
            got: list[bytes] = []

            async def waiter() -> None:
                lease = await rx.receive()
                with lease:
                    got.append(lease.tobytes())

            async with trio.open_nursery() as n:
                n.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                await wait_until(lambda: rx._op is None and rx.statistics().rearms == 2)  # dry again
                for lease in held[:3]:  # three buffers free; more than half still held
                    lease.release()
                await wait_until(lambda: bool(got))
            for lease in held:
                lease.release()

    run(main)


def test_a_pipeline_whose_worker_keeps_a_window_of_leases_never_stalls(run: Runner) -> None:
    """The default area (16 buffers of 1 MiB) and the usual two-task pipeline: one task takes
    leases and sends them on a channel, a slower worker keeps the last 14 (fewer than the
    buffers, so the kernel always has somewhere to write) and releases the oldest. Every byte
    arrives in order, nothing stalls, every lease goes back."""

    async def main() -> None:
        tx, rx_stream = pair()
        payload = os.urandom(48 * MiB)
        h = hashlib.sha256()
        send, receive = trio.open_memory_channel[Any](10)
        async with rx_stream, trio.open_nursery() as n:
            n.start_soon(send_then_eof, tx, [payload[i : i + MiB] for i in range(0, len(payload), MiB)])
            async with open_zc_receiver(rx_stream, mode="copy") as rx:
                assert copy_bufs(rx).entries == 16

                async def take() -> None:
                    async with send:
                        async for lease in rx:
                            await send.send(lease)

                async def work() -> None:
                    window: list[Any] = []
                    async with receive:
                        async for lease in receive:
                            h.update(lease.data)
                            window.append(lease)
                            if len(window) > 14:
                                window.pop(0).release()
                            await trio.sleep(0.0005)
                    for lease in window:
                        lease.release()

                with trio.fail_after(8):
                    async with trio.open_nursery() as pipeline:
                        pipeline.start_soon(take)
                        pipeline.start_soon(work)
                st = rx.statistics()
        assert h.digest() == hashlib.sha256(payload).digest()
        assert st.bytes == len(payload) and st.leases_out == 0 and st.refills == st.leases

    run(main)


def test_joined_and_queued_leases_go_back_to_the_stream_in_order(run: Runner) -> None:
    """The block ending (by a cancel here) with a lease held, and completions joined into one
    queued lease nobody was handed: the joined bytes go back in front of the stream, exactly
    once, and a second receiver on the same stream gets them first, then what follows."""

    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream:
            with trio.CancelScope() as cs:
                async with open_zc_receiver(rx_stream, mode="copy") as rx:
                    await tx.send_all(b"w")
                    held = await rx.receive()  # arms the receive op; held at the block's end
                    await tx.send_all(b"a" * 1000)
                    await wait_until(lambda: rx.statistics().completions == 2)
                    await tx.send_all(b"b" * 3000)
                    await wait_until(lambda: rx.statistics().completions == 3)
                    st = rx.statistics()
                    assert (st.leases, st.bytes) == (2, 4001)  # the two joined in one queued lease
                    cs.cancel()
                    await trio.sleep_forever()
            assert held.released and rx.statistics().leases_out == 0
            await tx.send_all(b"c" * 10)
            await tx.send_eof()
            got = bytearray()
            async with open_zc_receiver(rx_stream, mode="copy") as rx2:
                with trio.fail_after(5):
                    async for lease in rx2:
                        with lease:
                            got += lease.data
            assert got == b"a" * 1000 + b"b" * 3000 + b"c" * 10

    run(main)


def test_leases_released_in_a_worker_thread_go_back_through_the_run(run: Runner) -> None:
    """Leases handed to another thread and released there, while the only consumer waits
    for more: the run is woken and gives the buffers back in its own thread (the buffer
    counts and the ring are not the worker's to touch), so the waiting ``receive()`` gets the
    data the kernel could then write, and every lease is counted back once."""

    async def main() -> None:
        tx, rx_stream = pair()
        async with tx, rx_stream, open_zc_receiver(rx_stream, mode="copy", area_size=64 * 1024) as rx:
            tail, held = await fill_and_hold(tx, rx)
            got = bytearray(b"".join(lease.data for lease in held))

            def release_all() -> None:
                time.sleep(0.2)  # the run is asleep in the kernel by now
                for lease in held:
                    lease.release()

            async with trio.open_nursery() as n:

                async def rest() -> None:
                    with trio.fail_after(5):
                        while len(got) < len(tail):
                            lease = await rx.receive()
                            with lease:
                                got.extend(lease.data)

                n.start_soon(rest)
                await trio.testing.wait_all_tasks_blocked()  # the consumer waits: the run sleeps
                worker = threading.Thread(target=release_all)  # nothing wakes the run when it ends
                worker.start()
            worker.join()
            assert got == tail
            await wait_until(lambda: rx.statistics().leases_out == 0)  # the last releases ran
            st = rx.statistics()
            assert st.leases_out == 0 and st.refills == st.leases

    run(main)
