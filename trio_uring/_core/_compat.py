"""The trio releases ``trio_uring.run`` is tested against (it relies on trio internals)."""

from __future__ import annotations

import re
import warnings

import trio

#: Inclusive (major, minor) range whose run loop, IO-manager protocol and generated
#: ``wait_*`` wrappers the suite (ours and trio's own IO tests) has been run against.
#: The one place the range is written: setup.py makes the ``trio>=`` requirement from the
#: lower end, the Makefile's ``trio-oldest`` lane installs it, and a test holds the README to it.
TESTED_TRIO = ((0, 30), (0, 35))
_warned: set[str] = set()


def trio_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", trio.__version__)
    if not m:  # pragma: no cover - trio always has a numeric version
        return (0, 0)
    return int(m.group(1)), int(m.group(2))


def check_trio_version() -> None:
    """Refuse a trio older than the tested range (it lacks what the IO manager needs); warn
    once, and go on, for a newer one: a new trio release should not break working programs."""
    lo, hi = TESTED_TRIO
    version = trio_version()
    if version < lo:
        raise RuntimeError(
            f"trio_uring.run needs trio >= {lo[0]}.{lo[1]}; this is trio {trio.__version__}. "
            f"Upgrade trio (pip install -U trio), or use plain trio.run: the io_uring sockets and "
            "ops work there through public trio API only."
        )
    if version > hi and trio.__version__ not in _warned:
        _warned.add(trio.__version__)
        warnings.warn(
            f"trio_uring.run is tested with trio {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}; this is trio "
            f"{trio.__version__}, running anyway. If something misbehaves, report it and pin "
            f"trio<{hi[0]}.{hi[1] + 1} meanwhile.",
            RuntimeWarning,
            stacklevel=3,
        )
