"""Cancellation fuzz: cancel scopes expiring at random points of every operation.

Each case runs one operation — accept, connect, recv (plain, ``MSG_WAITALL``, ``MSG_PEEK``),
send, a zero-copy receiver's receive / receive_batch, or the receiver's whole block —
while a second task cancels it after a random number of scheduler passes: before the SQE
is submitted, while the kernel holds it, or after its completion arrived. Several
connections and receivers share the run (the pool, the ring, the listener). After each
case every byte sent is either delivered exactly once or still readable, in order, and at
the end of each run no fd, pool buffer, lease or op is left over.

Seeded (``TRIO_URING_FUZZ_SEED``); the number of cases per run is ``TRIO_URING_FUZZ_CASES``
(default 1000 per integration, about 10 s in all) and a run also stops at its time budget.
"""

from __future__ import annotations

import os
import random
import socket as stdsocket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import trio_uring
from trio_uring import UringSocketListener, UringSocketStream, open_zc_receiver
from trio_uring._core._plain import existing_driver
from trio_uring._net._rxbuf import buffer_pool
from trio_uring.socket import configure_receive_buffers
from trio_uring.zerocopy import _lease

from .._util import Runner, uring_pair

SEED = int(os.environ.get("TRIO_URING_FUZZ_SEED", "20261130"))
CASES = int(os.environ.get("TRIO_URING_FUZZ_CASES", "1000"))
BUDGET = float(os.environ.get("TRIO_URING_FUZZ_SECONDS", "20"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _cancel_after(scope: trio.CancelScope, passes: int) -> None:
    for _ in range(passes):
        await trio.lowlevel.cancel_shielded_checkpoint()
    scope.cancel()


async def _maybe_cancelled(rng: random.Random, fn: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``fn`` while another task cancels it after 0-7 passes; True if it finished."""
    scope = trio.CancelScope()
    done: list[bool] = []

    async def target() -> None:
        with scope:
            await fn()
            done.append(True)

    async with trio.open_nursery() as n:
        n.start_soon(target)
        n.start_soon(_cancel_after, scope, rng.randrange(8))
    return bool(done)


async def _drain(stream: UringSocketStream) -> bytes:
    got = bytearray()
    with trio.fail_after(10):
        while data := await stream.receive_some():
            got += data
    return bytes(got)


def _message(rng: random.Random) -> bytes:
    size = rng.choice([1, 17, 1500, 40_000, 300_000])
    return rng.randbytes(size)


# ---- the cases ------------------------------------------------------------------------------------------


async def case_recv(rng: random.Random) -> None:
    tx, rx = uring_pair()
    msg = _message(rng)
    got = bytearray()
    flavour = rng.choice(["some", "small", "waitall", "peek"])

    async def op() -> None:
        while True:
            if flavour == "some":
                data = await rx.receive_some()
            elif flavour == "small":
                data = await rx.receive_some(rng.choice([1, 100]))
            elif flavour == "waitall":
                data = await rx.socket.recv(rng.choice([10, 5000]), stdsocket.MSG_WAITALL)
            else:
                peeked = await rx.socket.recv(64, stdsocket.MSG_PEEK)
                data = await rx.socket.recv(len(peeked)) if peeked else b""
                assert data == peeked
            if not data:
                return
            got.extend(data)

    async with trio.open_nursery() as n:
        n.start_soon(_send_then_close, tx, msg)
        await _maybe_cancelled(rng, op)
        got += await _drain(rx)
    await rx.aclose()
    assert bytes(got) == msg, (flavour, len(got), len(msg))


async def _send_then_close(tx: UringSocketStream, msg: bytes) -> None:
    async with tx:
        await tx.send_all(msg)


async def case_send(rng: random.Random) -> None:
    tx, rx = uring_pair()
    msg = _message(rng)
    async with trio.open_nursery() as n:
        received: list[bytes] = []

        async def reader() -> None:
            received.append(await _drain(rx))

        n.start_soon(reader)
        await _maybe_cancelled(rng, lambda: tx.send_all(msg))
        await tx.aclose()  # a cancelled send_all leaves the stream unusable: close it
    await rx.aclose()
    assert msg.startswith(received[0])  # a prefix, never garbage or a duplicate


async def case_zc(rng: random.Random) -> None:
    tx, rx = uring_pair()
    msg = _message(rng)
    got = bytearray()
    whole_block = rng.random() < 0.3

    async def consume(zc: Any) -> None:
        while True:
            if rng.random() < 0.5:
                batch = await zc.receive_batch()
                if not batch:
                    return
            else:
                try:
                    batch = [await zc.receive()]
                except trio.EndOfChannel:
                    return
            for lease in batch:
                got.extend(lease.data)
                lease.release()

    async def block() -> None:
        async with open_zc_receiver(rx, mode="copy", area_size=rng.choice([64 << 10, 1 << 20])) as zc:
            if whole_block:
                await consume(zc)
            else:
                await _maybe_cancelled(rng, lambda: consume(zc))
        assert zc.statistics().leases_out == 0

    async with trio.open_nursery() as n:
        n.start_soon(_send_then_close, tx, msg)
        if whole_block:
            await _maybe_cancelled(rng, block)
        else:
            await block()
        got += await _drain(rx)  # what the receiver did not hand out went back to the stream
    await rx.aclose()
    assert bytes(got) == msg, (whole_block, len(got), len(msg))


async def case_accept(rng: random.Random, listener: UringSocketListener, port: int) -> None:
    token = b"%d" % rng.getrandbits(48)
    client = await trio_uring.open_tcp_stream("127.0.0.1", port)
    await client.send_all(token)
    accepted: list[UringSocketStream] = []

    async def op() -> None:
        accepted.append(await listener.accept())

    await _maybe_cancelled(rng, op)
    if not accepted:  # cancelled: the connection waits for the next accept, not lost
        with trio.fail_after(5):
            accepted.append(await listener.accept())
    server = accepted[0]
    got = b""
    with trio.fail_after(5):
        while len(got) < len(token):
            got += await server.receive_some()
    assert got == token
    await server.aclose()
    await client.aclose()


async def case_connect(rng: random.Random, listener: UringSocketListener, port: int) -> None:
    sock = trio_uring.socket.socket()
    connected = await _maybe_cancelled(rng, lambda: sock.connect(("127.0.0.1", port)))
    if connected:
        stream = UringSocketStream(sock)
        await stream.send_all(b"c")
        with trio.fail_after(5):
            server = await listener.accept()
        assert await server.receive_some() == b"c"
        await server.aclose()
        await stream.aclose()
    else:
        assert sock.fileno() == -1  # as trio: a cancelled connect closes the socket
        # the kernel may have completed the handshake: that connection ends with EOF
        with trio.move_on_after(0.02):
            server = await listener.accept()
            with trio.fail_after(5):
                assert await server.receive_some() == b""
            await server.aclose()


# ---- the driver -----------------------------------------------------------------------------------------


def _fuzz(runner: Runner, seed: int) -> int:
    rng = random.Random(seed)

    async def main() -> int:
        if rng.random() < 0.5:
            configure_receive_buffers(entries=16, buf_size=4096)  # a pool that runs dry
        listener = (await trio_uring.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await case_recv(rng)  # the pool and the ring exist from here on
        driver = existing_driver()
        base_ops = len(driver.ring.inflight) if driver is not None else 0
        base_fds = _fds()
        deadline = time.monotonic() + BUDGET / 2
        done = 0
        for done in range(1, CASES + 1):  # noqa: B007 - the count is the result
            kind = rng.choice(["recv", "recv", "send", "zc", "zc", "accept", "connect"])
            if kind == "recv":
                await case_recv(rng)
            elif kind == "send":
                await case_send(rng)
            elif kind == "zc":
                await case_zc(rng)
            elif kind == "accept":
                await case_accept(rng, listener, port)
            else:
                await case_connect(rng, listener, port)
            if time.monotonic() > deadline:
                break
        await listener.aclose()
        await trio.sleep(0.01)
        pool = buffer_pool()
        pool.flush()
        assert sum(pool._refs) == 0 and pool.in_kernel == pool.entries, "pool buffers left out"
        assert _fds() <= base_fds - 1, f"fds left open: {_fds()} > {base_fds - 1}"
        if driver is not None:
            assert len(driver.ring.inflight) <= base_ops, "ops left in the kernel"
        assert not _lease._ORPHANS
        return done

    return int(runner(main))


@pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])
def test_cancellation_fuzz(runner: Runner) -> None:
    cases = _fuzz(runner, SEED + (runner is trio.run))
    assert cases >= min(CASES, 200)  # the budget allowed a meaningful number of cases
