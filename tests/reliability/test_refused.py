"""io_uring refused (seccomp, sysctl, a failing syscall): clear errors, clean fallback, no leaks.

Each of the three io_uring syscalls is refused in a child process by a real seccomp filter;
the same paths are also driven in-process (a patched ring) so they run fast.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from tests._subproc import run_python
from trio_uring import lowlevel as ll
from trio_uring._core import _plain
from trio_uring._core._errors import kernel_error
from trio_uring._core._io_manager import UringIOManager
from trio_uring._core._ring import Ring

ROOT = str(Path(__file__).resolve().parents[2])
SYSCALLS = ["setup", "register", "enter"]
REMEDY = "seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register"
UNAVAILABLE = "io_uring is unavailable, using trio's readiness-based IO"


def child(code: str, refused: str) -> str:
    """Run ``code`` with ``io_uring_<refused>`` failing with EPERM; return its stdout."""
    prelude = f"import sys; sys.path.insert(0, {ROOT!r})\n"
    res = run_python(prelude + code, refuse={refused: errno.EPERM}, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("refused", SYSCALLS)
def test_run_raises_naming_the_syscall_and_remedy(refused: str) -> None:
    out = child("""
import trio, trio_uring
try:
    trio_uring.run(trio.sleep, 0)
except trio_uring.UringUnavailable as exc:
    print("ERRNO", exc.errno)
    print("MSG", exc)
""", refused)
    assert "ERRNO 1" in out
    assert f"io_uring_{refused}" in out and REMEDY in out and "Docker" in out, out


@pytest.mark.parametrize("refused", SYSCALLS)
def test_failed_attempts_leak_no_fds(refused: str) -> None:
    out = child("""
import os, warnings, trio, trio_uring
from trio_uring._core import _plain
def fds():
    return len(os.listdir("/proc/self/fd"))
async def plain():
    try:
        _plain.current_driver()
    except trio_uring.UringUnavailable:
        pass
trio.run(trio.sleep, 0)
before = fds()
for _ in range(20):
    try:
        trio_uring.run(trio.sleep, 0)
    except trio_uring.UringUnavailable:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trio_uring.run(trio.sleep, 0, fallback=True)
    trio.run(plain)
print("LEAKED", fds() - before)
""", refused)
    assert "LEAKED 0" in out, out


@pytest.mark.parametrize("refused", SYSCALLS)
def test_trio_run_works_after_refusal(refused: str) -> None:
    out = child("""
import warnings, trio, trio_uring
from trio_uring import lowlevel as ll
async def which():
    await trio.sleep(0)
    return trio_uring.backend()
try:
    trio_uring.run(which)
except trio_uring.UringUnavailable:
    print("REFUSED")
print("AFTER", trio.run(which))
with ll.install_io_manager():
    try:
        trio.run(which)
    except trio_uring.UringUnavailable as exc:
        print("INSTALLED REFUSED", "io_uring_" in str(exc))
print("AFTER INSTALL", trio.run(which))
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    with ll.install_io_manager(fallback=True):
        print("INSTALLED FALLBACK", trio.run(which))
print("COUNT", len(w), [str(x.message)[:30] for x in w])
""", refused)
    assert "REFUSED\nAFTER epoll" in out, out
    assert "INSTALLED REFUSED True\nAFTER INSTALL epoll" in out, out
    assert "INSTALLED FALLBACK epoll\nCOUNT 1" in out, out


def _eperm(what: str) -> OSError:
    return kernel_error(-errno.EPERM, what)


@pytest.fixture(params=SYSCALLS)
def refused(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make one io_uring syscall fail with EPERM for every ring of this process."""
    name: str = request.param
    if name == "setup":
        def setup(*args: Any, **kwargs: Any) -> None:
            raise _plain_setup_refusal()
        monkeypatch.setattr(Ring, "__init__", setup)
        monkeypatch.setattr(Ring, "__del__", lambda self: None)
    elif name == "register":
        def register(self: Ring, fd: int) -> None:
            raise _eperm("IORING_REGISTER_EVENTFD")
        monkeypatch.setattr(Ring, "register_eventfd", register)
    else:
        def submit(self: Ring) -> int:
            raise _eperm("io_uring_enter")
        monkeypatch.setattr(Ring, "submit", submit)
    yield name


