"""serve_tcp's loop, and the per-connection shortcuts of the stream hot path.

The shortcuts: a handler's stream is closed in the handler task's last step (no
``aclose_forcefully``), a socket reads with plain ``recv`` until it first has to wait (no
receiver before that), ``send_all`` of ``bytes`` sends directly. Each must behave exactly
as the general path does: these tests pin what a user sees.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket as stdsocket
import threading
import time
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream, open_zc_receiver
from trio_uring._net import _serve
from trio_uring._net._serve import serve_listeners
from trio_uring.socket import from_stdlib_socket

from .._util import Runner, receive_exactly, tcp_pair


async def _connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


def test_the_stream_is_closed_when_the_handler_returns_raises_or_is_cancelled(run: Runner) -> None:
    seen: list[UringSocketStream] = []

    async def handler(stream: UringSocketStream) -> None:
        seen.append(stream)
        word = await stream.receive_some()
        if word == b"raise":
            raise KeyError("from the handler")
        if word == b"hang":
            await trio.sleep_forever()

    async def main() -> None:
        with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match="from the handler"), flatten_subgroups=True):
            async with trio.open_nursery() as n:
                listeners = await n.start(trio_uring.serve_tcp, handler, 0)
                port = listeners[0].socket.getsockname()[1]
                for word in (b"return", b"hang"):
                    client = await _connect(port)
                    await client.send_all(word)
                    with trio.fail_after(5):
                        while len(seen) < (1 if word == b"return" else 2):
                            await trio.sleep(0.001)
                    if word == b"return":  # the peer sees EOF: the server closed its end
                        with trio.fail_after(5):
                            assert await client.receive_some() == b""
                        assert seen[0].socket.fileno() == -1
                    await client.aclose()
                # the hanging handler is cancelled when the server ends: closed all the same
                last = await _connect(port)
                try:
                    await last.send_all(b"raise")
                    await trio.sleep_forever()
                finally:
                    last.socket.close()
        assert len(seen) == 3
        assert all(s.socket.fileno() == -1 for s in seen)

    run(main)


def test_the_handler_task_ends_in_the_step_its_handler_returns() -> None:
    """No scheduler pass after the handler: trio's loop spends two (``aclose_forcefully``)."""
    returned: list[trio.lowlevel.Task] = []
    steps_after: list[trio.lowlevel.Task] = []

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if task in returned:
                steps_after.append(task)

    async def handler(stream: UringSocketStream) -> None:
        await stream.send_all(await stream.receive_some())
        returned.append(trio.lowlevel.current_task())

    async def main() -> None:
        async with trio.open_nursery() as n:
            listeners = await n.start(trio_uring.serve_tcp, handler, 0)
            trio.lowlevel.add_instrument(Steps())
            for _ in range(3):
                client = await _connect(listeners[0].socket.getsockname()[1])
                await client.send_all(b"ping")
                assert await receive_exactly(client, 4) == b"ping"
                with trio.fail_after(5):
                    assert await client.receive_some() == b""  # closed by the server
                await client.aclose()
            n.cancel_scope.cancel()
        assert len(returned) == 3
        assert steps_after == []

    trio_uring.run(main)


def test_a_stream_the_handler_closed_itself_is_fine(run: Runner) -> None:
    done = trio.Event()

    async def handler(stream: UringSocketStream) -> None:
        await stream.send_all(b"bye")
        await stream.aclose()
        done.set()

    async def main() -> None:
        async with trio.open_nursery() as n:
            listeners = await n.start(trio_uring.serve_tcp, handler, 0)
            client = await _connect(listeners[0].socket.getsockname()[1])
            assert await receive_exactly(client, 3) == b"bye"
            with trio.fail_after(5):
                await done.wait()
            await client.aclose()
            n.cancel_scope.cancel()

    run(main)


