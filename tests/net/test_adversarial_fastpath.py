"""Adversarial checks of the flat hot paths of ``UringSocketStream.receive_some`` / ``send_all``
(commit df95230): each one does what the general path promises."""

from __future__ import annotations

import contextlib
import random
import socket as stdsocket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
import trio_uring._net._rxbuf as rxbuf
import trio_uring._net._socket as sockmod
import trio_uring._net._stream as mod
from trio_uring import UringSocketStream
from trio_uring._core import _traps
from trio_uring.socket import configure_receive_buffers, from_stdlib_socket

from .._util import in_child_task, stream_and_peer, warm, warm_stream_and_peer


def _tcp_stream_and_peer() -> tuple[UringSocketStream, stdsocket.socket]:
    with stdsocket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        c = stdsocket.create_connection(lsock.getsockname())
        s, _ = lsock.accept()
    s.setblocking(False)
    return UringSocketStream(from_stdlib_socket(c)), s


async def _arm(stream: UringSocketStream, peer: stdsocket.socket) -> None:
    """Make the stream's receiver (a receive that waits) so later bytes queue as chunks."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(b"x")
    assert stream.socket._rx is not None


async def _until_chunks(stream: UringSocketStream) -> None:
    rx = stream.socket._rx
    assert rx is not None
    with trio.fail_after(5):
        while not rx._chunks:
            await trio.sleep(0.001)


def _carry(stream: UringSocketStream, peer: stdsocket.socket, data: bytes) -> None:
    """A run that leaves ``data`` queued in the stream's receiver when it ends (kept for the
    next run in the socket's own memory)."""

    async def first() -> None:
        await warm(stream, peer)
        await _arm(stream, peer)
        peer.send(data)
        await _until_chunks(stream)

    in_child_task(first)


async def _drain(stream: UringSocketStream, n: int) -> bytes:
    got = bytearray()
    with trio.fail_after(5):
        while len(got) < n:
            data = await stream.receive_some()
            assert data
            got += data
    return bytes(got)


# ---- ordering ---------------------------------------------------------------------------------


def test_peek_then_receive_keeps_order() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            peer.send(b"abcdef")
            with trio.fail_after(5):
                assert await stream.socket.recv(3, stdsocket.MSG_PEEK) == b"abc"
            assert await _drain(stream, 6) == b"abcdef"
            peer.send(b"gh")
            assert await _drain(stream, 2) == b"gh"

    in_child_task(body)


def test_waitall_given_back_bytes_come_before_new_ones() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            peer.send(b"AB")
            with trio.move_on_after(0.05):
                await stream.socket.recv(10, stdsocket.MSG_WAITALL)  # cancelled: gives back "AB"
            peer.send(b"CD")
            assert await _drain(stream, 4) == b"ABCD"

    in_child_task(body)


def test_multishot_chunks_then_plain_bytes_keep_order() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            await _arm(stream, peer)
            peer.send(b"12")
            await _until_chunks(stream)
            peer.send(b"34")
            await trio.sleep(0.01)
            got = bytearray()
            with trio.fail_after(5):
                while len(got) < 4:
                    got += await stream.receive_some(1)
            assert bytes(got) == b"1234"

    in_child_task(body)


