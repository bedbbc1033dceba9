"""``serve_tcp_workers``: one process per core, each with its own ring and listener.

trio is one thread; a machine has many cores. The supervisor (the caller's trio run; it
needs no ring of its own) validates everything, creates one ``SO_REUSEPORT`` listening
socket per worker and address, optionally attaches the RX-queue steering program
(``_steering.py``), and only then starts the workers: fresh interpreters (``_worker.py``),
never forks, each running ``trio_uring.run`` with its own ring, pinned to a CPU if asked.

The supervisor keeps its copies of the listeners for the pool's lifetime. That is what makes
the rest simple and safe: the port (``port=0`` too) is known before any worker starts; a
foreign listener on the port is found before any worker starts; the reuseport group's order
(which the steering program indexes) never changes; a crashed worker's queued connections
wait in its accept queue for its replacement instead of being reset; and nothing listens
once the supervisor is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as _errno
import functools
import inspect
import json
import logging
import math
import os
import pickle
import signal
import socket as _stdlib
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .._core._errors import UringUnavailable, setup_error
from . import _worker
from ._steering import attach_steering, rx_queue_count

__all__ = ["WorkerPool", "WorkerStartError", "WorkersFailed", "ZcConfig", "serve_tcp_workers"]

_log = logging.getLogger("trio_uring.workers")

#: Seconds a worker may take from spawn to ``ready`` (interpreter start, imports, ring setup).
STARTUP_TIMEOUT = 60.0
#: Extra seconds the supervisor waits past ``grace`` before it kills a worker that has not ended.
KILL_AFTER_GRACE = 5.0
#: Restart delays: doubling from the first to the last while a worker keeps failing; a worker
#: that ran this long (s) counts as healthy again.
BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_AFTER = 0.1, 10.0, 30.0
#: Failure lines a pool keeps (a worker crash-looping for days must not grow memory).
MAX_FAILURES_KEPT = 100
_WORKER_CMD = "from trio_uring._net._worker import main; main()"


@dataclasses.dataclass(frozen=True)
class ZcConfig:
    """Zero-copy receive for a worker pool: worker *i* owns RX queue ``queues[i]`` of ``interface``.

    In worker *i*, ``open_zc_receiver(stream)`` without ``interface=``/``queue=`` registers
    on that queue, and the kernel hands each new connection to the worker that owns the queue
    its packets arrive on (an RX-queue reuseport program; ``WorkerPool.steering`` says if it
    is in use). Flows still have to be steered to those queues on the NIC:
    ``python -m trio_uring doctor --interface IF --workers N`` prints the commands.
    """

    interface: str
    queues: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.interface, str) or not self.interface:
            raise ValueError(
                f"ZcConfig.interface must be an interface name (see `ip link`), got {self.interface!r}"
            )
        queues = tuple(self.queues)
        if not queues or any(not isinstance(q, int) or isinstance(q, bool) or q < 0 for q in queues):
            raise ValueError(
                f"ZcConfig.queues must be RX queue indexes (ints >= 0), one per worker, got {self.queues!r}"
            )
        if len(set(queues)) != len(queues):
            raise ValueError(f"ZcConfig.queues must be distinct (one worker per queue), got {queues!r}")
        object.__setattr__(self, "queues", queues)


class WorkerStartError(RuntimeError):
    """A worker could not start; every other worker was stopped and the port released."""


class WorkersFailed(RuntimeError):
    """The pool stopped, but workers failed while it ran (``failures`` says which, how)."""

    def __init__(self, failures: Sequence[str], count: int | None = None) -> None:
        self.failures = list(failures)
        #: every failure, also those no longer listed (a long crash loop keeps the last ones)
        self.count = len(self.failures) if count is None else count
        shown = "; ".join(self.failures[-10:])
        more = f" (the last 10 of {self.count})" if self.count > 10 else ""
        super().__init__(f"{self.count} worker failure(s){more}: {shown}")


class WorkerPool:
    """What ``await nursery.start(serve_tcp_workers, ...)`` returns once every worker is ready."""

    def __init__(
        self, port: int, addresses: list[Any], workers: int, steering: str, cpus: list[int | None]
    ) -> None:
        #: the bound port (the one chosen by the kernel for ``port=0``)
        self.port = port
        #: every address listened on (``getsockname()`` of each listener)
        self.addresses = addresses
        self.workers = workers
        #: ``"rx-queue"`` or ``"hash"`` (our program: by RX queue, or by flow hash among the pool's
        #: own sockets), or ``"kernel hash (why)"`` where the program could not be attached
        self.steering = steering
        #: CPU each worker is pinned to (None: not pinned)
        self.cpus = cpus
        #: the IO backend each worker reported (``"io_uring"``, or ``"epoll"`` after a fallback)
        self.backends: list[str | None] = [None] * workers
        #: one line per worker failure (crash, failed restart, killed at shutdown); the last
        #: ``MAX_FAILURES_KEPT`` of ``failure_count``
        self.failures: list[str] = []
        self.failure_count = 0
        self.restarts = 0
        self._procs: list[_Child | None] = [None] * workers
        self._stop = trio.Event()
        self._hurry: Callable[[], None] = lambda: None

    def _failed(self, what: str) -> None:
        self.failure_count += 1
        self.failures.append(what)
        del self.failures[:-MAX_FAILURES_KEPT]

    @property
    def pids(self) -> list[int | None]:
        """Each worker's current pid (None while it is being restarted)."""
        return [p.pid if p is not None and p.returncode is None else None for p in self._procs]

    def stop(self) -> None:
        """Begin a graceful stop: workers stop accepting, connections get ``grace`` seconds.

        ``serve_tcp_workers`` returns (or raises :class:`WorkersFailed`) once all are gone.
        A second call cancels the connections at once.
        """
        if self._stop.is_set():
            self._hurry()
        self._stop.set()


