from __future__ import annotations

import os
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
