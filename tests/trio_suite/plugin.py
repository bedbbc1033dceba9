"""pytest plugin: run trio's own test files with trio_uring's IO manager installed.

Used as ``pytest -p tests.trio_suite.plugin --pyargs trio._core._tests.test_io ...`` (see
the Makefile's ``trio-suite`` target). Every ``trio.run`` in those tests, guest runs
included, gets a ``UringIOManager``; the plugin checks that it really did.
"""

from __future__ import annotations

import contextlib
import signal

import pytest

import trio_uring.lowlevel
from trio_uring._core import _io_manager

_stack = contextlib.ExitStack()
_made: list[int] = []
_original_init = _io_manager.UringIOManager.__init__


def _counting_init(self: _io_manager.UringIOManager, *args: object, **kwargs: object) -> None:
    _made.append(1)
    _original_init(self, *args, **kwargs)  # type: ignore[arg-type]


#: trio tests whose expectations legitimately differ under io_uring (also listed in the
#: README). Marked strict xfail: if one starts passing, the run fails and the entry goes.
KNOWN_DIFFERENCES = {
    ("test_io.py", "test_io_manager_statistics"): (
        "asserts the backend name is epoll, windows or kqueue; ours reports io_uring "
        "(its reader/writer counts are checked in tests/core/test_io_manager.py)"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = KNOWN_DIFFERENCES.get((item.path.name, item.name))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def pytest_configure(config: pytest.Config) -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored, and Python then installs no KeyboardInterrupt handler: trio's KI tests need it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _io_manager.UringIOManager.__init__ = _counting_init  # type: ignore[method-assign]
    _stack.enter_context(trio_uring.lowlevel.install_io_manager())


def pytest_unconfigure(config: pytest.Config) -> None:
    _stack.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"trio_uring: {len(_made)} runs used UringIOManager")
    if not _made:
        terminalreporter.write_line("trio_uring: ERROR no run used the io_uring IO manager")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _made and session.testscollected:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
