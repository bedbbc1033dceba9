"""``trio_uring.statistics()``: what io_uring is doing, under ``trio_uring.run`` and plain ``trio.run``."""

from __future__ import annotations

import attrs

from ._core._counters import COUNTERS
from ._core._plain import existing_driver
from ._core._run import backend

__all__ = ["Statistics", "statistics"]


@attrs.frozen
class Statistics:
    """A snapshot. ``backend``, ``enter_calls`` and ``ops_in_flight`` are the current run's
    (its ring's, whichever integration made it); the socket and byte counts are process-wide."""

    #: ``"io_uring"`` under trio_uring.run or install_io_manager, else trio's IO manager's name
    backend: str
    #: whether this run has an io_uring ring (plain trio.run makes one at its first op)
    ring: bool
    #: ``io_uring_enter`` calls of the run's ring
    enter_calls: int
    #: io_uring ops of the run whose final completion has not arrived
    ops_in_flight: int
    #: UringSockets open in the process
    sockets_open: int
    #: zero-copy receivers open in the process
    receivers_open: int
    #: stream bytes received through the multishot recv's buffer ring
    bytes_multishot: int
    #: stream bytes received with plain recv calls (bulk transfers; reads under plain trio.run)
    bytes_plain_recv: int
    #: bytes delivered as leases by zero-copy receivers (all modes)
    bytes_receivers: int
    #: stream bytes UringSockets read through readiness because io_uring was unavailable
    bytes_readiness: int


def statistics() -> Statistics:
    """What io_uring has done: for the current run (call inside one) and the process.

    :raises RuntimeError: called outside a trio run.
    """
    driver = existing_driver()
    ring = driver.ring if driver is not None and not driver.closed else None
    c = COUNTERS
    return Statistics(
        backend=backend(),
        ring=ring is not None,
        enter_calls=ring.enter_calls if ring is not None and not ring.closed else 0,
        ops_in_flight=len(ring.inflight) if ring is not None and not ring.closed else 0,
        sockets_open=c.sockets_opened - c.sockets_closed,
        receivers_open=len(c.receivers),
        bytes_multishot=c.bytes_multishot,
        bytes_plain_recv=c.bytes_plain_recv,
        bytes_receivers=c.bytes_receivers_closed + sum(getattr(rx, "_bytes", 0) for rx in c.receivers),
        bytes_readiness=c.bytes_readiness,
    )
