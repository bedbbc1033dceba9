"""The pytest plugin (entry point ``trio_uring``): pytest-trio tests on io_uring.

``--trio-uring`` (or ``trio_uring = true`` in the ini file) runs every pytest-trio test, with its
async fixtures, on the io_uring IO manager with every trio socket an io_uring one, whatever
runner the test names (trio_mode, per-test and module marks, ``autojump_clock``). pytest-trio
calls ``trio.run``; the plugin swaps the IO manager of the runs made during each trio test's
call (``install_io_manager`` is process-global while active). Sync tests run untouched.
``--trio-uring=fallback`` keeps stock trio, with one warning, where io_uring is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator

import pytest

from .._core._errors import UringUnavailable
from .._core._plain import announce_fallback
from .._core._run import install_io_manager
from .._global import unavailable_reason
from .._net._factory import route_all_sockets
from .._net._stream import UringSocketStream
from ..zerocopy._receiver import ZeroCopyReceiver, open_zc_receiver
from ._helpers import connected_stream_pair

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_report_header",
    "pytest_runtest_call",
    "uring_stream_pair",
    "zc_receiver",
]

_ON = {"true", "1", "yes", "on"}
_OFF = {"false", "0", "no", "off", ""}
_MODE = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_uring")
    group.addoption(
        "--trio-uring",
        nargs="?",
        const="true",
        default=None,
        metavar="fallback",
        help="run every pytest-trio test on io_uring (=fallback: on stock trio, with one warning, "
        "where io_uring is unavailable)",
    )
    parser.addini(
        "trio_uring", "run every pytest-trio test on io_uring: true, fallback or false", default="false"
    )


def _mode(config: pytest.Config) -> str:
    value = config.getoption("trio_uring")
    if value is None:
        value = config.getini("trio_uring")
    value = str(value).strip().lower()
    if value in _ON:
        return "io_uring"
    if value in _OFF:
        return "off"
    if value == "fallback":
        return "fallback"
    raise pytest.UsageError(
        f"trio_uring: expected true, fallback or false, not {value!r} (a bare --trio-uring takes the "
        "next word as its value: write --trio-uring=true, or put the option after the paths)"
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    if mode == "fallback":
        reason = unavailable_reason()
        if reason is None:
            mode = "io_uring"
        else:
            mode = "stock"
            announce_fallback(reason)  # said once here: the runs of the tests do not repeat it
            config.issue_config_time_warning(
                RuntimeWarning(f"io_uring is unavailable, pytest-trio tests run on stock trio: {reason}"),
                stacklevel=2,
            )
    config.stash[_MODE] = mode


def pytest_report_header(config: pytest.Config) -> str | None:
    mode = config.stash.get(_MODE, "off")
    if mode == "off":
        return None
    where = "io_uring" if mode == "io_uring" else "stock trio (io_uring unavailable)"
    return f"trio_uring: pytest-trio tests run on {where}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    if item.config.stash.get(_MODE, "off") != "io_uring" or item.get_closest_marker("trio") is None:
        return (yield)
    # Without fallback: a run that cannot set up its ring fails at its start, with the reason.
    with install_io_manager(), route_all_sockets():
        return (yield)


@pytest.fixture
async def uring_stream_pair() -> AsyncIterator[tuple[UringSocketStream, UringSocketStream]]:
    """A connected loopback TCP pair of io_uring streams (client, server), closed after the test."""
    client, server = connected_stream_pair()
    async with client, server:
        yield client, server


@pytest.fixture
async def zc_receiver(
    uring_stream_pair: tuple[UringSocketStream, UringSocketStream],
) -> AsyncIterator[ZeroCopyReceiver]:
    """A zero-copy receiver (``mode="auto"``) over the server side of ``uring_stream_pair``:
    send on ``uring_stream_pair[0]``, receive leases here."""
    try:
        receiver = open_zc_receiver(uring_stream_pair[1])
        rx = await receiver.__aenter__()
    except UringUnavailable as exc:
        pytest.skip(f"zero-copy receive needs io_uring: {exc}")
    try:
        yield rx
    finally:
        await receiver.__aexit__(None, None, None)