def test_other_streams_are_closed_forcefully_and_listeners_when_serving_ends() -> None:
    """serve_listeners takes any trio listener: its streams get ``aclose_forcefully``."""
    closed: list[str] = []

    class Stream(trio.abc.AsyncResource):
        async def aclose(self) -> None:
            closed.append("stream")
            await trio.lowlevel.checkpoint()

    class Listener(trio.abc.Listener[Stream]):
        def __init__(self) -> None:
            self.given = False

        async def accept(self) -> Stream:
            if self.given:
                await trio.sleep_forever()
            self.given = True
            return Stream()

        async def aclose(self) -> None:
            closed.append("listener")

    async def handler(stream: Stream) -> None:
        await trio.lowlevel.checkpoint()

    async def main() -> None:
        async with trio.open_nursery() as n:
            got = await n.start(serve_listeners, handler, [Listener()])
            assert len(got) == 1
            with trio.fail_after(5):
                while "stream" not in closed:
                    await trio.sleep(0.001)
            n.cancel_scope.cancel()
        assert closed == ["stream", "listener"]

    trio.run(main)


def test_capacity_errors_pause_and_retry_other_errors_end_serving(caplog: pytest.LogCaptureFixture) -> None:
    errors = [OSError(errno.EMFILE, "Too many open files"), OSError(errno.EINVAL, "Invalid argument")]

    class Listener(trio.abc.Listener[Any]):
        async def accept(self) -> Any:
            await trio.lowlevel.checkpoint()
            raise errors.pop(0)

        async def aclose(self) -> None:
            pass

    async def main() -> None:
        clock_start = trio.current_time()
        with pytest.RaisesGroup(pytest.RaisesExc(OSError, check=lambda e: e.errno == errno.EINVAL)):
            await serve_listeners(lambda s: trio.lowlevel.checkpoint(), [Listener()])
        assert trio.current_time() - clock_start >= _serve.SLEEP_TIME

    with caplog.at_level(logging.ERROR, "trio_uring.serve_listeners"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert "EMFILE" in caplog.text and "retrying" in caplog.text


def test_handler_nursery_gets_the_handlers(run: Runner) -> None:
    async def handler(stream: UringSocketStream) -> None:
        await stream.send_all(b"hi")

    async def main() -> None:
        async with trio.open_nursery() as handlers:
            spawned: list[Any] = []

            class Counting:
                def start_soon(self, fn: Any, *args: Any) -> None:
                    spawned.append(fn)
                    handlers.start_soon(fn, *args)

            async with trio.open_nursery() as n:
                listeners = await n.start(
                    lambda task_status: trio_uring.serve_tcp(
                        handler,
                        0,
                        handler_nursery=Counting(),  # type: ignore[arg-type]
                        task_status=task_status,
                    )
                )
                client = await _connect(listeners[0].socket.getsockname()[1])
                assert await receive_exactly(client, 2) == b"hi"
                await client.aclose()
                n.cancel_scope.cancel()
            assert len(spawned) == 1

    run(main)


# ---- the receive side: no receiver until the socket first has to wait ---------------------
def test_plain_recvs_until_the_first_wait_then_the_multishot_receiver() -> None:
    async def main() -> None:
        a, b = tcp_pair()
        async with a, b:
            await a.send_all(b"x" * 100)
            with trio.fail_after(5):
                while not b.socket._sock.recv(1, stdsocket.MSG_PEEK):
                    await trio.sleep(0.001)
            assert await b.receive_some() == b"x" * 100
            assert b.socket._rx is None  # the data was there: read with recv, no receiver made

            async def later() -> None:
                await trio.sleep(0.05)
                await a.send_all(b"late")

            async with trio.open_nursery() as n:
                n.start_soon(later)
                assert await receive_exactly(b, 4) == b"late"
            rx = b.socket._rx
            assert rx is not None and not rx.idle  # it had to wait: the multishot op is armed
            await a.send_all(b"next")
            assert await receive_exactly(b, 4) == b"next"

    trio_uring.run(main)


def test_a_large_first_read_marks_a_bulk_stream() -> None:
    async def main() -> None:
        a, b = tcp_pair()
        async with a, b:
            await a.send_all(b"y" * 60_000)
            with trio.fail_after(5):
                while len(b.socket._sock.recv(65536, stdsocket.MSG_PEEK)) < 60_000:
                    await trio.sleep(0.001)
            got = await b.receive_some(65536)
            assert got == b"y" * len(got) and len(got) >= 16384
            rx = b.socket._rx
            assert rx is not None and rx.bulk  # as _recv_direct would have: plain recvs go on

    trio_uring.run(main)


def test_cancelled_first_wait_loses_nothing() -> None:
    async def main() -> None:
        a, b = tcp_pair()
        async with a, b:
            with trio.move_on_after(0.05):
                await b.receive_some()  # empty: makes the receiver, arms, waits; cancelled
            assert b.socket._rx is not None
            await a.send_all(b"after the cancel")
            assert await receive_exactly(b, 16) == b"after the cancel"

    trio_uring.run(main)


def test_a_live_run_in_another_thread_that_read_without_waiting_still_owns_the_socket() -> None:
    """That run made no receiver (its read found data), yet the socket is its own: a run in
    this thread may neither detach it nor lend its receive side, as recv refuses it too."""
    a, b = stdsocket.socketpair()
    ua = from_stdlib_socket(a)
    read, finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        async def main() -> None:
            b.send(b"hello")  # a Unix socket pair: there at once
            assert await ua.recv(5) == b"hello"
            assert ua._rx is None  # read at once: no receiver
            read.set()
            with trio.move_on_after(10):
                await trio.to_thread.run_sync(finish.wait)

        try:
            trio_uring.run(main)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert read.wait(5)

        async def main() -> None:
            with pytest.raises(trio.BusyResourceError):
                await ua.recv(5)
            with pytest.raises(trio.BusyResourceError):
                async with open_zc_receiver(ua, mode="copy"):
                    pass  # pragma: no cover
            with pytest.raises(trio.BusyResourceError):
                ua.detach()

        trio_uring.run(main)
    finally:
        finish.set()
        t.join(10)
        ua.close()
        b.close()
    assert not errors, errors


@pytest.mark.parametrize(
    ("received", "accepted"),
    [(True, False), (False, False), (True, True)],
    ids=["read-without-waiting", "never-read", "accepted-read-without-waiting"],
)
def test_close_from_another_thread_never_sends_to_the_connection_reusing_the_number(
    received: bool, accepted: bool
) -> None:
    """A stream without a receiver (its reads never waited, or it never read) closed from
    another thread while its run has a ring send queued: the close is handed to that run, so
    the number cannot be reused before the send went out (or was withdrawn). ``accepted``: the
    stream came from a listener's accept, which gives it the run it was accepted in."""

    async def main() -> None:
        if accepted:
            listeners = await trio_uring.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            client = UringSocketStream(from_stdlib_socket(stdsocket.create_connection(("127.0.0.1", port))))
            server = await listeners[0].accept()
            await listeners[0].aclose()
        else:
            client, server = tcp_pair()
        stream = server.socket
        fd = stream.fileno()
        if received:
            await client.send_all(b"hi")
            await trio.sleep(0.05)  # there before the read: it does not wait
            assert await server.receive_some(2) == b"hi"
        assert stream._rx is None
        sender: list[trio.lowlevel.Task] = []
        reused: list[stdsocket.socket] = []

        def close_elsewhere_and_reuse() -> None:
            stream.close()
            reused.extend(stdsocket.socketpair())

        class AfterTheSendIsQueued(trio.abc.Instrument):
            def after_task_step(self, task: trio.lowlevel.Task) -> None:
                if sender and task is sender[0] and not reused:
                    t = threading.Thread(target=close_elsewhere_and_reuse)
                    t.start()
                    t.join(5)

        async def send() -> None:
            sender.append(trio.lowlevel.current_task())
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await server.send_all(b"for the old peer")

        trio.lowlevel.add_instrument(AfterTheSendIsQueued())
        async with trio.open_nursery() as n:
            n.start_soon(send)
        await trio.sleep(0.05)
        try:
            assert stream.fileno() == -1
            assert fd not in {s.fileno() for s in reused}  # still open when they were made
            for s in reused:
                s.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s.recv(100)  # nothing of the old connection's
        finally:
            for s in reused:
                s.close()
            await client.aclose()

    trio_uring.run(main, send="ring")


@pytest.mark.parametrize("blocked_in", ["send_all", "datagram recv"])
def test_a_task_blocked_on_a_socket_closed_in_another_thread_is_woken(run: Runner, blocked_in: str) -> None:
    """No receiver to hand the close through: the run using the socket is handed it all the
    same, and its waiting task raises ClosedResourceError instead of waiting forever."""
    outcome: list[str] = []
    blocked = threading.Event()
    if blocked_in == "send_all":
        client, server = tcp_pair()
        server.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 4096)
        sock = server.socket

        async def block() -> None:
            blocked.set()
            while True:
                await server.send_all(b"x" * 65536)  # the peer never reads
    else:
        sock = from_stdlib_socket(stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM))
        sock._sock.bind(("127.0.0.1", 0))

        async def block() -> None:
            blocked.set()
            await sock.recv(100)  # nothing is ever sent

    def other() -> None:
        async def main() -> None:
            try:
                with trio.fail_after(5):
                    await block()
            except trio.ClosedResourceError:
                outcome.append("closed")
            except BaseException as exc:  # pragma: no cover - reported below
                outcome.append(repr(exc))

        run(main)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert blocked.wait(5)
        time.sleep(0.1)  # let it block
        sock.close()
    finally:
        t.join(10)
        if blocked_in == "send_all":
            client.socket.close()
    assert outcome == ["closed"]


