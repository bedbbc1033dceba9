"""The op layer under both integrations: trio_uring.run and a plain trio.run.

Cancellation is checked at every point: before the kernel saw the op, in flight, racing
the completion, shielded; plus many concurrent ops, deadlines and closing fds.
"""

from __future__ import annotations

import errno
import gc
import os
import queue
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import lowlevel as ll

from .._util import Runner

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        yield a, b


def test_ops_roundtrip(run: Runner, pair: Pair) -> None:
    a, b = pair

    async def main() -> None:
        await ll.nop()
        assert await ll.send(b, b"ping") == 4
        buf = bytearray(16)
        assert await ll.recv_into(a, buf) == 4 and buf[:4] == b"ping"
        b.send(b"x")
        assert await ll.poll(a, select.POLLIN) & select.POLLIN
        await ll.sleep(0.001)

    run(main)


def test_cancel_before_the_kernel_saw_it_has_no_effect(run: Runner, pair: Pair) -> None:
    a, b = pair

    async def main() -> None:
        d = ll.current_driver()
        buf = bytearray(8)
        with trio.CancelScope() as cs:
            cs.cancel()
            # start() queues the SQE and parks; the pending cancel aborts it in the same
            # step, before any io_uring_enter: it becomes an ignored NOP.
            await d.start(d.ring.prep_recv, a.fileno(), buf, fd=a.fileno(), keep=buf)
        assert cs.cancelled_caught
        assert not [op for op in d.ring.inflight.values() if op.fd == a.fileno()]
        b.send(b"still here")
        await trio.sleep(0.01)
        assert a.recv(64) == b"still here"
        assert buf == bytearray(8)

    run(main)


def test_cancel_in_flight_then_data_is_not_lost(run: Runner, pair: Pair) -> None:
    a, b = pair

    async def main() -> None:
        buf = bytearray(32)
        with trio.move_on_after(0.05) as cs:
            await ll.recv_into(a, buf)
        assert cs.cancelled_caught
        assert not [op for op in ll.current_driver().ring.inflight.values() if op.fd == a.fileno()]
        b.send(b"after")
        assert await ll.recv_into(a, buf) == 5 and buf[:5] == b"after"

    run(main)


def test_cancel_racing_completion_never_loses_bytes(run: Runner, pair: Pair) -> None:
    a, b = pair
    outcomes = {"cancelled": 0, "delivered": 0}

    async def main() -> None:
        received = bytearray()
        sent = bytearray()
        for i in range(300):
            msg = i.to_bytes(4, "big")
            buf = bytearray(64)
            async with trio.open_nursery() as n:
                cs = trio.CancelScope()

                async def receiver(cs: trio.CancelScope = cs, buf: bytearray = buf) -> None:
                    with cs:
                        got = await ll.recv_into(a, buf)
                        received.extend(buf[:got])
                        outcomes["delivered"] += 1
                    if cs.cancelled_caught:
                        outcomes["cancelled"] += 1

                n.start_soon(receiver)
                await trio.testing.wait_all_tasks_blocked()
                b.send(msg)  # data and cancel race into the same scheduler pass
                sent.extend(msg)
                cs.cancel()
        # whatever a cancelled receive left behind is still in the socket
        while True:
            try:
                received.extend(a.recv(4096))
            except BlockingIOError:
                break
        assert received == sent

    run(main)
    assert outcomes["cancelled"] + outcomes["delivered"] == 300


def test_issue_then_collect_after_a_checkpoint(run: Runner, pair: Pair) -> None:
    a, b = pair

    async def main() -> None:
        d = ll.current_driver()
        op = d.issue(d.ring.prep_nop)
        assert op.res is None  # queued, not submitted: nothing can have completed
        for _ in range(20):  # the run enters the ring between passes
            if op.res is not None:
                break
            await trio.lowlevel.checkpoint()
        assert op.res == 0
        assert await d.collect(op) == 0
        # an op that cannot complete yet: collect() waits for its CQE
        buf = bytearray(8)
        op = d.issue(d.ring.prep_recv, a.fileno(), buf, fd=a.fileno(), keep=buf)

        def send_later() -> None:
            time.sleep(0.02)
            b.send(b"late")

        async with trio.open_nursery() as n:
            n.start_soon(trio.to_thread.run_sync, send_later)
            assert await d.collect(op) == 4
        assert buf[:4] == b"late"
        # errors come back as negative errnos, as the kernel gave them
        op = d.issue(d.ring.prep_send, a.fileno(), b"", 0, fd=a.fileno())
        b.close()
        res = await d.collect(op)
        assert res in (0, -errno.EPIPE, -errno.ECONNRESET)

    run(main)


