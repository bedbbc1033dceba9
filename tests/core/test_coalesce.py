"""Wait coalescing: the ring's minimum wait time, and the IO manager turning it on for bulk data."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import trio_uring
from trio_uring import RingClosedError, UringUnavailable, open_zc_receiver
from trio_uring._core._io_manager import COALESCE_ENTERS
from trio_uring._core._ring import Ring, SetupFlags, run_ring_flags


def _kernel_coalesces() -> bool:
    with Ring(8) as r:
        return r.can_coalesce


needs_min_wait = pytest.mark.skipif(not _kernel_coalesces(), reason="kernel without IORING_FEAT_MIN_TIMEOUT")


@pytest.fixture
def ring_flags() -> SetupFlags:
    """The ``ring`` fixture (tests/conftest.py) with the flags of a run's ring."""
    return run_ring_flags()


Polled = tuple[Ring, socket.socket, socket.socket]


@pytest.fixture
def polled(ring: Ring) -> Iterator[Polled]:
    """The ring with a multishot POLLIN armed (user_data 7) on ``b``; ``a`` writes to it."""
    a, b = socket.socketpair()
    with a, b:
        ring.prep_poll(b.fileno(), select.POLLIN, 7, multishot=True)
        ring.enter(0, 0)
        yield ring, a, b


def wait_for_send(
    ring: Ring, sock: socket.socket, delay: float, timeout: float | None
) -> tuple[list[int], float]:
    """Send a byte on ``sock`` after ``delay`` from another thread; one wait: (user_data, seconds)."""
    t = threading.Timer(delay, sock.send, (b"x",))
    t0 = time.monotonic()
    t.start()
    batch = ring.enter(1, timeout)
    took = time.monotonic() - t0
    t.join()
    return batch.user_data, took


@needs_min_wait
def test_a_lone_early_event_waits_out_the_window(polled: Polled) -> None:
    ring, a, b = polled
    ring.set_coalesce(300_000, nr=4)  # 0.3 s, so the effect is far above scheduling noise
    uds, took = wait_for_send(ring, a, 0.01, 10.0)
    assert uds == [7]
    assert 0.25 < took < 5.0  # held for the window (one event < nr), not for the timeout
    b.recv(16)
    ring.set_coalesce(0)  # off: the same event ends the wait at once
    uds, took = wait_for_send(ring, a, 0.01, 10.0)
    assert uds == [7] and took < 0.25


@needs_min_wait
def test_events_after_the_window_are_not_delayed(polled: Polled) -> None:
    ring, a, _ = polled
    ring.set_coalesce(50_000, nr=16)  # 50 ms
    uds, took = wait_for_send(ring, a, 0.3, 10.0)
    assert uds == [7] and 0.28 < took < 5.0


@needs_min_wait
def test_enough_completions_end_the_window_early(ring: Ring) -> None:
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        for i, (_, b) in enumerate(pairs):
            ring.prep_poll(b.fileno(), select.POLLIN, 10 + i)
        ring.enter(0, 0)
        ring.set_coalesce(2_000_000, nr=4)  # 2 s window, but 4 completions come at once
        for a, _ in pairs:
            a.send(b"x")
        t0 = time.monotonic()
        uds = ring.enter(1, 10.0).user_data
        assert sorted(uds) == [10, 11, 12, 13] and time.monotonic() - t0 < 1.5
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@needs_min_wait
def test_no_coalescing_without_a_timeout_or_under_a_short_one(polled: Polled) -> None:
    ring, a, b = polled
    ring.set_coalesce(300_000, nr=4)
    # No timeout: the kernel would end the wait empty when the window expires.
    uds, took = wait_for_send(ring, a, 0.05, None)
    assert uds == [7] and took < 0.25
    b.recv(16)
    # A timeout shorter than the window wins: trio's deadlines are never late.
    t0 = time.monotonic()
    assert ring.enter(1, 0.02).user_data == []
    assert time.monotonic() - t0 < 0.25


def test_set_coalesce_rejects_bad_values(ring: Ring) -> None:
    with pytest.raises(ValueError, match="usec >= 0"):
        ring.set_coalesce(-1)
    with pytest.raises(ValueError, match="nr >= 1"):
        ring.set_coalesce(10, nr=0)
    if not ring.can_coalesce:
        with pytest.raises(UringUnavailable, match=r"6\.12"):
            ring.set_coalesce(10)
    ring.close()
    with pytest.raises(RingClosedError):
        ring.set_coalesce(0)


def test_run_rejects_a_bad_coalesce_usec() -> None:
    bad: Any
    for bad in (-1, 1.5, "50"):
        with pytest.raises(ValueError, match="coalesce_usec"):
            trio_uring.run(trio.sleep, 0, coalesce_usec=bad)


async def _bulk_then_quiet(waits: list[int]) -> None:
    """32 MiB from another thread through a ZeroCopyReceiver, then small ping-pongs."""
    a, b_std = socket.socketpair()
    b = trio_uring.socket.from_stdlib_socket(b_std)

    def coalesced() -> int:
        io: Any = trio.lowlevel.current_statistics().io_statistics
        return int(io.coalesced_waits)

    total = 32 << 20
    sender = threading.Thread(target=a.sendall, args=(b"z" * total,))
    sender.start()
    got = 0
    async with open_zc_receiver(b, mode="copy") as rx:
        while got < total:
            for lease in await rx.receive_batch():
                with lease:
                    got += lease.nbytes
    sender.join()
    waits.append(coalesced())

    # The bulk receiver is gone: after a few enters coalescing is off, and the waits for
    # small messages (sent from another thread while the run sleeps) are not coalesced.
    async def ping(data: bytes) -> None:
        timer = threading.Timer(0.002, a.send, (data,))
        timer.start()
        assert await b.recv(1) == data
        timer.join()

    for _ in range(2 * COALESCE_ENTERS):
        await ping(b"p")
    before = coalesced()
    for _ in range(50):
        await ping(b"q")
    waits.append(coalesced() - before)
    a.close()
    b.close()


@needs_min_wait
def test_bulk_receive_turns_coalescing_on_and_quiet_turns_it_off() -> None:
    waits: list[int] = []
    trio_uring.run(_bulk_then_quiet, waits)
    during, after = waits
    assert during > 0  # the receiver took >= 64 KiB per enter and the waits coalesced
    assert after == 0


def test_coalesce_usec_zero_never_coalesces() -> None:
    waits: list[int] = []
    trio_uring.run(_bulk_then_quiet, waits, coalesce_usec=0)
    assert waits == [0, 0]