class _Child:
    """A worker process, started from the supervisor's own thread.

    Not ``trio.lowlevel.open_process``: that forks from one of trio's cached threads, and
    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, which a cached
    thread does after 10 idle seconds. Spawning is one ``vfork``+``exec``: short enough to
    do inline. Exit is awaited on a pidfd (Linux >= 5.3), else polled.
    """

    def __init__(self, argv: list[str], pass_fds: tuple[int, ...]) -> None:
        self._popen = subprocess.Popen(argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL)
        self.pid = self._popen.pid
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        while self._popen.poll() is None:
            if self._pidfd is not None:
                await trio.lowlevel.wait_readable(self._pidfd)
            else:
                await trio.sleep(0.05)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        await trio.lowlevel.checkpoint()
        return self._popen.returncode

    def send_signal(self, sig: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _check_handler(handler: Any) -> bytes:
    """The pickled handler; TypeError (naming the fix) if workers could not call it."""
    target = handler
    while isinstance(target, functools.partial):
        target = target.func
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
    if not is_async:
        raise TypeError(
            f"handler must be an async function (async def handler(stream): ...), got {handler!r}: each "
            "worker awaits handler(stream) for every connection"
        )
    main = sys.modules.get("__main__")
    if getattr(target, "__module__", None) == "__main__" and getattr(main, "__file__", None) is None:
        raise TypeError(
            f"handler {handler!r} is defined in __main__ of an interactive session or `python -c`, "
            "which a new worker process cannot import: define it in a module (or a script file)"
        )
    try:
        return pickle.dumps(handler)
    except Exception as exc:
        raise TypeError(
            f"handler {handler!r} cannot be sent to the worker processes ({exc}): it must be importable by "
            "name, i.e. a module-level async function (or a functools.partial of one with picklable "
            "arguments); lambdas, closures and nested functions are not. A handler in a script is imported "
            "by re-running the script as __mp_main__ in each worker, so guard its start with "
            "`if __name__ == '__main__':`"
        ) from exc


def _cpus(cpu_affinity: bool | Sequence[int], workers: int) -> list[int | None]:
    if cpu_affinity is False:
        return [None] * workers
    usable = sorted(os.sched_getaffinity(0))
    if cpu_affinity is True:
        chosen = usable
    else:
        chosen = list(cpu_affinity)
        bad = [c for c in chosen if not isinstance(c, int) or c not in usable]
        if not chosen or bad:
            raise ValueError(
                f"cpu_affinity must be True, False or CPUs this process may use ({usable}), "
                f"got {cpu_affinity!r}"
            )
    return [chosen[i % len(chosen)] for i in range(workers)]


def _check_zc(zc: ZcConfig, workers: int) -> None:
    if len(zc.queues) != workers:
        raise ValueError(
            f"ZcConfig.queues names {len(zc.queues)} queue(s) for {workers} workers: one queue per worker"
        )
    rxq = rx_queue_count(zc.interface)
    if rxq is None:
        raise ValueError(
            f"interface {zc.interface!r} does not exist in this network namespace (see `ip link`)"
        )
    missing = [q for q in zc.queues if q >= rxq]
    if missing:
        raise ValueError(
            f"interface {zc.interface} has {rxq} rx queue(s), so queue(s) {missing} do not exist: give "
            f"it more (`ethtool -L {zc.interface} combined {max(zc.queues) + 1}`) or use fewer workers; "
            f"`python -m trio_uring doctor --interface {zc.interface} --workers {workers}` checks the "
            "whole setup"
        )


def _io_uring_refused() -> UringUnavailable | None:
    """Why this process (and so its children) cannot set up a ring, or None. Cheap: no ring kept."""
    from .._native import lib  # noqa: PLC0415

    ret = lib.tu_try_setup(0)
    return setup_error(ret) if ret < 0 else None


def _bind_listeners(
    host: str | bytes | None, port: int, workers: int, backlog: int | None
) -> tuple[list[list[_stdlib.socket]], int]:
    """``groups[a][i]``: worker *i*'s listener on address *a*, all on one port (also for port 0).

    Each address is first bound by a socket *without* ``SO_REUSEPORT``: that fails if
    anything already listens there, even a reuseport group another program made, which the
    worker sockets would otherwise silently join. It stays bound (not listening; both sides
    have ``SO_REUSEADDR``) until the group listens, then closes.
    """
    infos = _stdlib.getaddrinfo(host, port, _stdlib.AF_UNSPEC, _stdlib.SOCK_STREAM, 0, _stdlib.AI_PASSIVE)
    addrs: list[tuple[Any, Any]] = []
    for family, _, _, _, sockaddr in infos:
        if (family, sockaddr) not in addrs:
            addrs.append((family, sockaddr))
    backlog = 0xFFFF if backlog is None else backlog  # as trio: the kernel caps it at somaxconn
    groups: list[list[_stdlib.socket]] = []
    reservations: list[_stdlib.socket] = []
    chosen = port
    try:
        for family, sockaddr in addrs:
            where = (sockaddr[0], chosen, *sockaddr[2:])
            probe = _stdlib.socket(family, _stdlib.SOCK_STREAM)
            reservations.append(probe)
            probe.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_REUSEADDR, 1)
            if family == _stdlib.AF_INET6:
                probe.setsockopt(_stdlib.IPPROTO_IPV6, _stdlib.IPV6_V6ONLY, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno != _errno.EADDRINUSE:
                    raise
                raise OSError(
                    exc.errno,
                    f"port {chosen} on {sockaddr[0]} is already in use (`ss -ltnp 'sport = :{chosen}'` shows "
                    "by whom): stop that program or choose another port; no worker was started",
                ) from None
            chosen = probe.getsockname()[1]
            group: list[_stdlib.socket] = []
            groups.append(group)
            for _ in range(workers):
                s = _stdlib.socket(family, _stdlib.SOCK_STREAM)
                group.append(s)
                s.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_REUSEADDR, 1)
                s.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_REUSEPORT, 1)
                if family == _stdlib.AF_INET6:
                    s.setsockopt(_stdlib.IPPROTO_IPV6, _stdlib.IPV6_V6ONLY, 1)
                s.bind((sockaddr[0], chosen, *sockaddr[2:]))
            for s in group:  # joining the reuseport group in this order: index i is worker i
                s.listen(backlog)
    except BaseException:
        for group in groups:
            for s in group:
                s.close()
        raise
    finally:
        for r in reservations:
            r.close()
    return groups, chosen