@pytest.mark.parametrize("later", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_carried_bytes_come_first_in_a_later_run(later: Any) -> None:
    stream, peer = stream_and_peer()
    with stream.socket, peer:
        _carry(stream, peer, b"carried")
        rx = stream.socket._rx
        assert rx is not None and rx.detached and bytes(rx._spill) == b"carried"

        async def second() -> None:
            # a send first: the socket's cached driver becomes this run's
            await stream.send_all(b"s")
            assert peer.recv(10) == b"s"
            peer.send(b"new")
            assert await _drain(stream, 10) == b"carriednew"

        in_child_task(second, later)


def test_peek_in_a_run_without_io_uring_sees_carried_bytes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pre-existing (general path, not df95230): in a run where io_uring is unavailable,
    ``recv(MSG_PEEK)`` peeked the kernel socket past the bytes an earlier run's receiver
    kept, which the next ``receive_some`` then returned first."""
    stream, peer = stream_and_peer()
    with stream.socket, peer:
        _carry(stream, peer, b"carried")
        monkeypatch.setattr(sockmod, "driver_or_none", lambda: None)
        peer.send(b"NEW")

        async def second() -> None:
            with trio.fail_after(5):
                assert await stream.socket.recv(7, stdsocket.MSG_PEEK) == b"carried"
                assert await _drain(stream, 10) == b"carriedNEW"

        in_child_task(second, trio.run)


def test_zc_receiver_given_back_bytes_come_first() -> None:
    async def body() -> None:
        stream, peer = _tcp_stream_and_peer()
        with stream.socket, peer:
            await warm(stream, peer)
            peer.send(b"first")
            async with trio_uring.open_zc_receiver(stream, mode="copy") as zrx:
                with trio.fail_after(5):
                    lease = await zrx.receive()
                with lease:
                    assert bytes(lease.data) == b"first"
                peer.send(b"second")
                with trio.fail_after(5):
                    while not zrx._ready:  # taken from the socket, not handed out
                        await trio.sleep(0.005)
            peer.send(b"-third")
            assert await _drain(stream, 12) == b"second-third"

    in_child_task(body)


def test_bulk_then_small_bytes_keep_order() -> None:
    async def body() -> None:
        stream, peer = stream_and_peer()
        peer.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 1 << 20)
        with stream.socket, peer:
            await warm(stream, peer)
            big = bytes(range(256)) * 256  # 64 KiB
            sent = 0
            total = bytearray()
            with trio.fail_after(10):
                for i in range(40):
                    msg = big if i % 3 == 0 else bytes([i]) * 100
                    view = memoryview(msg)
                    while view:
                        try:
                            n = peer.send(view)
                        except BlockingIOError:
                            total += await stream.receive_some(1000 + i)
                            continue
                        view = view[n:]
                        sent += n
                    if i % 2:
                        total += await stream.receive_some(3000)
                while len(total) < sent:
                    total += await stream.receive_some()
            expect = b"".join(big if i % 3 == 0 else bytes([i]) * 100 for i in range(40))
            assert bytes(total) == expect

    in_child_task(body)


# ---- conflicts ------------------------------------------------------------------------------------


def _hook_checkpoint(monkeypatch: pytest.MonkeyPatch, hook: Callable[[], Awaitable[None]]) -> list[int]:
    """Run ``hook`` (shielded) inside the flat paths' checkpoint, while they hold the conflict."""
    real = _traps.cancel_shielded_checkpoint
    calls = [0]

    async def hooked() -> None:
        calls[0] += 1
        if calls[0] == 1:
            with trio.CancelScope(shield=True):
                await hook()
        await real()

    monkeypatch.setattr(mod, "cancel_shielded_checkpoint", hooked)
    return calls


def test_zc_receiver_refused_during_flat_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[Any] = []
    stream, peer = _tcp_stream_and_peer()

    async def other() -> None:
        try:
            async with trio_uring.open_zc_receiver(stream, mode="copy"):
                outcomes.append("zc-open")
        except trio.BusyResourceError:
            outcomes.append("zc-busy")
        try:
            await stream.socket.recv(10, stdsocket.MSG_PEEK)
        except trio.BusyResourceError:
            outcomes.append("peek-busy")

    async def hook() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)

    async def body() -> None:
        with stream.socket, peer:
            await warm(stream, peer)
            calls = _hook_checkpoint(monkeypatch, hook)
            peer.send(b"q")
            with trio.fail_after(5):
                outcomes.append(await stream.receive_some())
            assert calls[0] == 1
            assert outcomes == ["zc-busy", "peek-busy", b"q"]

    in_child_task(body)


