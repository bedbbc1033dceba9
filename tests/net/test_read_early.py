"""Reads that find their data already in the socket while the multishot recv is armed.

A stream that once had to wait keeps its multishot recv op armed. When the peer answers fast
(a ping-pong), the next bytes sit in the socket before our next ``io_uring_enter`` runs the
op: the read takes them with a plain ``recv`` instead of parking the task until that enter.
That is in order only while nothing the op received is still unreaped, which these tests
hold it to.
"""

from __future__ import annotations

import random
import socket as stdsocket
import threading
import time

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream
from trio_uring._core._counters import COUNTERS
from trio_uring._core._ring import SetupFlags
from trio_uring._net._rxbuf import StreamReceiver

from .._util import Runner, stream_and_peer


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``waits[0]``: how many reads parked to wait for the receive op."""
    count = [0]
    wait = StreamReceiver.wait

    async def counted_wait(self: StreamReceiver) -> None:
        count[0] += 1
        await wait(self)

    monkeypatch.setattr(StreamReceiver, "wait", counted_wait)
    return count


async def armed(stream: UringSocketStream, peer: stdsocket.socket) -> None:
    """Leave ``stream`` with its multishot recv armed and nothing queued: one read that waits."""
    async with trio.open_nursery() as nursery:
        got: list[bytes] = []

        async def read() -> None:
            got.append(await stream.receive_some())

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(b"w")
    assert got == [b"w"]
    rx = stream.socket._rx
    assert rx is not None and rx._op is not None and not rx._chunks


def test_bytes_already_in_the_socket_are_read_without_waiting_for_the_op(waits: list[int]) -> None:
    async def main() -> None:
        stream, peer = stream_and_peer()
        with stream.socket, peer:
            await armed(stream, peer)
            waits[0] = 0
            rx = stream.socket._rx
            assert rx is not None
            for i in range(20):
                peer.send(b"ping %d" % i)  # in the socket now: a Unix socket delivers at send
                plain = COUNTERS.bytes_plain_recv
                with trio.testing.assert_checkpoints():
                    assert await stream.receive_some() == b"ping %d" % i
                assert COUNTERS.bytes_plain_recv == plain + len(b"ping %d" % i)  # a plain recv
            assert waits == [0]  # no read parked to wait for the op
            assert rx._op is not None  # the op stays armed for idle times
            # the socket empty: the read waits for the op as before
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive_some)
                await trio.testing.wait_all_tasks_blocked()
                peer.send(b"late")
            assert waits == [1]

    trio_uring.run(main)


def test_a_completion_posted_but_not_reaped_keeps_the_read_waiting_for_it() -> None:
    """Submitting the op while bytes are in the socket receives them at once: its completion
    sits in the CQ until the run's next reap. A read meanwhile must not take the bytes sent
    after them from the socket first."""

    async def main() -> None:
        stream, peer = stream_and_peer()
        with stream.socket, peer:
            await armed(stream, peer)
            rx = stream.socket._rx
            assert rx is not None
            d = rx.driver
            # stop the op and wait for its end, so the next arm is a fresh submission
            rx._stop()
            with trio.fail_after(5):
                while rx._op is not None:
                    await trio.sleep(0)
            peer.send(b"first")
            rx.arm()
            d.ring.submit()  # issued inline: "first" leaves the socket, its CQE is unreaped
            assert d.ring.undelivered()
            peer.send(b"second")
            with trio.fail_after(5):
                got = await stream.receive_some()
                while len(got) < len(b"firstsecond"):
                    got += await stream.receive_some()
            assert got == b"firstsecond"

    trio_uring.run(main)


async def one_interleaving(seed: int) -> None:
    """A peer thread writes at its own pace while the reader reads with random sizes and
    yields: bytes reach the socket before, during and after the run's enters."""
    r = random.Random(seed)
    chunks = [bytes([i % 251]) * r.choice([1, 5, 64, 3000]) for i in range(200)]
    pauses = [r.choice([0, 0, 0, 0.0002]) for _ in chunks]
    stream, peer = stream_and_peer()
    got = bytearray()

    def write() -> None:
        peer.setblocking(True)
        for chunk, pause in zip(chunks, pauses):
            peer.sendall(chunk)
            if pause:
                time.sleep(pause)
        peer.shutdown(stdsocket.SHUT_WR)

    with stream.socket, peer:
        writer = threading.Thread(target=write)
        writer.start()
        try:
            with trio.fail_after(10):
                while data := await stream.receive_some(r.choice([1, 7, 100, 65536])):
                    got.extend(data)
                    for _ in range(r.choice([0, 0, 1, 3])):
                        await trio.sleep(0)
        finally:
            writer.join()
    assert got == b"".join(chunks), seed


def test_random_interleavings_keep_every_byte_in_order(run: Runner) -> None:
    """Bytes arriving while the op is armed, queued by it, read early, at EOF: one stream, in
    order, under both runners (plain ``trio.run`` never reads early: its completions are
    reaped by a task)."""

    async def main() -> None:
        for seed in range(30):
            await one_interleaving(seed)

    run(main)


def test_a_ring_without_deferred_task_work_never_reads_early(
    monkeypatch: pytest.MonkeyPatch, waits: list[int]
) -> None:
    """Without DEFER_TASKRUN (kernels before 6.1) the kernel runs the op's work at any return
    to user space, so bytes can leave the socket between any two lines of ours: every read
    waits for the op, as before."""
    from trio_uring._core import _io_manager  # noqa: PLC0415 - patched for this test only

    monkeypatch.setattr(
        _io_manager, "run_ring_flags", lambda: SetupFlags.COOP_TASKRUN | SetupFlags.TASKRUN_FLAG
    )

    async def main() -> None:
        stream, peer = stream_and_peer()
        with stream.socket, peer:
            await armed(stream, peer)
            rx = stream.socket._rx
            assert rx is not None and not rx.driver.ring.defer_taskrun
            before = waits[0]
            for i in range(5):
                peer.send(b"ping %d" % i)
                with trio.fail_after(5):
                    assert await stream.receive_some() == b"ping %d" % i
            assert waits[0] == before + 5

    trio_uring.run(main)
