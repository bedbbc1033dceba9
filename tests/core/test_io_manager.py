"""UringIOManager under trio_uring.run: trio's contract for get_events, readiness of any fd,
threads, signals, subprocesses, clocks, guest mode, version pin, fallback, leaks."""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
import trio_uring._core._run as tu_run
from tests._subproc import run_python
from trio_uring import lowlevel as ll
from trio_uring._core import _compat, _io_manager


def stats() -> Any:
    return trio.lowlevel.current_statistics().io_statistics


def test_backend_and_statistics() -> None:
    async def main() -> None:
        assert trio_uring.backend() == "io_uring"
        a, b = trio.socket.socketpair()
        with a, b:
            async with trio.open_nursery() as n:
                n.start_soon(trio.lowlevel.wait_readable, a)
                await trio.testing.wait_all_tasks_blocked()
                s = stats()
                # 1 for us + 1 for trio's run_sync_soon task
                assert s.tasks_waiting_read == 2 and s.tasks_waiting_write == 0
                assert s.ops_in_flight >= 3 and s.enter_calls > 0
                await b.send(b"x")
        assert stats().tasks_waiting_read == 1

    async def which() -> str:
        return trio_uring.backend()

    trio_uring.run(main)
    assert trio.run(which) == "epoll"


def test_the_io_manager_is_swapped_for_one_run_only() -> None:
    original = tu_run._trio_run.TheIOManager  # type: ignore[attr-defined]

    async def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        trio_uring.run(boom)
    assert tu_run._trio_run.TheIOManager is original  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        trio_uring.run(boom, strict_exception_groups=True, no_such_kwarg=1)
    assert tu_run._trio_run.TheIOManager is original  # type: ignore[attr-defined]


def test_zero_timeout_passes_make_no_syscall() -> None:
    async def main() -> None:
        await trio.sleep(0)
        before = stats().enter_calls
        for _ in range(2000):
            await trio.lowlevel.cancel_shielded_checkpoint()
        # trio's run_sync_soon and our own wakeups may add a handful, never one per pass
        assert stats().enter_calls - before < 20

    trio_uring.run(main)


def test_busy_tasks_delay_the_kernel_by_a_bounded_number_of_passes() -> None:
    """While tasks are runnable the kernel is looked at every EVENT_INTERVAL passes, not
    every pass; a task spinning on checkpoints still sees its I/O within that many."""

    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            passes = 0
            got: list[bytes] = []

            async def spin() -> None:
                nonlocal passes
                while not got:
                    passes += 1
                    await trio.lowlevel.checkpoint()

            async def reader() -> None:
                await trio.lowlevel.wait_readable(a)
                got.append(a.recv(10))

            async with trio.open_nursery() as n:
                n.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                n.start_soon(spin)
                await trio.lowlevel.checkpoint()
                b.send(b"x")
                start = passes
            assert got == [b"x"]
            assert passes - start <= _io_manager.EVENT_INTERVAL + 2

    trio_uring.run(main)


def test_busy_and_closed_readiness_waits() -> None:
    async def main() -> None:
        a, b = trio.socket.socketpair()
        with a, b:
            async with trio.open_nursery() as n:
                n.start_soon(trio.lowlevel.wait_readable, a)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError):
                    await trio.lowlevel.wait_readable(a)
                n.cancel_scope.cancel()
            results: list[BaseException] = []

            async def waiter(fn: Callable[[Any], Any]) -> None:
                try:
                    await fn(a)
                except trio.ClosedResourceError as exc:
                    results.append(exc)

            # fill a's send buffer so a writer blocks too
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            with pytest.raises(BlockingIOError):
                while True:
                    a._sock.send(b"x" * 65536)  # type: ignore[attr-defined]
            async with trio.open_nursery() as n:
                n.start_soon(waiter, trio.lowlevel.wait_readable)
                n.start_soon(waiter, trio.lowlevel.wait_writable)
                await trio.testing.wait_all_tasks_blocked()
                assert stats().tasks_waiting_write == 1
                trio.lowlevel.notify_closing(a)
            assert len(results) == 2

    trio_uring.run(main)


def test_wait_writable_does_not_spin_on_a_half_closed_full_socket() -> None:
    # POLL_ADD(POLLOUT) would complete with POLLRDHUP at once here, forever.
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            with pytest.raises(BlockingIOError):
                while True:
                    a.send(b"x" * 65536)
            b.shutdown(socket.SHUT_WR)
            before = stats().enter_calls
            with trio.move_on_after(0.3) as cs:
                await trio.lowlevel.wait_writable(a)
            assert cs.cancelled_caught
            assert stats().enter_calls - before < 10

    trio_uring.run(main)