def _steer(groups: list[list[_stdlib.socket]], queues: Sequence[int] | None, requested: str | None) -> str:
    """Attach the steering program to each address's group; the steering in use, in words."""
    try:
        for group in groups:
            attach_steering(group[0], len(group), queues)
    except OSError as exc:
        if requested == "rx-queue":
            raise OSError(
                exc.errno,
                f"steering='rx-queue': the RX-queue reuseport program could not be attached ({exc}); "
                "pass steering=None to fall back to the kernel's hash; no worker was started",
            ) from exc
        why = f"the steering program could not be attached: {exc}"
        if queues is not None:
            _log.warning("trio_uring workers: connections are spread by hash, not by RX queue (%s)", why)
        return f"kernel hash ({why})"
    return "rx-queue" if queues is not None else "hash"


class _Pool:
    def __init__(
        self,
        handler_bytes: bytes,
        groups: list[list[_stdlib.socket]],
        pool: WorkerPool,
        *,
        zc: ZcConfig | None,
        grace: float,
        fallback: bool,
        quiet_fallback: bool,
    ) -> None:
        self.handler = handler_bytes
        self.groups = groups
        self.pool = pool
        self.zc = zc
        self.grace = grace
        self.fallback = fallback
        self.quiet_fallback = quiet_fallback
        self.ctls: list[_stdlib.socket | None] = [None] * pool.workers
        self.ready = [False] * pool.workers

    # ---- one worker -------------------------------------------------------------------------
    async def launch(self, i: int) -> _Child:
        import multiprocessing.spawn  # noqa: PLC0415

        fds = [group[i].fileno() for group in self.groups]
        prep = multiprocessing.spawn.get_preparation_data(f"trio_uring-worker-{i}")
        prep.pop("authkey", None)  # multiprocessing's secret stays here: workers make no connections back
        ours, theirs = _stdlib.socketpair()
        cfg = {
            "parent": os.getpid(),
            "index": i,
            "fds": fds,
            "cpu": self.pool.cpus[i],
            "grace": self.grace,
            "fallback": self.fallback,
            "quiet_fallback": self.quiet_fallback,
            "zc": (self.zc.interface, self.zc.queues[i]) if self.zc is not None else None,
            "handler": self.handler,
            "prep": prep,
        }
        flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
        try:
            proc = _Child(
                [sys.executable, *flags, "-c", _WORKER_CMD, str(theirs.fileno())], (theirs.fileno(), *fds)
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.ctls[i] = ours
        self.ready[i] = False
        self.pool._procs[i] = proc
        data = pickle.dumps(cfg)
        with memoryview(struct.pack("!I", len(data)) + data) as view:
            sent = 0
            try:
                while sent < len(view):
                    try:
                        sent += ours.send(view[sent:])
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(ours)
            except OSError:
                pass  # it died at once: its exit status tells why
        return proc

    async def wait_ready(self, i: int, proc: _Child) -> None:
        """Until worker ``i`` says ready; WorkerStartError with its reason if it cannot."""
        ctl = self.ctls[i]
        assert ctl is not None
        buf = b""
        with trio.move_on_after(STARTUP_TIMEOUT) as timeout:
            while b"\n" not in buf:
                try:
                    chunk = ctl.recv(4096)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(ctl)
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                buf += chunk
        if b"\n" in buf:
            msg = json.loads(buf.split(b"\n", 1)[0])
            if msg.get("ready"):
                self.pool.backends[i] = msg.get("backend")
                self.ready[i] = True
                return
            reason = msg.get("error", "no reason given")
        elif timeout.cancelled_caught:
            reason = f"not ready after {STARTUP_TIMEOUT:g} s"
        else:
            with trio.move_on_after(5):
                await proc.wait()
            reason = (
                _describe(proc.returncode) if proc.returncode is not None else "closed its control socket"
            )
        raise WorkerStartError(f"worker {i} (pid {proc.pid}) could not start: {reason}")

    def _forget(self, i: int) -> None:
        ctl = self.ctls[i]
        if ctl is not None:
            trio.lowlevel.notify_closing(ctl)
            ctl.close()
            self.ctls[i] = None

    def _tell(self, i: int, word: bytes) -> None:
        """``stop`` or ``hurry`` to worker ``i``: on its control socket once it is serving
        (a SIGTERM could also come from elsewhere, e.g. a service manager signalling the whole
        group: the worker counts signals, not words), else by SIGTERM."""
        proc, ctl = self.pool._procs[i], self.ctls[i]
        if proc is None or proc.returncode is not None:
            return
        if self.ready[i] and ctl is not None:
            try:
                ctl.send(word + b"\n")
            except OSError:
                pass
            else:
                return
        proc.send_signal(signal.SIGTERM)

    # ---- the pool ---------------------------------------------------------------------------
    async def start(self) -> bool:
        """Start every worker and wait until all are ready (False: stopped meanwhile).

        On a worker's failure raises its error; the caller stops the others.
        """
        errors: list[BaseException] = []

        async def stopped(scope: trio.CancelScope) -> None:
            await self.pool._stop.wait()
            scope.cancel()

        async def one(i: int, starting: trio.CancelScope) -> None:
            try:
                proc = await self.launch(i)
                await self.wait_ready(i, proc)
            except (WorkerStartError, OSError) as exc:
                errors.append(exc)
                starting.cancel()  # no need to wait for the others: they are stopped next

        async with trio.open_nursery() as waiting:
            waiting.start_soon(stopped, waiting.cancel_scope)
            async with trio.open_nursery() as nursery:
                for i in range(self.pool.workers):
                    nursery.start_soon(one, i, nursery.cancel_scope)
            waiting.cancel_scope.cancel()
        if errors:
            raise errors[0]
        return not self.pool._stop.is_set()

    async def supervise(self) -> None:
        """Restart workers that end (with backoff) until the pool is asked to stop."""
        async with trio.open_nursery() as nursery:
            for i in range(self.pool.workers):
                nursery.start_soon(self._watch, i)
            await self.pool._stop.wait()
            nursery.cancel_scope.cancel()

    async def _watch(self, i: int) -> None:
        failures_in_a_row = 0
        while True:
            proc = self.pool._procs[i]
            assert proc is not None
            started = trio.current_time()
            await proc.wait()
            self._forget(i)
            returncode = proc.returncode
            assert returncode is not None
            what = f"worker {i} (pid {proc.pid}) {_describe(returncode)}"
            if returncode != 0:  # 0: it was told to stop (a SIGTERM of its own); not a crash
                self.pool._failed(what)
            failures_in_a_row = 1 if trio.current_time() - started > HEALTHY_AFTER else failures_in_a_row + 1
            while True:
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures_in_a_row - 1))
                _log.warning("trio_uring workers: %s; restarting it in %.1f s", what, delay)
                await trio.sleep(delay)
                self.pool.restarts += 1
                try:
                    proc = await self.launch(i)
                except OSError as exc:  # out of processes, memory or fds: try again later
                    what = f"worker {i} could not be started again: {exc}"
                    self.pool._failed(what)
                    failures_in_a_row += 1
                    continue
                try:
                    await self.wait_ready(i, proc)
                except WorkerStartError as exc:
                    what = str(exc)
                    self.pool._failed(what)
                    failures_in_a_row += 1
                    with trio.move_on_after(KILL_AFTER_GRACE):
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                    self._forget(i)
                    continue
                break

    def hurry(self) -> None:
        """Second stop request: workers cancel their connections now."""
        for i in range(self.pool.workers):
            self._tell(i, b"hurry")

    async def shutdown(self) -> None:
        """Stop every worker: ``stop``, ``grace`` (+5 s) to finish, then SIGKILL. Never raises."""
        self.pool._hurry = self.hurry
        for group in self.groups:  # the workers' copies are the last: closing them ends the listeners
            for s in group:
                s.close()
        live = [(i, p) for i, p in enumerate(self.pool._procs) if p is not None and p.returncode is None]
        for i, _ in live:
            self._tell(i, b"stop")
        with trio.move_on_after(self.grace + KILL_AFTER_GRACE):
            for _, proc in live:
                await proc.wait()
        for i, proc in live:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
                self.pool._failed(
                    f"worker {i} (pid {proc.pid}) did not stop within "
                    f"{self.grace + KILL_AFTER_GRACE:g} s: killed"
                )
            elif proc.returncode not in (0, -signal.SIGTERM):
                self.pool._failed(f"worker {i} (pid {proc.pid}) {_describe(proc.returncode)} while stopping")
        for i in range(self.pool.workers):
            self._forget(i)