def test_send_side_refused_during_flat_send_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[str] = []
    stream, peer = stream_and_peer()

    async def other() -> None:
        calls: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
            ("send_all", lambda: stream.send_all(b"2")),
            ("send_eof", stream.send_eof),
            ("wait", stream.wait_send_all_might_not_block),
        )
        for name, call in calls:
            try:
                await call()
            except trio.BusyResourceError:
                outcomes.append(f"{name}-busy")

    async def hook() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)

    async def body() -> None:
        with stream.socket, peer:
            await warm(stream, peer)
            calls = _hook_checkpoint(monkeypatch, hook)
            with trio.fail_after(5):
                await stream.send_all(b"1")
            assert calls[0] == 1
            assert outcomes == ["send_all-busy", "send_eof-busy", "wait-busy"]
            assert peer.recv(10) == b"1"
            await stream.send_all(b"3")  # released: the stream sends on, not shut down
            assert peer.recv(10) == b"3"

    in_child_task(body)


def test_send_from_another_threads_run_goes_whole() -> None:
    """A send from another thread's live run (allowed: see test_adversarial_13's per-run send
    path) waits for room with that run's readiness and writes every byte. It used to write
    what fit, then be refused (BusyResourceError) on the owning run's ring: half a message."""

    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            payload = bytes(range(256)) * (8 << 12)  # 8 MiB: far more than the socket holds
            errors: list[BaseException] = []

            def other() -> None:
                async def use() -> None:
                    with trio.fail_after(10):
                        await stream.send_all(payload)

                try:
                    trio_uring.run(use)
                except BaseException as exc:
                    errors.append(exc)

            got = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, other)
                with trio.fail_after(10):
                    while len(got) < len(payload):
                        try:
                            got += peer.recv(1 << 20)
                        except BlockingIOError:
                            await trio.sleep(0.001)
            assert not errors, errors
            assert got == payload
            peer.send(b"after")  # the owning run's stream works on
            assert await stream.receive_some() == b"after"

    in_child_task(body)


@pytest.mark.parametrize("warm_first", [True, False], ids=["flat", "general"])
def test_large_plain_read_is_not_lost_when_the_receiver_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch, warm_first: bool
) -> None:
    """A plain recv of ``BULK_CHUNK`` bytes or more makes the socket's receiver (bulk mode)
    after the bytes left the kernel; the run's buffer ring failing then (mmap, the kernel's
    refusal) must not take those bytes with it."""

    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("could not map the buffers (injected)")

    async def body() -> None:
        stream, peer = stream_and_peer()
        with stream.socket, peer:
            if warm_first:
                await warm(stream, peer)  # the flat path reads next; else the general one
            monkeypatch.setattr(rxbuf, "BufferPool", no_pool)
            big = bytes(range(256)) * 80  # 20 KiB >= BULK_CHUNK
            peer.send(big)
            got = bytearray()
            with trio.fail_after(5):
                while len(got) < len(big):
                    got += await stream.receive_some()
            assert bytes(got) == big
            assert stream.socket._rx is None  # no receiver: the next wait will say why
            peer.send(b"after")
            with trio.fail_after(5):
                assert await stream.receive_some() == b"after"

    in_child_task(body)


def test_send_during_send_eof_and_send_after_eof() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            await stream.send_eof()
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"late")
            assert peer.recv(10) == b""

    in_child_task(body)


# ---- cancellation, KI ---------------------------------------------------------------------------


def test_ki_pending_in_main_task_is_delivered_not_data() -> None:
    async def main() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            peer.send(b"keep")
            task = trio.lowlevel.current_task()
            runner = task._runner
            runner.ki_pending = True
            with pytest.raises(KeyboardInterrupt):
                await stream.receive_some()
            runner.ki_pending = True
            with pytest.raises(KeyboardInterrupt):
                await stream.send_all(b"never")
            assert await stream.receive_some() == b"keep"
            with pytest.raises(BlockingIOError):
                peer.recv(10)

    trio_uring.run(main)


def test_cancel_while_in_checkpoint_keeps_bytes() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            peer.send(b"data")
            got: list[bytes] = []
            async with trio.open_nursery() as nursery:

                async def rcv() -> None:
                    got.append(await stream.receive_some())
                    await trio.sleep_forever()

                nursery.start_soon(rcv)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            assert got == [b"data"]

    in_child_task(body)


