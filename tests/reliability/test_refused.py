"""io_uring refused (seccomp, sysctl, a failing syscall): clear errors, clean fallback, no leaks.

Each of the three io_uring syscalls is refused in a child process by a real seccomp filter;
the same paths are also driven in-process (a patched ring) so they run fast.
"""

from __future__ import annotations

import errno
import os
import select
import socket
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


# ---- the ops of trio_uring.lowlevel on trio's readiness API -------------------------------------
async def exercise_ops() -> None:
    """Every lowlevel op, with waits, cancellation and close; io_uring must not be needed."""
    await ll.nop()
    await ll.sleep(0.001)
    with pytest.raises(ValueError):
        await ll.sleep(-1)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        assert await ll.send(a, b"hello") == 5
        buf = bytearray(16)
        assert await ll.recv_into(b, buf) == 5 and buf[:5] == b"hello"
        async with trio.open_nursery() as n:  # a receive that has to wait for data

            async def later() -> None:
                await trio.sleep(0.01)
                a.send(b"x")

            n.start_soon(later)
            assert await ll.recv_into(b, buf, 4) == 1
        # a cancelled receive has no effect: the data stays in the socket
        with trio.move_on_after(0.01) as cs:
            await ll.recv_into(b, buf)
        assert cs.cancelled_caught
        a.send(b"yz")
        with trio.CancelScope() as cs:
            cs.cancel()
            await ll.recv_into(b, buf)
        assert cs.cancelled_caught and b.recv(1) == b"y"
        assert await ll.recv_into(b, buf, flags=socket.MSG_PEEK) == 1 and b.recv(1) == b"z"
        # poll: immediate, waiting, both directions, cancelled
        assert await ll.poll(b, select.POLLOUT) & select.POLLOUT
        with trio.move_on_after(0.01) as cs:
            await ll.poll(b, select.POLLIN)
        assert cs.cancelled_caught
        async with trio.open_nursery() as n:
            n.start_soon(later)
            assert await ll.poll(b, select.POLLIN) == select.POLLIN
        assert await ll.poll(b, select.POLLIN | select.POLLOUT) == select.POLLIN | select.POLLOUT
        assert b.recv(8) == b"x"
        # a full socket: send waits until the peer drains it
        with pytest.raises(BlockingIOError):
            while True:
                a.send(b"f" * 65536)
        async with trio.open_nursery() as n:
            sent: list[int] = []

            async def sender() -> None:
                sent.append(await ll.send(a, b"tail"))

            n.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent
            while True:
                try:
                    b.recv(1 << 20)
                except BlockingIOError:
                    break
        assert sent == [4]
        await ll.shutdown(a, socket.SHUT_WR)
        while await ll.recv_into(b, buf):
            pass
    # accept and connect on loopback; the listener is blocking: the thread must not block
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c = socket.socket()
    with lst, c:
        with trio.move_on_after(0.01) as cs:
            await ll.accept(lst)
        assert cs.cancelled_caught and lst.getblocking()
        got: list[tuple[int, Any]] = []
        async with trio.open_nursery() as n:

            async def acceptor() -> None:
                got.append(await ll.accept(lst))

            n.start_soon(acceptor)
            await ll.connect(c, socket.AF_INET, lst.getsockname())
        assert c.getblocking()
        fd, addr = got[0]
        assert addr == c.getsockname() and os.get_inheritable(fd) is False
        async with trio.open_nursery() as n:  # close wakes a waiter with ClosedResourceError

            async def waiter() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await ll.recv_into(fd, bytearray(1))

            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await ll.close(fd)
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)
        # a refused connection, and a name that is not numeric (no resolving here)
        port = lst.getsockname()[1]
    with socket.socket() as c2, pytest.raises(ConnectionRefusedError):
        await ll.connect(c2, socket.AF_INET, ("127.0.0.1", port))
    with socket.socket() as c3, pytest.raises(OSError):
        await ll.connect(c3, socket.AF_INET, ("localhost", port))


# ---- refused for real, in a child process -------------------------------------------------------
@pytest.mark.parametrize("refused", SYSCALLS)
def test_run_raises_naming_the_syscall_and_remedy(refused: str) -> None:
    out = child(
        """
import trio, trio_uring
try:
    trio_uring.run(trio.sleep, 0)
except trio_uring.UringUnavailable as exc:
    print("ERRNO", exc.errno)
    print("MSG", exc)
""",
        refused,
    )
    assert "ERRNO 1" in out
    assert f"io_uring_{refused}" in out and REMEDY in out and "Docker" in out, out


