"""The trio releases ``trio_uring.run`` is tested against (it relies on trio internals)."""

from __future__ import annotations

import re

import trio

#: Inclusive (major, minor) range whose run loop, IO-manager protocol and generated
#: ``wait_*`` wrappers the suite (ours and trio's own IO tests) has been run against.
TESTED_TRIO = ((0, 30), (0, 35))


def trio_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", trio.__version__)
    if not m:  # pragma: no cover - trio always has a numeric version
        return (0, 0)
    return int(m.group(1)), int(m.group(2))


def check_trio_version() -> None:
    """Refuse an untested trio rather than misbehave inside its run loop."""
    lo, hi = TESTED_TRIO
    if not lo <= trio_version() <= hi:
        raise RuntimeError(
            f"trio_uring.run supports trio {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}; this is trio "
            f"{trio.__version__}. Install a supported trio, or use plain trio.run: the io_uring "
            "sockets and ops work there through public trio API only."
        )