async def _recv_in_flight(sock: socket.socket) -> tuple[Any, Any, bytearray]:
    """Issue a recv on ``sock`` and pass a checkpoint: the kernel holds it, waiting for data."""
    d = ll.current_driver()
    buf = bytearray(8)
    op = d.issue(d.ring.prep_recv, sock.fileno(), buf, fd=sock.fileno(), keep=buf)
    await trio.lowlevel.checkpoint()
    return d, op, buf


def test_collect_cancelled_in_flight_delivers_or_cancels_never_loses(run: Runner, pair: Pair) -> None:
    a, b = pair

    async def main() -> None:
        d, op, buf = await _recv_in_flight(a)
        with trio.move_on_after(0.02) as cs:
            await d.collect(op)
        assert cs.cancelled_caught and op.res == -errno.ECANCELED
        assert op.ud not in d.ring.inflight
        b.send(b"next")
        assert await ll.recv_into(a, buf) == 4 and buf[:4] == b"next"

    run(main)


def test_collect_after_the_fd_was_closed_raises_closed_resource_error(run: Runner, pair: Pair) -> None:
    a, _b = pair

    async def main() -> None:
        d, op, _ = await _recv_in_flight(a)
        d.close_fd_ops(a.fileno())
        with pytest.raises(trio.ClosedResourceError):
            await d.collect(op)

    run(main)


def test_shielded_op_completes(run: Runner, pair: Pair) -> None:
    a, b = pair

    async def main() -> None:
        buf = bytearray(8)
        with trio.CancelScope() as outer:
            outer.cancel()
            with trio.CancelScope(shield=True):
                b.send(b"ok")
                assert await ll.recv_into(a, buf) == 2
        assert buf[:2] == b"ok"

    run(main)


def test_accept_cancel_race_never_leaks_a_connection(run: Runner, no_fd_leak: None) -> None:
    async def main() -> None:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(128)
            lsock.setblocking(False)
            clients = []
            accepted = []
            for _ in range(100):
                c = socket.socket()
                c.setblocking(False)
                with trio.CancelScope() as cs:
                    async with trio.open_nursery() as n:

                        async def acceptor() -> None:
                            fd, _addr = await ll.accept(lsock)
                            accepted.append(fd)

                        n.start_soon(acceptor)
                        await trio.testing.wait_all_tasks_blocked()
                        c.connect_ex(lsock.getsockname())
                        cs.cancel()
                clients.append(c)
            # every connection was either accepted or is still waiting in the backlog
            while True:
                try:
                    s, _ = lsock.accept()
                except BlockingIOError:
                    break
                accepted.append(s.detach())
            assert len(accepted) == len(clients)
            for fd in accepted:
                os.close(fd)
            for c in clients:
                c.close()

    run(main)


def test_many_concurrent_ops(run: Runner) -> None:
    pairs = [socket.socketpair() for _ in range(200)]

    async def main() -> None:
        results: list[bytes] = []

        async def one(a: socket.socket, b: socket.socket, i: int) -> None:
            buf = bytearray(16)
            n = await ll.recv_into(a, buf)
            results.append(bytes(buf[:n]))
            await ll.nop()

        async with trio.open_nursery() as nursery:
            for i, (a, b) in enumerate(pairs):
                nursery.start_soon(one, a, b, i)
            await trio.testing.wait_all_tasks_blocked()
            for i, (_a, b) in enumerate(pairs):
                b.send(str(i).encode())
        assert sorted(results) == sorted(str(i).encode() for i in range(200))
        assert not ll.current_driver().ring.inflight or all(
            op.fd not in {a.fileno() for a, _ in pairs} for op in ll.current_driver().ring.inflight.values()
        )

    try:
        run(main)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_deadline_expiry(run: Runner, pair: Pair) -> None:
    a, _b = pair

    async def main() -> None:
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.02):
                await ll.recv_into(a, bytearray(4))

    run(main)


