"""``trio_uring.statistics()`` under both integrations, and the log record of an ``auto``
receiver that fell back."""

from __future__ import annotations

import errno
import logging
import socket as stdsocket

import pytest
import trio

import trio_uring
from tests._subproc import run_python
from trio_uring.socket import from_stdlib_socket
from trio_uring.testing import connected_stream_pair


async def _echo_once(payload: bytes) -> None:
    client, server = connected_stream_pair()
    async with client, server:
        await client.send_all(payload)
        got = b""
        with trio.fail_after(10):
            while len(got) < len(payload):
                got += await server.receive_some()
        assert got == payload


def _received(s: trio_uring.Statistics) -> int:
    return s.bytes_multishot + s.bytes_plain_recv


async def test_under_plain_trio_run() -> None:
    before = trio_uring.statistics()
    assert before.backend == "epoll"
    client, server = connected_stream_pair()
    during = trio_uring.statistics()
    assert during.sockets_open == before.sockets_open + 2
    async with client, server:
        await client.send_all(b"x" * 1000)
        got = 0
        while got < 1000:
            got += len(await server.receive_some())
    after = trio_uring.statistics()
    assert after.sockets_open == before.sockets_open
    assert _received(after) - _received(before) == 1000
    assert after.ring and after.enter_calls > 0  # the run's own ring, made at the first op


@pytest.mark.trio(run=trio_uring.run)
async def test_under_trio_uring_run() -> None:
    before = trio_uring.statistics()
    assert before.backend == "io_uring" and before.ring
    await _echo_once(b"y" * 70_000)
    await trio.sleep(0.001)  # a wait: one io_uring_enter at least
    after = trio_uring.statistics()
    assert _received(after) - _received(before) == 70_000
    assert after.enter_calls > before.enter_calls
    assert after.ops_in_flight >= 0
    assert after.bytes_readiness == before.bytes_readiness


async def test_receivers_bytes_and_the_fallback_log_record(caplog: pytest.LogCaptureFixture) -> None:
    before = trio_uring.statistics()
    client, server = connected_stream_pair()
    caplog.set_level(logging.INFO, logger="trio_uring")
    async with client, server, trio_uring.open_zc_receiver(server) as rx:
        assert trio_uring.statistics().receivers_open == before.receivers_open + 1
        await client.send_all(b"z" * 5000)
        got = 0
        while got < 5000:
            with await rx.receive() as lease:
                got += lease.nbytes
        assert trio_uring.statistics().bytes_receivers - before.bytes_receivers == 5000
    after = trio_uring.statistics()
    assert after.receivers_open == before.receivers_open
    assert after.bytes_receivers - before.bytes_receivers == 5000  # closed receivers still count
    if rx.statistics().fallback_reason:
        records = [r for r in caplog.records if r.name == "trio_uring" and "zero-copy receiver" in r.message]
        assert len(records) == 1
        assert f"uses {rx.mode} mode" in records[0].message
        assert rx.statistics().fallback_reason in records[0].message


def test_readiness_bytes_where_io_uring_is_refused() -> None:
    proc = run_python(
        """
        import socket, warnings, trio, trio_uring
        from trio_uring.socket import from_stdlib_socket
        warnings.simplefilter("ignore")
        async def main():
            a, b = socket.socketpair()
            with from_stdlib_socket(a) as ua, from_stdlib_socket(b) as ub:
                await ua.send(b"abc")
                assert await ub.recv(10) == b"abc"
            s = trio_uring.statistics()
            print(s.backend, s.ring, s.bytes_readiness, s.bytes_multishot + s.bytes_plain_recv)
        trio.run(main)
    """,
        refuse={"setup": errno.EPERM},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["epoll", "False", "3", "0"]


async def test_sockets_open_counts_detach_and_close() -> None:
    start = trio_uring.statistics().sockets_open
    a = from_stdlib_socket(stdsocket.socket())
    b = from_stdlib_socket(stdsocket.socket())
    assert trio_uring.statistics().sockets_open == start + 2
    stdsocket.socket(fileno=a.detach()).close()
    b.close()
    b.close()
    assert trio_uring.statistics().sockets_open == start