def _spent(signum: int, frame: Any) -> None:
    """A signal that arrived after the pool had already been told to stop at once."""


async def _forward_signals(pool: WorkerPool, signals: Any) -> None:
    async for signum in signals:
        _log.warning(
            "trio_uring workers: %s: %s",
            signal.Signals(signum).name,
            "stopping gracefully (again to stop at once)" if not pool._stop.is_set() else "stopping at once",
        )
        pool.stop()


async def serve_tcp_workers(
    handler: Callable[[Any], Awaitable[object]],
    port: int,
    *,
    host: str | bytes | None = None,
    workers: int | None = None,
    cpu_affinity: bool | Sequence[int] = True,
    zc: ZcConfig | None = None,
    steering: str | None = None,
    grace: float = 10.0,
    backlog: int | None = None,
    fallback: bool = False,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[WorkerPool] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``port`` from ``workers`` processes, each its own ``trio_uring.run``.

    Call it from any trio run (the supervisor needs no io_uring itself)::

        pool = await nursery.start(trio_uring.serve_tcp_workers, handler, 0)
        pool.port          # bound before any worker started (port=0 works), all workers ready

    or, as a whole program, ``trio.run(trio_uring.serve_tcp_workers, handler, 8000)``
    (``python -m trio_uring serve module:handler --port 8000`` does that).

    Each worker awaits ``handler(stream)`` per connection (a ``UringSocketStream``, closed
    afterwards) as with ``serve_tcp``; an exception from it ends that worker (trio's rule:
    nothing is swallowed), and the worker is restarted. The handler must be **importable
    by name**: a module-level ``async def`` (or a ``functools.partial`` of one with
    picklable arguments), since each worker is a new interpreter that imports it; in a
    script, guard the start with ``if __name__ == "__main__":``, as for multiprocessing.

    - ``workers``: processes (default: the CPUs this process may use, or ``len(zc.queues)``);
      ``cpu_affinity``: pin worker *i* to the *i*-th usable CPU (True), to ``cpu_affinity[i]``
      (a list), or not at all (False).
    - ``zc``: a :class:`ZcConfig`; worker *i* owns RX queue ``zc.queues[i]``: its
      ``open_zc_receiver`` calls default to that queue, and connections are steered to
      the worker owning their RX queue. ``steering``: ``"rx-queue"`` (needs the program to
      attach, else raises), ``"hash"`` (the kernel's reuseport hash), or None: rx-queue
      with ``zc``, falling back to hash with a warning; ``WorkerPool.steering`` says which.
      ``"rx-queue"`` without ``zc`` maps worker *i* to queue *i*.
    - Stopping: SIGINT or SIGTERM (``handle_signals``; main thread only), ``pool.stop()``,
      or cancelling the caller: workers stop accepting, the listeners close, connections get
      ``grace`` seconds, then they are cancelled; a second signal (or ``stop()``) cancels
      them at once. A worker still alive ``grace`` + 5 s later is killed. It returns after
      a signal or ``stop()``, or raises :class:`WorkersFailed` if any worker crashed, failed
      to restart or had to be killed while it ran. Workers die with the supervisor
      (``PR_SET_PDEATHSIG``), and the port is free once they are gone.
    - A crashed worker is logged (logger ``trio_uring.workers``) and restarted after a delay
      doubling from 0.1 s to 10 s while it keeps failing; its listener stays open meanwhile,
      so connections made in between wait for the new worker.
    - ``fallback``: where io_uring is refused, workers run on stock trio (one warning)
      instead of failing to start.

    Everything is checked before any worker starts (``ValueError``/``TypeError``, and
    ``OSError`` for a port in use); a worker that cannot start raises
    :class:`WorkerStartError` after the others were stopped.
    """
    if _worker.bootstrapping:
        raise RuntimeError(
            "serve_tcp_workers was called while a worker process imported the main module to find "
            "its handler: the script starts the server at import time. Start it only under "
            "`if __name__ == '__main__':` (the same rule as for multiprocessing)"
        )
    if workers is None:
        workers = len(zc.queues) if zc is not None else len(os.sched_getaffinity(0))
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an int >= 1 (the number of worker processes), got {workers!r}")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535 (0: any free port), got {port!r}")
    if not isinstance(grace, (int, float)) or isinstance(grace, bool) or not 0 <= grace < math.inf:
        raise ValueError(f"grace must be a number of seconds >= 0, got {grace!r}")
    if steering not in (None, "rx-queue", "hash"):
        raise ValueError(f"steering must be 'rx-queue', 'hash' or None (automatic), got {steering!r}")
    if zc is not None:
        if not isinstance(zc, ZcConfig):
            raise TypeError(f"zc must be a trio_uring.ZcConfig, got {type(zc).__name__}")
        _check_zc(zc, workers)
    handler_bytes = _check_handler(handler)
    cpus = _cpus(cpu_affinity, workers)
    refused = _io_uring_refused()
    if refused is not None and not fallback:
        raise refused.fresh()
    if refused is not None:
        warnings.warn(
            f"io_uring is unavailable, workers run on stock trio: {refused}", RuntimeWarning, stacklevel=2
        )
    queues: Sequence[int] | None = None
    if steering != "hash":
        queues = zc.queues if zc is not None else (range(workers) if steering == "rx-queue" else None)
    groups, bound = _bind_listeners(host, port, workers, backlog)
    try:
        mode = _steer(groups, queues, steering)
    except BaseException:
        for group in groups:
            for s in group:
                s.close()
        raise
    pool = WorkerPool(bound, [group[0].getsockname() for group in groups], workers, mode, cpus)
    sup = _Pool(
        handler_bytes, groups, pool, zc=zc, grace=grace, fallback=fallback, quiet_fallback=refused is not None
    )
    watch_signals = handle_signals and threading.current_thread() is threading.main_thread()
    try:
        with contextlib.ExitStack() as stack:
            signals = None
            if watch_signals:
                # Signals that arrive while the workers stop are spent (the stop and the hurry
                # are all they can ask for); trio would re-raise them when its receiver closes,
                # killing the supervisor after a clean stop. So they land in a no-op handler,
                # and the caller's handlers come back only after that.
                for signum in (signal.SIGINT, signal.SIGTERM):
                    stack.callback(signal.signal, signum, signal.getsignal(signum))
                    signal.signal(signum, _spent)
                signals = stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
            not_started: WorkerStartError | None = None
            async with trio.open_nursery() as nursery:
                if signals is not None:  # the first signal stops, the next ones hurry
                    nursery.start_soon(_forward_signals, pool, signals)
                try:
                    started = await sup.start()
                except WorkerStartError as exc:
                    not_started = exc  # raised below, not wrapped in this nursery's group
                else:
                    if started:
                        task_status.started(pool)
                        await sup.supervise()
                    else:
                        not_started = WorkerStartError("stopped before every worker was ready")
                await sup.shutdown()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await sup.shutdown()  # a no-op if done; else (cancelled, an error) done here, shielded
    if not_started is not None:
        raise not_started
    if pool.failures:
        raise WorkersFailed(pool.failures, pool.failure_count)