@pytest.mark.parametrize("refused", SYSCALLS)
def test_run_falls_back_with_one_warning(refused: str) -> None:
    out = child(
        """
import warnings, trio, trio_uring
from trio_uring import lowlevel as ll
async def main():
    await ll.nop()
    await ll.sleep(0)
    return trio_uring.backend()
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    print("BACKEND", trio_uring.run(main, fallback=True))
print("WARNINGS", [(x.category.__name__, str(x.message)) for x in w])
print("COUNT", len(w))
""",
        refused,
    )
    assert "BACKEND epoll" in out and "COUNT 1" in out, out
    assert "RuntimeWarning" in out and "running on stock trio" in out and f"io_uring_{refused}" in out


@pytest.mark.parametrize("refused", SYSCALLS)
def test_failed_attempts_leak_no_fds(refused: str) -> None:
    out = child(
        """
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
""",
        refused,
    )
    assert "LEAKED 0" in out, out


@pytest.mark.parametrize("refused", SYSCALLS)
def test_trio_run_works_after_refusal(refused: str) -> None:
    out = child(
        """
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
""",
        refused,
    )
    assert "REFUSED\nAFTER epoll" in out, out
    assert "INSTALLED REFUSED True\nAFTER INSTALL epoll" in out, out
    assert "INSTALLED FALLBACK epoll\nCOUNT 1" in out, out


@pytest.mark.parametrize("refused", SYSCALLS)
def test_plain_run_caches_the_refusal_and_ops_use_readiness(refused: str) -> None:
    out = child(
        """
import warnings, trio, trio_uring
from trio_uring._core import _plain
from tests.reliability.test_refused import exercise_ops
attempts = 0
real_ring = _plain.Ring
def counting_ring(*args, **kwargs):
    global attempts
    attempts += 1
    return real_ring(*args, **kwargs)
_plain.Ring = counting_ring
async def main():
    for _ in range(2):
        try:
            _plain.current_driver()
        except trio_uring.UringUnavailable as exc:
            print("RAISED", type(exc).__name__, "io_uring_" in str(exc))
    print("ATTEMPTS", attempts)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert _plain.driver_or_none() is None and _plain.driver_or_none() is None
        await exercise_ops()
    print("WARNINGS", len(w), str(w[0].message)[:60])
    print("EXISTING", _plain.existing_driver())
trio.run(main)
print("ATTEMPTS AFTER", attempts)
""",
        refused,
    )
    assert out.count("RAISED UringUnavailable True") == 2, out
    assert "ATTEMPTS 1\n" in out and "ATTEMPTS AFTER 1" in out, out
    assert f"WARNINGS 1 {UNAVAILABLE}" in out, out
    assert "EXISTING None" in out, out


# ---- the same paths in-process, with the refusal simulated ---------------------------------------
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


def test_run_fallback_warns_once_and_ops_work(refused: str) -> None:
    async def main() -> str:
        await exercise_ops()
        return trio_uring.backend()

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert trio_uring.run(main, fallback=True) == "epoll"
    assert [str(x.message)[:50] for x in w] == ["io_uring is unavailable, running on stock trio: io"]
    assert w[0].category is RuntimeWarning


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


def test_install_io_manager_installs_the_class() -> None:
    """trio's own tests patch methods on ``TheIOManager``: without fallback it is the class."""
    import trio._core._run as trio_run  # noqa: PLC0415

    with ll.install_io_manager():
        assert vars(trio_run)["TheIOManager"] is UringIOManager


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


@pytest.fixture
def no_uring(monkeypatch: pytest.MonkeyPatch) -> None:
    """io_uring unavailable for the plain driver of this process's runs."""

    def refuse(*args: Any, **kwargs: Any) -> Ring:
        raise trio_uring.UringUnavailable("io_uring_setup refused (test)", errno=errno.EPERM)

    monkeypatch.setattr(_plain, "Ring", refuse)


async def test_ops_by_readiness_in_plain_run(no_uring: None) -> None:
    with pytest.warns(RuntimeWarning, match=UNAVAILABLE) as w:
        await exercise_ops()
    assert len(w) == 1


async def test_ops_by_readiness_keep_the_fds_mode(no_uring: None) -> None:
    """A default socket timeout must neither make an op wait in the thread nor change the fd."""
    a, b = socket.socketpair()
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    try:
        with a, b, pytest.warns(RuntimeWarning, match=UNAVAILABLE):
            b.setblocking(False)
            with trio.fail_after(1):
                async with trio.open_nursery() as n:

                    async def later() -> None:
                        await trio.sleep(0.01)
                        a.send(b"x")

                    n.start_soon(later)
                    assert await ll.recv_into(b, bytearray(4)) == 1  # a blocking recv would hang
            assert not b.getblocking() and os.get_blocking(a.fileno())
            assert await ll.send(a, b"y") == 1
            assert os.get_blocking(a.fileno())
    finally:
        socket.setdefaulttimeout(old)


async def test_plain_driver_is_used_when_available() -> None:
    d = _plain.driver_or_none()
    assert d is not None and d is _plain.current_driver() and _plain.existing_driver() is d


# ---- coalesce_usec is validated up front --------------------------------------------------------
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
