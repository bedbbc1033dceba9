"""Process-wide counters behind ``trio_uring.statistics()``: plain int attributes, so the hot
paths that bump them pay one attribute increment."""

from __future__ import annotations

import logging
import threading

__all__ = ["COUNTERS", "receiver_closed", "receiver_opened"]

log = logging.getLogger("trio_uring")
_fell_back_before = threading.Event()


class _Counters:
    __slots__ = (
        "bytes_multishot",
        "bytes_plain_recv",
        "bytes_readiness",
        "bytes_receivers_closed",
        "receivers",
        "sockets_closed",
        "sockets_opened",
    )

    def __init__(self) -> None:
        self.sockets_opened = self.sockets_closed = 0
        #: stream bytes handed out from the multishot recv's buffer ring
        self.bytes_multishot = 0
        #: stream bytes read with plain recv calls (bulk transfers, plain trio.run)
        self.bytes_plain_recv = 0
        #: stream bytes read by UringSockets in runs where io_uring was unavailable
        self.bytes_readiness = 0
        #: bytes delivered by zero-copy receivers that have closed; open ones are in ``receivers``
        self.bytes_receivers_closed = 0
        self.receivers: set[object] = set()


COUNTERS = _Counters()


def receiver_opened(rx: object, mode: str, reasons: list[str]) -> None:
    """Count an open receiver; an ``auto`` one that skipped modes says why in the log, at
    WARNING the first time in the process (visible without logging set up), INFO after."""
    COUNTERS.receivers.add(rx)
    if reasons:
        level = logging.INFO if _fell_back_before.is_set() else logging.WARNING
        _fell_back_before.set()
        log.log(level, "zero-copy receiver uses %s mode: %s", mode, "; ".join(reasons))


def receiver_closed(rx: object, nbytes: int) -> None:
    if rx in COUNTERS.receivers:
        COUNTERS.receivers.discard(rx)
        COUNTERS.bytes_receivers_closed += nbytes