def test_closing_an_fd_wakes_its_op_with_closed_resource_error(run: Runner) -> None:
    a, b = socket.socketpair()

    async def main() -> None:
        async with trio.open_nursery() as n:

            async def reader() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await ll.recv_into(a, bytearray(8))

            n.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await ll.close(a.detach())
        b.close()

    run(main)


def test_kernel_errors_name_the_op(run: Runner) -> None:
    async def main() -> None:
        r, w = os.pipe()
        try:
            with pytest.raises(OSError, match="recv") as info:
                await ll.recv_into(r, bytearray(4))
            assert info.value.errno == errno.ENOTSOCK
        finally:
            os.close(r)
            os.close(w)
        with pytest.raises(ValueError, match="closed socket"):
            await ll.recv_into(-1, bytearray(4))
        with pytest.raises(TypeError, match="writable"):
            await ll.recv_into(0, b"ro")

    run(main)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                yield from _chain(sub)
        exc = exc.__cause__


def test_soon_runs_once_before_the_next_enter(run: Runner) -> None:
    async def main() -> None:
        d = ll.current_driver()
        calls: list[str] = []
        enters = d.ring.enter_calls

        def second() -> None:
            calls.append("second")

        def first() -> None:
            calls.append("first")
            d.soon(second)  # queued by a soon callback: still runs before this enter
            d.issue(d.ring.prep_nop)  # and an SQE it queues goes out with this enter

        d.soon(first)
        assert calls == []
        await trio.lowlevel.checkpoint()
        assert calls == ["first", "second"]
        assert d.ring.enter_calls > enters
        assert d.ring.sq_pending == 0
        for _ in range(5):  # once: not again on later passes
            await trio.lowlevel.checkpoint()
        assert calls == ["first", "second"]

    run(main)


def test_a_raising_soon_callback_does_not_stop_the_others() -> None:
    with ll.Ring(8) as ring:
        d = ll.OpDriver(ring)
        ran: list[int] = []

        def boom() -> None:
            raise ZeroDivisionError("soon failed")

        d.soon(boom)
        d.soon(lambda: ran.append(1))
        with pytest.raises(ZeroDivisionError):
            d.before_enter()
        assert ran == [1]
        d.before_enter()  # the queue was emptied: nothing runs twice
        assert ran == [1]


# After an internal error trio abandons the run's coroutines; their finalizers complain.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_raising_completion_callback_fails_the_run_loudly(run: Runner) -> None:
    async def main() -> None:
        d = ll.current_driver()

        def boom(res: int, flags: int) -> None:
            raise ZeroDivisionError("callback failed")

        d.start_multishot(d.ring.prep_nop, on_cqe=boom)
        await trio.sleep_forever()

    with pytest.raises(trio.TrioInternalError) as info:
        run(main)
    assert any(isinstance(e, ZeroDivisionError) for e in _chain(info.value))
    del info
    gc.collect()  # collect the abandoned run here, under this test's warning filter


def test_ops_inside_a_guest_run_on_stock_trio() -> None:
    todo: queue.Queue[Callable[[], Any]] = queue.Queue()
    result: list[Any] = []

    async def main() -> bytes:
        assert trio_uring.backend() == "epoll"
        a, b = socket.socketpair()
        with a, b:
            buf = bytearray(8)
            async with trio.open_nursery() as n:

                async def later() -> None:
                    await trio.sleep(0.05)
                    await ll.send(b, b"guest")

                n.start_soon(later)
                got = await ll.recv_into(a, buf)
            return bytes(buf[:got])

    trio.lowlevel.start_guest_run(
        main,
        run_sync_soon_threadsafe=todo.put,
        done_callback=result.append,
        host_uses_signal_set_wakeup_fd=False,
    )
    while not result:
        todo.get(timeout=10)()
    assert result[0].unwrap() == b"guest"