# ---- runs, threads -----------------------------------------------------------------------------


def test_plain_trio_run_receive_and_send() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            for i in range(20):
                peer.send(b"m%d" % i)
                with trio.fail_after(5):
                    assert await stream.receive_some() == b"m%d" % i
                await stream.send_all(b"r%d" % i)
                assert peer.recv(10) == b"r%d" % i

    in_child_task(body, trio.run)


def test_other_threads_run_is_refused_while_ours_lives() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            peer.send(b"ours")
            errors: list[BaseException] = []

            def other() -> None:
                async def use() -> None:
                    try:
                        await stream.receive_some()
                    except BaseException as exc:
                        errors.append(exc)

                trio_uring.run(use)

            await trio.to_thread.run_sync(other)
            # the receive is refused; a send that fits is not (the general path never refused it)
            assert [type(e) for e in errors] == [trio.BusyResourceError], errors
            assert await stream.receive_some() == b"ours"

    in_child_task(body)


def test_stream_moves_to_a_thread_run_after_ours() -> None:
    stream, peer = stream_and_peer()
    with stream.socket, peer:

        async def first() -> None:
            await warm(stream, peer)

        in_child_task(first)
        peer.send(b"t")
        out: list[Any] = []

        def other() -> None:
            async def use() -> None:
                out.append(await stream.receive_some())
                await stream.send_all(b"u")

            trio_uring.run(use)

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert out == [b"t"]
        assert peer.recv(10) == b"u"


# ---- closing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "detach", "aclose"])
def test_close_by_another_task_during_checkpoint(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    stream, peer = stream_and_peer()
    fds: list[int] = []

    async def hook() -> None:
        if how == "close":
            stream.socket.close()
        elif how == "detach":
            fds.append(stream.socket.detach())
        else:
            await stream.aclose()

    async def body() -> None:
        with peer:
            await warm(stream, peer)
            _hook_checkpoint(monkeypatch, hook)
            peer.send(b"last")
            with trio.fail_after(5):
                assert await stream.receive_some() == b"last"
                with pytest.raises(trio.ClosedResourceError):
                    await stream.receive_some()
                with pytest.raises(trio.ClosedResourceError):
                    await stream.send_all(b"x")
        for fd in fds:
            stdsocket.socket(fileno=fd).close()

    in_child_task(body)


def test_detach_then_stream_is_closed() -> None:
    async def body() -> None:
        stream, peer = stream_and_peer()
        with peer:
            await warm(stream, peer)
            fd = stream.socket.detach()
            try:
                with pytest.raises(trio.ClosedResourceError):
                    await stream.receive_some()
                with pytest.raises(trio.ClosedResourceError):
                    await stream.send_all(b"x")
            finally:
                stdsocket.socket(fileno=fd).close()

    in_child_task(body)


def test_statistics_count_flat_reads() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            before = trio_uring.statistics()
            peer.send(b"12345")
            assert await stream.receive_some() == b"12345"
            await _arm(stream, peer)
            peer.send(b"678")
            await _until_chunks(stream)
            assert await stream.receive_some() == b"678"
            after = trio_uring.statistics()
            assert after.bytes_plain_recv - before.bytes_plain_recv == 5
            assert after.bytes_multishot - before.bytes_multishot == 4  # "x" and "678"

    in_child_task(body)


def test_partial_sends_of_big_bytes_arrive_whole() -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            data = bytes(range(256)) * 8192  # 2 MiB
            expect = data + b"tail--end"
            got = bytearray()

            async def reader() -> None:
                with trio.fail_after(10):
                    while len(got) < len(expect):
                        try:
                            got.extend(peer.recv(1 << 16))
                        except BlockingIOError:
                            await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                with trio.fail_after(10):
                    await stream.send_all(data)
                    await stream.send_all(bytearray(b"tail"))
                    await stream.send_all(memoryview(b"--end"))
            assert bytes(got) == expect

    in_child_task(body)


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
@pytest.mark.parametrize("seed", range(12))
def test_random_interleaving_keeps_every_byte_in_order(seed: int, runner: Any) -> None:
    """Plain recvs, multishot chunks, peeks, WAITALL reads cancelled and given back, bulk
    sizes, spills under a tiny pool: the bytes the stream hands out are the bytes sent."""
    rnd = random.Random(seed)

    async def body() -> None:
        configure_receive_buffers(entries=8, buf_size=1024)
        stream, peer = stream_and_peer()
        peer.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 1 << 20)
        sent = bytearray()
        got = bytearray()

        def send(n: int) -> None:
            data = bytes((len(sent) + i) % 251 for i in range(n))
            try:
                k = peer.send(data)
            except BlockingIOError:
                k = 0
            sent.extend(data[:k])

        async def waiter() -> None:
            got.extend(await stream.receive_some(rnd.choice([1, 7, 100, 65536])))

        with stream.socket, peer, trio.fail_after(20):
            for _ in range(150):
                op = rnd.randrange(8)
                if op == 0:
                    send(rnd.choice([1, 5, 300, 2000, 20000, 70000]))
                elif op == 1 and len(got) < len(sent):
                    got.extend(await stream.receive_some(rnd.choice([1, 3, 64, 1000, 65536])))
                elif op == 2 and len(got) < len(sent):
                    n = rnd.choice([1, 10, 500])
                    peek = await stream.socket.recv(n, stdsocket.MSG_PEEK)
                    assert peek == bytes(sent[len(got) : len(got) + len(peek)])
                elif op == 3:
                    with trio.move_on_after(0.002):
                        await stream.socket.recv(len(sent) - len(got) + 50, stdsocket.MSG_WAITALL)
                        raise AssertionError("more than was sent came")
                elif op == 4 and len(got) == len(sent):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(waiter)
                        await trio.testing.wait_all_tasks_blocked()
                        send(rnd.choice([1, 50, 3000]))
                elif op == 5:
                    await trio.sleep(0.001)
                elif op == 6 and len(got) < len(sent):
                    buf = bytearray(rnd.choice([1, 40, 4000]))
                    n = await stream.socket.recv_into(buf)
                    got.extend(buf[:n])
                elif op == 7:  # cancelled before, or while waiting: takes nothing or hands it out
                    with trio.move_on_after(rnd.choice([0, 0.0005])):
                        got.extend(await stream.receive_some(rnd.choice([2, 500, 65536])))
                assert bytes(got) == bytes(sent[: len(got)])
            while len(got) < len(sent):
                got.extend(await stream.receive_some())
            assert bytes(got) == bytes(sent)

    in_child_task(body, runner)


