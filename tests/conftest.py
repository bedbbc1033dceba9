"""Fixtures and hooks every suite shares (plain helpers live in ``tests/_util.py``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import trio

import trio_uring
from trio_uring._core._ring import DEFAULT_FLAGS, Ring, SetupFlags

from ._util import Runner


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


@pytest.fixture(params=["trio_uring.run", "trio.run"])
def run(request: pytest.FixtureRequest) -> Runner:
    """The test runs twice: under ``trio_uring.run`` and under a plain ``trio.run``."""
    return trio_uring.run if request.param == "trio_uring.run" else trio.run


@pytest.fixture
def ring_flags() -> SetupFlags:
    """The setup flags the ``ring`` fixture asks for; a module overrides this fixture for others."""
    return DEFAULT_FLAGS


@pytest.fixture
def ring(ring_flags: SetupFlags) -> Iterator[Ring]:
    """A 64-entry ring of its own, closed after the test."""
    with Ring(64, flags=ring_flags) as r:
        yield r


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # ``@pytest.mark.kernel``: the test needs the kernel of the kernel lane; elsewhere it is
    # skipped, saying where it runs. Probed only when such a test was collected.
    kernel = [item for item in items if item.get_closest_marker("kernel") is not None]
    if kernel and not trio_uring.probe().zcrx_nodev:
        skip = pytest.mark.skip(
            reason="needs device-less zcrx (Linux >= 7.1): run in the kernel lane, scripts/kernel-vm"
        )
        for item in kernel:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored, and Python then installs no KeyboardInterrupt handler: the tests that deliver
    # SIGINT (trio's KI tests, ours) need Python's own handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