def test_threads_signals_and_subprocesses() -> None:
    async def main() -> None:
        assert await trio.to_thread.run_sync(lambda: 42) == 42
        token = trio.lowlevel.current_trio_token()
        t0 = time.monotonic()

        def from_thread() -> int:
            time.sleep(0.05)
            return trio.from_thread.run_sync(lambda: 7, trio_token=token)

        assert await trio.to_thread.run_sync(from_thread) == 7
        assert time.monotonic() - t0 < 5
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            async for signum in signals:
                assert signum == signal.SIGUSR1
                break
        proc = await trio.run_process(["sh", "-c", "echo hi"], capture_stdout=True)
        assert proc.stdout == b"hi\n"

    trio_uring.run(main)


def test_keyboard_interrupt_reaches_the_main_task() -> None:
    async def main() -> None:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        await trio.sleep(10)

    # a process started in the background may inherit SIGINT as ignored: Python's own handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            trio_uring.run(main)
        assert time.monotonic() - t0 < 5
    finally:
        signal.signal(signal.SIGINT, previous)


def test_mock_clock_autojump_and_wait_all_tasks_blocked() -> None:
    async def main() -> None:
        t0 = trio.current_time()
        await trio.sleep(3600)
        assert trio.current_time() - t0 == pytest.approx(3600)
        done = []

        async def worker() -> None:
            await ll.nop()
            done.append(1)

        async with trio.open_nursery() as n:
            n.start_soon(worker)
            await trio.testing.wait_all_tasks_blocked()
            assert done == [1]

    t = time.monotonic()
    trio_uring.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert time.monotonic() - t < 5


def test_guest_mode_on_uring_io_manager() -> None:
    # A minimal host loop: callbacks from any thread go through a queue.
    todo: queue.Queue[Callable[[], Any]] = queue.Queue()
    result: list[Any] = []
    foreign_waits = []
    orig = _io_manager.UringIOManager._wait_from_foreign_thread

    def counting(self: _io_manager.UringIOManager, timeout: float) -> Any:
        foreign_waits.append(timeout)
        return orig(self, timeout)

    async def main() -> str:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            buf = bytearray(8)
            async with trio.open_nursery() as n:

                async def later() -> None:
                    await trio.sleep(0.05)
                    b.send(b"guest")

                n.start_soon(later)
                got = await ll.recv_into(a, buf)
        assert trio_uring.backend() == "io_uring"
        return bytes(buf[:got]).decode()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_io_manager.UringIOManager, "_wait_from_foreign_thread", counting)
        with ll.install_io_manager():
            trio.lowlevel.start_guest_run(
                main,
                run_sync_soon_threadsafe=todo.put,
                done_callback=result.append,
                host_uses_signal_set_wakeup_fd=False,
            )
        while not result:
            todo.get(timeout=10)()
    assert result[0].unwrap() == "guest"
    assert foreign_waits, "the worker-thread wait path was not used"


def test_trio_older_than_the_tested_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    (major, minor), _newest = _compat.TESTED_TRIO
    for version in (f"{major}.{minor - 1}.0", "0.1.0"):
        monkeypatch.setattr(trio, "__version__", version)
        with pytest.raises(RuntimeError, match=rf"needs trio >= {major}\.{minor}; this is trio {version}"):
            trio_uring.run(trio.sleep, 0)


def test_trio_newer_than_the_tested_range_warns_once_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compat, "_warned", set())
    _oldest, (major, minor) = _compat.TESTED_TRIO
    for version in (f"{major}.{minor + 1}.0", f"{major + 1}.0.0"):
        monkeypatch.setattr(trio, "__version__", version)
        with pytest.warns(RuntimeWarning, match=f"this is trio {version}, running anyway"):
            trio_uring.run(trio.sleep, 0)
        trio_uring.run(trio.sleep, 0)  # once per version: no second warning (filterwarnings=error)
        with trio_uring.lowlevel.install_io_manager():
            pass
    _compat._warned.clear()
    with pytest.warns(RuntimeWarning, match="running anyway"), trio_uring.lowlevel.install_io_manager():
        trio.run(trio.sleep, 0)


def test_no_fds_left_after_runs(no_fd_leak: None) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            with trio.move_on_after(0.01):
                await ll.recv_into(a, bytearray(4))
            async with trio.open_nursery() as n:
                n.start_soon(trio.lowlevel.wait_readable, a)
                n.start_soon(trio.lowlevel.wait_writable, b)
                await trio.testing.wait_all_tasks_blocked()
                n.cancel_scope.cancel()

    for _ in range(3):
        trio_uring.run(main)
        trio.run(main)


def test_fallback_when_io_uring_is_blocked() -> None:
    res = run_python(
        """
        import warnings, trio, trio_uring
        async def which():
            return trio_uring.backend()
        try:
            trio_uring.run(trio.sleep, 0)
        except trio_uring.UringUnavailable as exc:
            print("REFUSED", exc.errno)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print("BACKEND", trio_uring.run(which, fallback=True))
            print("WARNED", [str(x.message)[:40] for x in w])
    """,
        seccomp_errno=1,
    )
    assert res.returncode == 0, res.stderr
    assert "REFUSED 1" in res.stdout
    assert "BACKEND epoll" in res.stdout
    assert "io_uring is unavailable" in res.stdout