def test_send_from_another_threads_run_ends_when_the_owner_closes() -> None:
    """The owning run closes the socket while another thread's run waits to send on it: that
    send ends with ClosedResourceError (the owner's close cannot wake it; its wait is bounded),
    and nothing reaches the new socket that reuses the fd number."""

    async def body() -> None:
        stream, peer = stream_and_peer()
        with peer:
            await warm(stream, peer)
            fd = stream.socket.fileno()
            outcome: list[str] = []

            def other() -> None:
                async def use() -> None:
                    try:
                        with trio.fail_after(5):
                            await stream.send_all(b"x" * (8 << 20))
                        outcome.append("sent")
                    except (trio.ClosedResourceError, trio.TooSlowError) as exc:
                        outcome.append(type(exc).__name__)

                trio_uring.run(use)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, other)
                await trio.sleep(0.2)  # the other run is waiting for room by now
                stream.socket.close()
                new_a, new_b = stdsocket.socketpair()
                with new_a, new_b:
                    assert fd in (new_a.fileno(), new_b.fileno())  # the number is reused
                    with trio.fail_after(5):
                        while not outcome:  # the old peer drains: the old socket has room
                            with contextlib.suppress(BlockingIOError):
                                peer.recv(1 << 20)
                            await trio.sleep(0.01)
                    for s in (new_a, new_b):
                        s.setblocking(False)
                        with pytest.raises(BlockingIOError):
                            s.recv(1 << 20)  # not a byte of the other run's send
            assert outcome == ["ClosedResourceError"]

    in_child_task(body)