def _plain_setup_refusal() -> trio_uring.UringUnavailable:
    from trio_uring._core._errors import setup_error  # noqa: PLC0415

    return setup_error(-errno.EPERM)


def test_manager_refusal_is_unavailable_and_leaks_nothing(refused: str) -> None:
    trio.run(trio.sleep, 0)
    before = _open_fds()
    for _ in range(20):
        with pytest.raises(trio_uring.UringUnavailable, match=f"io_uring_{refused}") as info:
            UringIOManager()
        assert REMEDY in str(info.value) and info.value.errno == errno.EPERM
        with pytest.raises(trio_uring.UringUnavailable):
            trio_uring.run(trio.sleep, 0)
    assert _open_fds() == before
    assert trio.run(_backend) == "epoll"


async def _backend() -> str:
    await trio.sleep(0)
    return trio_uring.backend()


def test_install_io_manager_refused(refused: str) -> None:
    with ll.install_io_manager(), pytest.raises(trio_uring.UringUnavailable, match=f"io_uring_{refused}"):
        trio.run(_backend)
    assert trio.run(_backend) == "epoll"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with ll.install_io_manager(fallback=True):
            assert trio.run(_backend) == "epoll"
            assert trio.run(_backend) == "epoll"
    assert len(w) == 2 and all(x.category is RuntimeWarning for x in w)  # one per run
    assert "io_uring is unavailable, running on stock trio" in str(w[0].message)


def test_plain_driver_refused_is_cached_per_run(refused: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = 0

    def counting(*args: Any, **kwargs: Any) -> Ring:
        nonlocal attempts
        attempts += 1
        return Ring(*args, **kwargs)

    monkeypatch.setattr(_plain, "Ring", counting)

    runs = 0

    async def main() -> None:
        nonlocal runs
        runs += 1
        errors = []
        for _ in range(3):
            with pytest.raises(trio_uring.UringUnavailable, match=f"io_uring_{refused}") as info:
                _plain.current_driver()
            errors.append(info.value)
        assert attempts == runs
        assert errors[0] is not errors[1]  # a fresh exception each time: no traceback grows
        assert _plain.existing_driver() is None
        with pytest.warns(RuntimeWarning, match=UNAVAILABLE) as w:
            assert _plain.driver_or_none() is None
            assert _plain.driver_or_none() is None
        assert len(w) == 1

    before = _open_fds()
    for _ in range(3):  # the cache is per run: each run tries once
        trio.run(main)
        assert attempts == runs
    assert _open_fds() == before


async def test_plain_driver_is_used_when_available() -> None:
    d = _plain.driver_or_none()
    assert d is not None and d is _plain.current_driver() and _plain.existing_driver() is d


@pytest.mark.parametrize("bad", [2**32, -1, 1_000_001, True, False, 1.5, "50", None])
def test_coalesce_usec_is_validated(bad: Any, no_fd_leak: None) -> None:
    with pytest.raises(ValueError, match=r"coalesce_usec must be an int between 0 and 1000000"):
        UringIOManager(coalesce_usec=bad)
    for fallback in (False, True):
        with pytest.raises(ValueError, match=r"between 0 and 1000000"):
            trio_uring.run(trio.sleep, 0, coalesce_usec=bad, fallback=fallback)


@pytest.mark.parametrize("good", [0, 1, 50, 1_000_000])
def test_coalesce_usec_in_range_runs(good: int) -> None:
    assert trio_uring.run(_backend, coalesce_usec=good) == "io_uring"