def test_first_receive_on_a_closed_socket_says_closed() -> None:
    async def main() -> None:
        a, b = tcp_pair()
        b.socket.close()
        with pytest.raises(trio.ClosedResourceError):
            await b.receive_some()
        await a.aclose()

    trio_uring.run(main)


# ---- send_all of bytes: the direct send ------------------------------------------------------
def test_send_all_bytes_larger_than_the_socket_buffer_arrives_whole(run: Runner) -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB: the direct send takes part, the rest waits

    async def main() -> None:
        a, b = tcp_pair()
        a.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 65536)
        async with a, b, trio.open_nursery() as n:
            n.start_soon(a.send_all, payload)
            assert await receive_exactly(b, len(payload), timeout=30) == payload

    run(main)


def test_send_all_bytes_cancelled_before_sending_sends_nothing() -> None:
    async def main() -> None:
        a, b = tcp_pair()
        async with a, b:
            with trio.CancelScope() as cs:
                cs.cancel()
                await a.send_all(b"never")
            assert cs.cancelled_caught
            await a.send_all(b"sent")
            assert await receive_exactly(b, 4) == b"sent"

    trio_uring.run(main)


def test_send_all_bytes_on_a_closed_stream_says_closed() -> None:
    async def main() -> None:
        a, b = tcp_pair()
        await a.send_all(b"warm")  # the socket now knows its run's driver: the fast path
        a.socket.close()
        with pytest.raises(trio.ClosedResourceError):
            await a.send_all(b"late")
        await b.aclose()

    trio_uring.run(main)


def test_the_stream_operations_are_checkpoints(run: Runner) -> None:
    """The hot paths yield trio's checkpoint message themselves: trio still counts both halves."""

    async def main() -> None:
        a, b = tcp_pair()
        async with a, b:
            for _ in range(2):  # the first time through the lookups, then the cached fast paths
                with trio.testing.assert_checkpoints():
                    await a.send_all(b"ping")
                with trio.testing.assert_checkpoints():
                    assert await receive_exactly(b, 4) == b"ping"
            with trio.testing.assert_checkpoints():
                await a.send_all(memoryview(b"view"))
            with trio.testing.assert_checkpoints():
                assert await receive_exactly(b, 4) == b"view"

    run(main)
