"""Faults: peers that reset, half-close or never read; pools and completion queues that
overflow; memlock limits. Each ends in a clear error or in every byte delivered, and
leaves no fd or pool buffer behind. (io_uring refused by seccomp: test_refused.py.)"""

from __future__ import annotations

import errno
import os
import random
import resource
import socket as stdsocket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import UringSocketStream, open_zc_receiver
from trio_uring._net._rxbuf import buffer_pool
from trio_uring.socket import configure_receive_buffers, from_stdlib_socket

from .._subproc import run_python
from .._util import Runner, uring_pair

MiB = 1 << 20


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4200:
        pytest.skip("needs an fd limit of 4200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4200), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _tcp(lsock: Any) -> tuple[stdsocket.socket, UringSocketStream]:
    peer = stdsocket.create_connection(lsock.getsockname())
    srv, _ = await lsock.accept()
    return peer, UringSocketStream(srv)


def _rst(sock: stdsocket.socket) -> None:
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _pool_is_whole() -> None:
    pool = buffer_pool()
    pool.flush()
    assert sum(pool._refs) == 0 and pool.in_kernel == pool.entries


def test_reset_in_the_middle_of_a_bulk_transfer(run: Runner, no_fd_leak: None) -> None:
    """RST while megabytes are in flight: the stream and a receiver report it as
    BrokenResourceError after the bytes that did arrive, and give everything back."""

    async def main() -> None:
        with trio_uring.socket.socket() as lsock:
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            for use_receiver in (False, True):
                peer, stream = await _tcp(lsock)
                peer.setblocking(False)
                data = os.urandom(4 * MiB)
                sent = 0
                with trio.move_on_after(0.2):  # fill the pipe while the consumer is not reading
                    while sent < len(data):
                        try:
                            sent += peer.send(data[sent : sent + 65536])
                        except BlockingIOError:
                            await trio.sleep(0.001)
                got = bytearray()
                _rst(peer)
                with pytest.raises(trio.BrokenResourceError):
                    if use_receiver:
                        async with open_zc_receiver(stream, mode="copy", area_size=MiB) as rx:
                            async for lease in rx:
                                got += lease.data
                                lease.release()
                    else:
                        while True:
                            chunk = await stream.receive_some()
                            assert chunk, "a reset must not look like a clean end"
                            got += chunk
                assert data.startswith(bytes(got))  # what arrived is exact, in order
                await stream.aclose()
            if trio_uring.backend() == "io_uring":
                _pool_is_whole()

    run(main)


def test_half_open_peers(run: Runner) -> None:
    """A peer that shut down its sending side still receives; one that never reads makes
    our send wait, cancellably, without touching other connections."""

    async def main() -> None:
        a, b = uring_pair()
        c, d = uring_pair()
        async with a, b, c, d:
            await a.send_eof()
            assert await b.receive_some() == b""
            await b.send_all(b"still open")
            assert await a.receive_some() == b"still open"
            # a never reads from now on: b's sends fill the socket and then wait
            with trio.move_on_after(0.3) as scope:
                while True:
                    await b.send_all(b"z" * 65536)
            assert scope.cancelled_caught
            await c.send_all(b"others are unaffected")
            with trio.fail_after(5):
                assert await d.receive_some() == b"others are unaffected"

    run(main)


def test_send_to_a_closed_peer_is_broken_not_a_signal(run: Runner) -> None:
    async def main() -> None:
        a, b = uring_pair()
        await b.aclose()
        with pytest.raises(trio.BrokenResourceError) as info:
            for _ in range(10):
                await a.send_all(b"x" * 100_000)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno in (errno.EPIPE, errno.ECONNRESET)
        with pytest.raises(trio.BrokenResourceError):
            await a.send_all(b"again")
        await a.aclose()

    run(main)


def test_a_thousand_slow_connections_over_sixteen_buffers(many_fds: None) -> None:
    """1000 connections, 16 x 4 KiB receive buffers: the ring runs dry (ENOBUFS) over and
    over; slow readers' data moves out of the pool; every byte arrives, nothing is left."""

    async def main() -> None:
        configure_receive_buffers(entries=16, buf_size=4096)
        rng = random.Random(7)
        pairs = [uring_pair() for _ in range(1000)]
        payloads = [rng.randbytes(rng.choice([100, 3000, 9000])) for _ in pairs]
        results: dict[int, bytes] = {}

        async def sender(tx: UringSocketStream, data: bytes) -> None:
            for k in range(0, len(data), 1000):
                await tx.send_all(data[k : k + 1000])
                await trio.sleep(0)
            await tx.aclose()

        async def reader(i: int, rx: UringSocketStream) -> None:
            got = bytearray()
            while chunk := await rx.receive_some(1500):
                got += chunk
                if i % 3 == 0:
                    await trio.sleep(0.001)  # a slow one
            results[i] = bytes(got)
            await rx.aclose()

        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                for i, ((tx, rx), data) in enumerate(zip(pairs, payloads)):
                    n.start_soon(sender, tx, data)
                    n.start_soon(reader, i, rx)
        assert all(results[i] == payloads[i] for i in range(len(pairs)))
        _pool_is_whole()

    trio_uring.run(main)


def test_completion_queue_overflow_loses_nothing() -> None:
    """A ring of 4 SQ / 8 CQ entries with hundreds of completions per pass: the kernel parks
    the excess on its overflow list and the run reaps it; every byte arrives."""
    biggest: list[int] = []

    async def main() -> None:
        from trio_uring.lowlevel import current_driver  # noqa: PLC0415

        driver = current_driver()
        assert driver.ring.cq_entries == 8
        dispatch = driver.dispatch

        def counting(batch: Any) -> None:
            biggest.append(len(batch.user_data))
            dispatch(batch)

        driver.dispatch = counting  # type: ignore[method-assign]
        pairs = [uring_pair() for _ in range(200)]
        async with trio.open_nursery() as n:
            got: dict[int, bytes] = {}

            async def reader(i: int, rx: UringSocketStream) -> None:
                buf = bytearray()
                while chunk := await rx.receive_some():
                    buf += chunk
                got[i] = bytes(buf)

            for i, (_tx, rx) in enumerate(pairs):
                n.start_soon(reader, i, rx)
            await trio.testing.wait_all_tasks_blocked()  # 200 multishot receives armed
            for k in range(5):
                for tx, _rx in pairs:  # all of them complete before the next enter
                    tx.socket._sock.send(b"%d," % k)
                await trio.sleep(0.01)
            for tx, _rx in pairs:
                await tx.aclose()
        assert all(v == b"0,1,2,3,4," for v in got.values())
        for _tx, rx in pairs:
            await rx.aclose()

    trio_uring.run(main, entries=4)
    assert max(biggest) > 8  # more completions in one enter than the CQ holds: overflow was reaped


def test_low_memlock_limit_runs_or_says_why() -> None:
    """RLIMIT_MEMLOCK of 64 KiB: rings (not charged since Linux 5.12) and copy-mode buffers
    work; where the kernel charges memlock the error names ``ulimit -l``."""
    res = run_python(
        """
import resource, socket, trio, trio_uring
from trio_uring.socket import from_stdlib_socket
resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
async def main():
    a, b = socket.socketpair()
    ta = trio_uring.UringSocketStream(from_stdlib_socket(a))
    tb = trio_uring.UringSocketStream(from_stdlib_socket(b))
    async with ta, tb:
        await ta.send_all(b"x" * 100000)
        async with trio_uring.open_zc_receiver(tb, mode="copy", area_size=1 << 20) as rx:
            n = 0
            while n < 100000:
                with await rx.receive() as lease:
                    n += len(lease)
    print("OK", trio_uring.backend())
try:
    trio_uring.run(main)
except (trio_uring.UringUnavailable, OSError) as exc:
    print("ERROR", exc)
""",
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "OK io_uring" in res.stdout or ("ulimit -l" in res.stdout or "MEMLOCK" in res.stdout), res.stdout


def test_unread_data_of_a_connection_is_bounded_and_pushes_back_on_its_own_peer() -> None:
    """A reader that never reads holds at most max_pending bytes in user memory; the rest
    stays in the kernel (its peer's send waits), and other connections keep flowing."""

    async def main() -> None:
        tx, rx = uring_pair()
        other_tx, other_rx = uring_pair()
        async with tx, rx, other_tx, other_rx, trio.open_nursery() as n:
            n.start_soon(rx.receive_some, 1)  # arm, then never read again
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.5):
                while True:
                    await tx.send_all(b"p" * 4096)
            srx = rx.socket._rx
            assert srx is not None and srx._pending <= srx.max_pending + 64 * 1024
            await other_tx.send_all(b"flowing")
            with trio.fail_after(5):
                assert await other_rx.receive_some() == b"flowing"

    trio_uring.run(main)


def test_an_armed_receive_is_bound_to_its_connection_not_its_fd_number() -> None:
    """The fd closed behind the socket's back while a receive is armed, and the number
    reused by a new connection: the armed op keeps serving the old connection (the kernel
    holds its file), the new one's bytes go to the new one. (A *later* call on the old
    object cannot tell the reused number from its own — true of any user-space socket.)"""

    async def main() -> None:
        a, b = stdsocket.socketpair()
        sa = UringSocketStream(from_stdlib_socket(a))
        async with trio.open_nursery() as n:
            got: list[bytes] = []

            async def receiver() -> None:
                got.append(await sa.receive_some())

            n.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()  # its multishot recv is armed
            number = a.fileno()
            os.close(number)
            c, d = stdsocket.socketpair()
            with c, d:
                assert number in (c.fileno(), d.fileno())
                mine, other = (c, d) if c.fileno() == number else (d, c)
                other.send(b"for the new connection")
                with trio.fail_after(5):
                    while True:
                        try:
                            assert mine.recv(100) == b"for the new connection"
                            break
                        except BlockingIOError:
                            await trio.sleep(0.001)
                b.send(b"for the old one")
        assert got == [b"for the old one"]
        sa.socket._sock.detach()
        b.close()

    trio_uring.run(main)
