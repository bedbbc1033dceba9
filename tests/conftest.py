from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves file descriptors open."""
    before = _open_fds()
    yield
    leaked = _open_fds() - before
    # listdir itself opens one fd, gone by now; anything else is ours.
    assert not leaked, f"leaked fds: {sorted(leaked)}"


def pytest_configure(config: pytest.Config) -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored, and Python then installs no KeyboardInterrupt handler: the tests that deliver
    # SIGINT (trio's KI tests, ours) need Python's own handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
