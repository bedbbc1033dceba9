"""The flat hot paths of ``UringSocketStream.receive_some`` / ``send_all``: what they take on
themselves, and that they keep every promise of the general path they skip."""

from __future__ import annotations

import socket as stdsocket
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream

from .._util import in_child_task, stream_and_peer, warm, warm_stream_and_peer


def _count_general(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the calls that reach the general paths."""
    calls = {"receive": 0, "send": 0}
    receive, send = UringSocketStream._receive_some, UringSocketStream._send_all

    async def counted_receive(self: UringSocketStream, max_bytes: int | None = None) -> bytes:
        calls["receive"] += 1
        return await receive(self, max_bytes)

    async def counted_send(self: UringSocketStream, data: Any) -> None:
        calls["send"] += 1
        await send(self, data)

    monkeypatch.setattr(UringSocketStream, "_receive_some", counted_receive)
    monkeypatch.setattr(UringSocketStream, "_send_all", counted_send)
    return calls


def test_queued_bytes_and_whole_sends_take_the_flat_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_general(monkeypatch)

    async def body() -> None:
        stream, peer = stream_and_peer()
        with stream.socket, peer:
            peer.send(b"hello")
            assert await stream.receive_some() == b"hello"  # the first use finds the run's ring
            calls["receive"] = 0
            peer.send(b"ping")
            with trio.testing.assert_checkpoints():
                assert await stream.receive_some() == b"ping"
            assert stream.socket._rx is None  # a plain recv: no receiver was made
            with trio.testing.assert_checkpoints():
                await stream.send_all(b"pong")
            assert peer.recv(10) == b"pong"
            assert calls == {"receive": 0, "send": 0}
            # chunks the multishot recv queued are taken flat too
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive_some)  # finds it empty: arms the recv, waits
                await trio.testing.wait_all_tasks_blocked()
                assert calls["receive"] == 1
                peer.send(b"one")
            rx = stream.socket._rx
            assert rx is not None
            peer.send(b"two")
            with trio.fail_after(5):
                while not rx._chunks:
                    await trio.sleep(0.001)
            with trio.testing.assert_checkpoints():
                assert await stream.receive_some(2) == b"tw"
            assert await stream.receive_some() == b"o"
            assert calls["receive"] == 1

    in_child_task(body)


def test_a_cancelled_task_neither_takes_nor_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_general(monkeypatch)

    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            calls.update(receive=0, send=0)
            peer.send(b"keep me")
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await stream.receive_some()
                with pytest.raises(trio.Cancelled):
                    await stream.send_all(b"never")
            assert calls == {"receive": 1, "send": 1}  # the general path raised both
            assert await stream.receive_some() == b"keep me"
            with pytest.raises(BlockingIOError):
                peer.recv(10)

    in_child_task(body)


@pytest.mark.parametrize("op", ["receive", "send"])
def test_a_second_task_during_the_flat_checkpoint_is_refused(op: str) -> None:
    async def body() -> None:
        stream, peer = stream_and_peer()
        outcomes: list[str] = []

        async def one() -> None:
            try:
                if op == "receive":
                    await stream.receive_some()
                else:
                    await stream.send_all(b"x")
            except trio.BusyResourceError:
                outcomes.append("busy")
            else:
                outcomes.append("done")

        with stream.socket, peer:
            await warm(stream, peer)
            peer.send(b"ab")
            with trio.fail_after(5):  # without the conflict the second receive waits for data
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(one)
                    nursery.start_soon(one)  # runs while the first sits in its checkpoint
            assert sorted(outcomes) == ["busy", "done"]
            # the conflict was released: the stream works on
            if op == "receive":
                await stream.send_all(b"z")
                assert peer.recv(10) == b"z"
            else:
                assert peer.recv(10) == b"x"  # exactly one send went out
                assert await stream.receive_some() == b"ab"

    in_child_task(body)


def test_peer_reset_and_a_closed_fd_map_to_stream_errors() -> None:
    async def body() -> None:
        stream, peer = stream_and_peer()
        with stream.socket:
            await warm(stream, peer)
            peer.close()  # a socketpair peer's close: recv reads EOF, send gets EPIPE
            assert await stream.receive_some() == b""
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"x")
        stream, peer = stream_and_peer()
        with peer:
            await warm(stream, peer)
            stream.socket.close()
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"x")

    in_child_task(body)


def test_tcp_reset_is_broken_resource() -> None:
    async def body() -> None:
        listener = stdsocket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with listener:
            stream = await trio_uring.open_tcp_stream(*listener.getsockname())
            peer, _ = listener.accept()
            peer.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with stream.socket, trio.fail_after(5):
                peer.send(b"w")
                assert await stream.receive_some() == b"w"
                peer.close()  # RST
                await trio.sleep(0.01)
                with pytest.raises(trio.BrokenResourceError):
                    await stream.receive_some()
                with pytest.raises(trio.BrokenResourceError):
                    await stream.send_all(b"x")

    in_child_task(body)


def test_send_all_and_receive_some_start_as_tasks() -> None:
    """``nursery.start_soon(stream.send_all, data)``: both are real coroutine functions."""

    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, b"from a task")
            assert peer.recv(100) == b"from a task"
            peer.send(b"back")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive_some)
            with pytest.raises(BlockingIOError):
                peer.recv(10)
            await stream.send_all(b"")  # the empty send: a checkpoint, nothing sent

    in_child_task(body)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1"])
def test_bad_max_bytes_is_refused_before_any_read(bad: Any) -> None:
    async def body() -> None:
        async with warm_stream_and_peer() as (stream, peer):
            peer.send(b"still here")
            with pytest.raises((TypeError, ValueError)):
                await stream.receive_some(bad)
            assert await stream.receive_some() == b"still here"

    in_child_task(body)


def test_another_runs_socket_goes_the_general_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream made in one run and used in a later one: the cached driver is closed, so the
    flat path steps aside and the general one serves the new run."""
    calls = _count_general(monkeypatch)
    stream, peer = stream_and_peer()
    with stream.socket, peer:
        peer.send(b"first")

        async def first() -> None:
            assert await stream.receive_some() == b"first"

        in_child_task(first)
        assert calls["receive"] == 1  # the first use finds the run's ring
        peer.send(b"second")

        async def second() -> None:
            assert await stream.receive_some() == b"second"
            await stream.send_all(b"ok")

        in_child_task(second)
        assert calls["receive"] == 2  # the cached ring is the ended run's: found again
        assert peer.recv(10) == b"ok"
