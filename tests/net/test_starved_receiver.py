"""A stream whose receive ran out of pool buffers, read with the socket's own syscalls.

A receive op that ends with ``ENOBUFS`` puts its stream on the pool's list of receivers to
re-arm when buffers come back. A read that then finds nothing queued reads the socket itself
and waits for readiness (``MSG_WAITALL``, ``MSG_PEEK``): were the op re-armed meanwhile, it
would take the bytes the read waits for, and the read would hand out the ones behind them.
"""

from __future__ import annotations

import socket as stdsocket

import pytest
import trio
import trio.testing

from trio_uring import UringSocketStream
from trio_uring.socket import configure_receive_buffers

from .._util import Runner, stream_and_peer

#: Streams whose data takes the pool's one buffer first.
HOGS = 6
#: Each attempt is a fresh set of streams; before the fix the first or second one failed.
ATTEMPTS = 6
PAYLOAD = bytes(i % 251 for i in range(2000))


async def _armed(stream: UringSocketStream, peer: stdsocket.socket) -> None:
    """One read that waits: the stream's multishot recv is armed afterwards."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(b"!")


async def _first_read(stream: UringSocketStream, how: str) -> bytes:
    """What the reader sees first, while the stream is starved and the payload not yet sent."""
    sock = stream.socket
    if how == "waitall":
        return await sock.recv(100, stdsocket.MSG_WAITALL)
    first = await sock.recv(10)
    peeked = await sock.recv(100, stdsocket.MSG_PEEK)  # waits for the payload
    assert PAYLOAD.startswith(peeked) and peeked, f"peeked {peeked[:16]!r}, not the payload's first bytes"
    return first


async def _attempt(how: str) -> None:
    a, pa = stream_and_peer()
    hogs = [stream_and_peer() for _ in range(HOGS)]
    bell_rx, bell_tx = stdsocket.socketpair()
    try:
        await _armed(a, pa)
        for hog, peer in hogs:
            await _armed(hog, peer)
        # The hogs' data comes first and takes the pool's buffer: a's op ends with ENOBUFS
        # in the same enter that reaps the bell's readiness.
        for _, peer in hogs:
            peer.send(b"h" * 3000)
        pa.send(b"a" * 10)
        bell_tx.send(b".")

        async def send_later() -> None:
            await trio.sleep(0.1)
            pa.send(PAYLOAD)

        got = bytearray()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_later)
                await trio.lowlevel.wait_readable(bell_rx)
                got += await _first_read(a, how)
            while len(got) < 10 + len(PAYLOAD):
                got += await a.receive_some(4096)
        assert bytes(got) == b"a" * 10 + PAYLOAD, "bytes reordered"
    finally:
        a.socket.close()
        pa.close()
        for hog, peer in hogs:
            hog.socket.close()
            peer.close()
        bell_rx.close()
        bell_tx.close()


@pytest.mark.parametrize("how", ["waitall", "peek"])
def test_a_starved_stream_is_not_rearmed_under_a_read_that_waits_on_the_socket(run: Runner, how: str) -> None:
    """One buffer of 256 bytes for seven streams: each attempt starves stream a, then reads it
    with a plain read that has to wait; every byte comes out once and in order."""

    async def main() -> None:
        configure_receive_buffers(1, 256)
        for _ in range(ATTEMPTS):
            await _attempt(how)

    run(main)
