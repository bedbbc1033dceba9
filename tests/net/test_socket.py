"""UringSocket and the socket factory: families, errors, cancellation, backpressure."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import resource
import socket as stdsocket
import struct
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream
from trio_uring._net._rxbuf import buffer_pool
from trio_uring.socket import UringSocket, configure_receive_buffers, from_stdlib_socket

from .._util import Runner


def test_is_a_trio_socket() -> None:
    s = trio_uring.socket.socket()
    with s:
        assert isinstance(s, trio.socket.SocketType)
        assert s.family == stdsocket.AF_INET and s.type == stdsocket.SOCK_STREAM
        assert "UringSocket" in repr(s)
    assert s.fileno() == -1
    with pytest.raises(TypeError):
        UringSocket("not a socket")  # type: ignore[arg-type]


@pytest.mark.parametrize(("family", "host"), [(stdsocket.AF_INET, "127.0.0.1"), (stdsocket.AF_INET6, "::1")])
def test_tcp_both_families(run: Runner, family: int, host: str) -> None:
    async def main() -> None:
        with trio_uring.socket.socket(family) as lsock:
            await lsock.bind((host, 0))
            lsock.listen()
            port = lsock.getsockname()[1]
            c = trio_uring.socket.socket(family)
            with c:
                async with trio.open_nursery() as n:
                    n.start_soon(c.connect, (host, port))
                    srv, addr = await lsock.accept()
                with srv:
                    assert isinstance(srv, UringSocket)
                    assert addr[:2] == c.getsockname()[:2]
                    assert await c.send(b"hello") == 5
                    assert await srv.recv(100) == b"hello"
                    buf = bytearray(10)
                    await srv.send(b"world")
                    assert await c.recv_into(buf) == 5 and buf[:5] == b"world"
                    c.shutdown(stdsocket.SHUT_WR)
                    assert c.did_shutdown_SHUT_WR
                    assert await srv.recv(10) == b""

    run(main)


@pytest.mark.parametrize(("family", "host"), [(stdsocket.AF_INET, "127.0.0.1"), (stdsocket.AF_INET6, "::1")])
def test_udp_both_families(run: Runner, family: int, host: str) -> None:
    async def main() -> None:
        with (
            trio_uring.socket.socket(family, stdsocket.SOCK_DGRAM) as a,
            trio_uring.socket.socket(family, stdsocket.SOCK_DGRAM) as b,
        ):
            await a.bind((host, 0))
            await b.bind((host, 0))
            async with trio.open_nursery() as n:

                async def later() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    await b.sendto(b"datagram", a.getsockname())

                n.start_soon(later)
                data, addr = await a.recvfrom(100)
            assert data == b"datagram" and addr[:2] == b.getsockname()[:2]
            await b.connect(a.getsockname())
            await b.send(b"connected")
            assert await a.recv(100) == b"connected"

    run(main)


def test_unix_stream_sockets(run: Runner, tmp_path: Any) -> None:
    async def main() -> None:
        path = str(tmp_path / "sock")
        with trio_uring.socket.socket(stdsocket.AF_UNIX) as lsock:
            await lsock.bind(path)
            lsock.listen()
            c = trio_uring.socket.socket(stdsocket.AF_UNIX)
            with c:
                await c.connect(path)
                srv, _ = await lsock.accept()
                with srv:
                    await c.send(b"over unix")
                    assert await srv.recv(64) == b"over unix"

    run(main)


def test_connect_refused_and_bad_addresses(run: Runner) -> None:
    async def main() -> None:
        with stdsocket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        s = trio_uring.socket.socket()
        with s, pytest.raises(OSError) as info:
            await s.connect(("127.0.0.1", port))
        assert info.value.errno == errno.ECONNREFUSED
        with trio_uring.socket.socket() as s2, pytest.raises(ValueError, match="tuple"):
            await s2.connect("127.0.0.1")
        closed = trio_uring.socket.socket()
        closed.close()
        with pytest.raises(OSError) as info2:
            await closed.recv(10)
        assert info2.value.errno == errno.EBADF

    run(main)


def test_cancelled_accept_loses_no_connection(run: Runner) -> None:
    async def main() -> None:
        with trio_uring.socket.socket() as lsock:
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            with trio.move_on_after(0.02):
                await lsock.accept()
            c = stdsocket.create_connection(lsock.getsockname())
            with c:
                srv, _ = await lsock.accept()  # waited in the backlog, not lost to the cancelled op
                srv.close()

    run(main)


def test_cancelled_connect_closes_the_socket(run: Runner) -> None:
    async def main() -> None:
        s = trio_uring.socket.socket()
        with trio.CancelScope() as cs:
            cs.cancel()
            await s.connect(("127.0.0.1", 9))
        assert s.fileno() == -1

    run(main)


def test_socket_factory_makes_unchanged_trio_code_use_io_uring(run: Runner) -> None:
    async def main() -> None:
        plain = trio.socket.socket()
        plain.close()
        assert not isinstance(plain, UringSocket)
        with trio_uring.install_socket_factory():
            s = trio.socket.socket()
            s.close()
            assert isinstance(s, UringSocket)
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            assert isinstance(listeners[0].socket, UringSocket)
            await listeners[0].aclose()
        s = trio.socket.socket()
        s.close()
        assert not isinstance(s, UringSocket)

    run(main)


def test_thousand_connections_through_the_factory(run: Runner) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    try:

        async def main() -> None:
            trio_uring.install_socket_factory()  # the only change to ordinary trio code below
            served: list[bytes] = []

            async def handler(stream: trio.SocketStream) -> None:
                assert isinstance(stream.socket, UringSocket)
                data = await stream.receive_some()
                served.append(data)
                await stream.send_all(data.upper())

            async with trio.open_nursery() as n:
                listeners = await n.start(trio.serve_tcp, handler, 0)
                port = listeners[0].socket.getsockname()[1]
                results: list[bytes] = []

                async def client(i: int) -> None:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    async with stream:
                        await stream.send_all(b"client %d" % i)
                        results.append(await stream.receive_some())

                async with trio.open_nursery() as clients:
                    for i in range(1000):
                        clients.start_soon(client, i)
                n.cancel_scope.cancel()
            assert sorted(results) == sorted(b"CLIENT %d" % i for i in range(1000))
            assert len(served) == 1000

        run(main)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slow_consumers_and_a_tiny_buffer_ring_lose_nothing(run: Runner) -> None:
    """4 KiB x 8 buffers for 4 connections of 1 MiB each: the ring runs dry again and again
    (ENOBUFS), receives are re-armed as consumers give buffers back, every byte arrives."""

    async def main() -> None:
        configure_receive_buffers(entries=8, buf_size=4096)
        size = 1 << 20
        pairs = []
        for _ in range(4):
            x, y = stdsocket.socketpair()
            pairs.append((from_stdlib_socket(x), from_stdlib_socket(y)))
        rng = random.Random(1)
        payloads = [rng.randbytes(size) for _ in pairs]

        async def send(s: UringSocket, data: bytes) -> None:
            await UringSocketStream(s).send_all(data)
            s.shutdown(stdsocket.SHUT_WR)

        async def recv(s: UringSocket, out: list[bytes], slow: bool) -> None:
            got = bytearray()
            while True:
                chunk = await s.recv(3000)
                if not chunk:
                    break
                got += chunk
                if slow and len(got) % 7 == 0:
                    await trio.sleep(0.001)
            out.append(bytes(got))

        outs: list[list[bytes]] = [[] for _ in pairs]
        async with trio.open_nursery() as n:
            for i, ((a, b), data) in enumerate(zip(pairs, payloads)):
                n.start_soon(send, a, data)
                n.start_soon(recv, b, outs[i], i % 2 == 0)
        for out, data in zip(outs, payloads):
            assert hashlib.sha256(out[0]).digest() == hashlib.sha256(data).digest()
        for a, b in pairs:
            a.close()
            b.close()
        pool = buffer_pool()
        pool.flush()
        assert sum(pool._refs) == 0

    run(main)


def test_peer_reset_mid_transfer(run: Runner) -> None:
    async def main() -> None:
        with trio_uring.socket.socket() as lsock:
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            peer = stdsocket.create_connection(lsock.getsockname())
            srv, _ = await lsock.accept()
            stream = UringSocketStream(srv)
            peer.sendall(b"partial")
            assert await stream.receive_some() == b"partial"
            peer.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # RST
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(100):
                    await stream.send_all(b"x" * 65536)
            await stream.aclose()

    run(main)


def test_half_close_keeps_the_other_direction(run: Runner) -> None:
    async def main() -> None:
        a, b = stdsocket.socketpair()
        sa, sb = UringSocketStream(from_stdlib_socket(a)), UringSocketStream(from_stdlib_socket(b))
        async with sa, sb:
            await sa.send_all(b"last words")
            await sa.send_eof()
            await sa.send_eof()  # idempotent
            assert await sb.receive_some() == b"last words"
            assert await sb.receive_some() == b""
            with pytest.raises(trio.ClosedResourceError):
                await sa.send_all(b"no")
            await sb.send_all(b"still open")
            assert await sa.receive_some() == b"still open"

    run(main)


def test_cancelled_send_all_sends_a_prefix_never_garbage(run: Runner) -> None:
    async def main() -> None:
        a, b = stdsocket.socketpair()
        sa, sb = UringSocketStream(from_stdlib_socket(a)), UringSocketStream(from_stdlib_socket(b))
        data = os.urandom(4 << 20)
        async with sa, sb:
            with trio.move_on_after(0.05):
                await sa.send_all(data)  # the peer does not read: blocks, then is cancelled
            await sa.send_eof()
            got = bytearray()
            while chunk := await sb.receive_some():
                got += chunk
            assert data.startswith(bytes(got))

    run(main)


def test_close_from_another_task_wakes_the_receiver(run: Runner) -> None:
    async def main() -> None:
        a, b = stdsocket.socketpair()
        sa = UringSocketStream(from_stdlib_socket(a))
        with b:
            async with trio.open_nursery() as n:

                async def receiver() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await sa.receive_some()

                n.start_soon(receiver)
                await trio.testing.wait_all_tasks_blocked()
                await sa.aclose()
            assert b.recv(10) == b""  # the close really closed the connection

    run(main)


def test_no_fd_or_buffer_leaks(run: Runner, no_fd_leak: None) -> None:
    async def main() -> None:
        for _ in range(20):
            a, b = stdsocket.socketpair()
            sa, sb = UringSocketStream(from_stdlib_socket(a)), UringSocketStream(from_stdlib_socket(b))
            await sa.send_all(b"x" * 100_000)
            await sb.receive_some(10)  # leave most of it unread, in our buffers
            await sa.aclose()
            await sb.aclose()
        pool = buffer_pool()
        await trio.sleep(0.01)
        pool.flush()
        assert sum(pool._refs) == 0

    run(main)


def test_accepted_streams_inherit_the_listeners_tcp_options(run: Runner) -> None:
    """The listener carries TCP_NODELAY and TCP_NOTSENT_LOWAT for its streams (no setsockopt
    per connection); accepted sockets are non-blocking from the accept itself; a socket whose
    options someone changed gets them set again by the stream, as trio.SocketStream does."""

    def opts(sock: Any) -> tuple[int, int]:
        return (
            sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY),
            sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NOTSENT_LOWAT),
        )

    async def main() -> None:
        listeners = await trio_uring.open_tcp_listeners(0, host="127.0.0.1")
        listener = listeners[0]
        port = listener.socket.getsockname()[1]
        with (
            stdsocket.create_connection(("127.0.0.1", port)) as c1,
            stdsocket.create_connection(("127.0.0.1", port)) as c2,
        ):
            stream = await listener.accept()
            assert stream.socket.tcp_tuned and opts(stream.socket) == (1, 2**14)
            assert not stream.socket._sock.getblocking()
            raw, addr = await listener.socket.accept()
            assert addr == c2.getsockname()  # the address, when asked for, is still there
            raw.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 0)
            assert not raw.tcp_tuned
            again = UringSocketStream(raw)
            assert opts(again.socket) == (1, 2**14)
            c1.sendall(b"x")
            assert await stream.receive_some(10) == b"x"
            await again.aclose()
            await stream.aclose()
        await listener.aclose()

    run(main)


def test_overlapping_open_tcp_stream_calls_all_get_io_uring_sockets() -> None:
    """open_tcp_stream needs trio's per-run socket factory while it connects; calls that
    overlap share it, so one call's end never hands another a stock trio socket."""

    async def main() -> None:
        listeners = await trio_uring.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        streams: list[Any] = []

        async def connect(delay: float) -> None:
            await trio.sleep(delay)
            streams.append(await trio_uring.open_tcp_stream("127.0.0.1", port))

        rng = random.Random(7)
        async with trio.open_nursery() as n:
            for _ in range(60):
                n.start_soon(connect, rng.random() * 0.02)
        assert len(streams) == 60 and all(isinstance(s.socket, UringSocket) for s in streams)
        # nothing of it outlives the calls: trio's own sockets again
        plain = trio.socket.socket()
        assert not isinstance(plain, UringSocket)
        plain.close()
        for s in streams:
            await s.aclose()
        await listeners[0].aclose()

    trio.run(main)
