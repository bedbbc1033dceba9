"""``UringIOManager``: trio's IO manager protocol on io_uring (used by ``trio_uring.run``).

trio's run loop calls ``get_events(timeout)`` once per scheduler pass and then
``process_events(events)``; here that is one ``io_uring_enter`` that submits every SQE
queued during the pass and waits (or, with a zero timeout, nothing queued and no deferred
work flagged by the kernel, a userspace look at the CQ: no syscall), and one dispatch of
the reaped batch.

``wait_readable`` is a one-shot ``POLL_ADD``. ``wait_writable`` goes through an internal
epoll instance whose fd the ring polls: ``POLL_ADD`` always reports ``POLLRDHUP``, so a
``POLLOUT`` poll on a socket whose peer shut down its write side completes at once even when
the socket is not writable, and re-arming it would spin (see trio's
``test_socket_actual_streaming``). ``force_wakeup`` writes an eventfd the ring polls.

In guest mode trio may call ``get_events`` from a worker thread. The ring belongs to the
run's thread (``SINGLE_ISSUER``), so a foreign thread only waits for one of two eventfds to
become readable — the one registered with the ring (the kernel signals it on completions
and deferred work; the ring fd itself is not woken by deferred work) or the wakeup eventfd —
and leaves submitting and reaping to ``process_events``, which trio always calls on the
run's thread.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import os
import select
import threading
from threading import get_ident as _get_ident
from time import monotonic as _monotonic
from typing import Any

import attrs
import outcome
import trio
import trio._core._run as _trio_run
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

from ._errors import UringUnavailable, errno_error, refused_error
from ._ops import CANCELLED, Op, OpDriver
from ._ring import CQE_F_MORE, INTERRUPTED, Batch, Ring, run_ring_flags

__all__ = ["SEND_PATHS", "UringIOManager", "UringStatistics", "check_coalesce_usec", "check_send"]

_REAP = Batch([], [], [], None)  # a foreign-thread wait saw the ring become ready

#: Wait coalescing while bulk data streams in (see ``UringIOManager``): turned on by an
#: enter after which bulk receivers took at least this many bytes...
COALESCE_TRIGGER = 64 * 1024
#: ...for this many enters after the last such one; a wait then gathers up to this many
#: completions for its first ``coalesce_usec`` microseconds.
COALESCE_ENTERS = 8
COALESCE_NR = 16
#: While tasks are runnable, the kernel is looked at once this many task steps ran since the
#: last look, or this many seconds passed, whichever comes first (see ``get_events``).
EVENT_INTERVAL = 61
EVENT_INTERVAL_S = 0.0005
DEFAULT_COALESCE_USEC = 50
MAX_COALESCE_USEC = 1_000_000
_EPOLL_ONESHOT_OUT = select.EPOLLOUT | select.EPOLLONESHOT


def check_coalesce_usec(value: Any) -> int:
    """``coalesce_usec`` as given, if valid: the kernel takes a u32, and a wait gathering
    completions for more than a second would stall every run that streams bulk data."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COALESCE_USEC:
        raise ValueError(
            f"coalesce_usec must be an int between 0 and {MAX_COALESCE_USEC} (microseconds), got {value!r}"
        )
    return value


SEND_PATHS = ("direct", "ring")


def check_send(value: Any) -> bool:
    """True for ``send="ring"``, False for ``"direct"``; anything else is refused."""
    if value not in SEND_PATHS or not isinstance(value, str):
        raise ValueError(f"send must be 'direct' or 'ring', got {value!r}")
    return value == "ring"


def _build_error(step: str, exc: OSError) -> UringUnavailable:
    """The ``UringUnavailable`` for a syscall that failed while a manager was being built."""
    err = exc.errno or 0
    if step == "io_uring_register":
        return refused_error(step, err, "IORING_REGISTER_EVENTFD")
    if step == "io_uring_enter":
        return refused_error(step, err, "the first submission")
    return UringUnavailable(f"the io_uring IO manager could not create its {step}: {exc}", errno=err)


def _fileno(fd: int | Any) -> int:
    """trio's rule: an int, or anything with ``fileno()``; negative numbers are not fds."""
    n = fd if isinstance(fd, int) else fd.fileno()
    if not isinstance(n, int):
        raise TypeError(f"fileno() returned {type(n).__name__}, not int")
    return n


def _waitable(fd: int | Any) -> int:
    n = _fileno(fd)
    if n < 0:
        raise errno_error(errno.EBADF)
    return n


@attrs.frozen
class UringStatistics:
    """What ``trio.lowlevel.current_statistics().io_statistics`` reports under io_uring."""

    #: Tasks in ``wait_readable`` (one per fd).
    tasks_waiting_read: int
    #: Tasks in ``wait_writable`` (one per fd).
    tasks_waiting_write: int
    #: io_uring ops submitted (or queued) whose final completion has not arrived.
    ops_in_flight: int
    #: ``io_uring_enter`` calls the run's ring has made.
    enter_calls: int
    #: Waits made while coalescing was on (bulk data was streaming in).
    coalesced_waits: int = 0
    #: Always ``"io_uring"`` (stock trio's managers report ``"epoll"``, ...).
    backend: str = "io_uring"


class _PollWait(Op):
    """A task in ``wait_readable``: woken by the poll CQE, or by ``notify_closing``."""

    __slots__ = ("waiters",)

    def __init__(self, ud: int, task: trio.lowlevel.Task, fd: int, waiters: dict[int, _PollWait]) -> None:
        super().__init__(ud, task, fd, None)
        self.waiters = waiters

    def complete(self, res: int, flags: int) -> None:
        task = self.task
        if task is None:
            return
        self.task = None
        if self.waiters.get(self.fd) is self:
            del self.waiters[self.fd]
        if res in CANCELLED:  # the fd was closed, or the run's ring (its shutdown)
            msg = "another task closed this fd" if self.closed else "the run's io_uring ring was closed"
            reschedule(task, outcome.Error(trio.ClosedResourceError(msg)))
        elif res < 0:
            reschedule(task, outcome.Error(errno_error(res)))
        else:
            reschedule(task)


class UringIOManager:
    """trio's IO manager on an io_uring ring; one per run, on the run's thread.

    While a bulk receiver takes 64 KiB or more between waits, waits coalesce (like a NIC's
    interrupt moderation): the kernel wakes the run at 16 completions or once
    ``coalesce_usec`` microseconds passed with at least one, instead of at the first. A
    stream of ~64 KiB completions then costs one scheduler pass per many of them, not per
    one or two. Only events that arrive within ``coalesce_usec`` of the wait's start wait
    longer, by at most that; runnable tasks and trio's timeouts never do. It switches off
    after 8 waits without bulk data; ``coalesce_usec=0`` turns it off for the run.
    """

    def __init__(
        self, entries: int = 256, *, coalesce_usec: int = DEFAULT_COALESCE_USEC, send: str = "direct"
    ) -> None:
        coalesce_usec = check_coalesce_usec(coalesce_usec)
        send_ring = check_send(send)
        self._closing = False
        self._coalesce_left = 0  # enters left with coalescing on
        self._steps = 0  # task steps run since the kernel was last looked at
        self._look_by = 0.0  # when the next look is due at the latest (time.monotonic)
        self._runq_deque: Any = None
        self._coalesced_waits = 0
        self._owner = threading.get_ident()
        self._readers: dict[int, _PollWait] = {}
        self._writers: dict[int, trio.lowlevel.Task] = {}
        self._wakeup_fd = self._notify_fd = -1
        self.ring = Ring(entries, flags=run_ring_flags())  # raises UringUnavailable itself
        # Every syscall is made now rather than in the middle of the run: a seccomp filter can
        # refuse io_uring_register or io_uring_enter alone, and the first enter (submitting the
        # multishot polls) proves the ring usable while a refusal can still fall back to trio.
        step = "epoll/eventfd"
        try:
            self._epoll = select.epoll()
            self._wakeup_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            # Signalled by the kernel on completions and deferred work: what a guest-mode
            # worker thread polls (the ring fd does not wake on deferred work).
            self._notify_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            step = "io_uring_register"
            self.ring.register_eventfd(self._notify_fd)
            self.driver = OpDriver(self.ring)
            self.driver.send_ring = send_ring
            self._poll_multi = functools.partial(self.ring.prep_poll, multishot=True)
            self._wakeup_op = self._arm(self._wakeup_fd, self._on_wakeup)
            self._epoll_op = self._arm(self._epoll.fileno(), self._on_epoll)
            step = "io_uring_enter"
            self.ring.submit()
        except BaseException as exc:
            self._discard()
            if isinstance(exc, OSError):
                raise _build_error(step, exc) from None
            raise
        self._coalesce_usec = coalesce_usec if self.ring.can_coalesce else 0

    def _discard(self) -> None:
        """Undo a half-built manager: nothing the kernel holds can matter (no run used it)."""
        self._closing = True
        ring = self.ring
        ring.inflight.clear()  # never submitted, or only polls: nothing to drain (enter may be refused)
        ring.close()
        epoll: select.epoll | None = getattr(self, "_epoll", None)
        if epoll is not None:
            epoll.close()
        for fd in (self._wakeup_fd, self._notify_fd):
            if fd >= 0:
                os.close(fd)

    def _arm(self, fd: int, on_cqe: Any) -> Op:
        return self.driver.start_multishot(self._poll_multi, fd, select.POLLIN, fd=fd, on_cqe=on_cqe)

    # ---- the protocol trio's run loop drives ------------------------------------------------
    def get_events(self, timeout: float) -> Batch | None:
        """Submit, wait up to ``timeout``, reap. Falsy only if nothing happened."""
        if _get_ident() != self._owner:
            return self._wait_from_foreign_thread(timeout)
        d = self.driver
        if d.pre_enter or d._soon:  # the common pass has nothing for before_enter: no call
            d.before_enter()
        if timeout <= 0:
            # Tasks are runnable: look at the kernel once EVENT_INTERVAL task steps ran since
            # the last look, as tokio's scheduler does (``event_interval``, 61), or once
            # EVENT_INTERVAL_S passed, whichever comes first. Each look runs the kernel's
            # deferred receive work (a syscall) for whatever trickled in since the last: a
            # task taking one lease per pass would pay it per lease and get smaller ones.
            # SQEs are always submitted, and an empty run queue (trio is about to wake
            # wait_all_tasks_blocked or jump an autojump clock) always looks. This is every
            # scheduler pass, so it calls nothing it need not: a pass of one task measured
            # 29.9k user-space instructions with three more calls here and 28.1k without,
            # against 28.8k (plus an epoll_wait syscall) under trio's own IO manager.
            runq = self._runq_deque or self._runq()
            if runq and not self.ring._queued:
                steps = self._steps + len(runq)
                if steps < EVENT_INTERVAL and _monotonic() < self._look_by:
                    self._steps = steps
                    return None
            self._steps = 0
            self._look_by = _monotonic() + EVENT_INTERVAL_S
        if self._coalesce_usec and timeout > 0:
            # Judged at waits only: a consumer that takes one lease per scheduler pass makes
            # many passes that do not wait, and bulk data arrives between waits, not passes.
            bulk = d.bulk_bytes >= COALESCE_TRIGGER
            left = COALESCE_ENTERS if bulk else max(0, self._coalesce_left - 1)
            d.bulk_bytes = 0
            if (left > 0) != (self._coalesce_left > 0):
                self.ring.set_coalesce(self._coalesce_usec if left else 0, COALESCE_NR)
            self._coalesce_left = left
            if left:
                self._coalesced_waits += 1
        batch = self.ring.enter(1, timeout)
        if batch.user_data or batch is INTERRUPTED:
            return batch
        return None

    def _runq(self) -> Any:
        """trio's run queue (its runnable tasks): a deque, found on first use."""
        runq = self._runq_deque
        if runq is None:
            runq = self._runq_deque = _trio_run.GLOBAL_RUN_CONTEXT.runner.runq
        return runq

    def process_events(self, events: Batch | None) -> None:
        """trio's IO manager protocol: dispatch a batch from :meth:`get_events` to its ops."""
        if not events:
            return
        if events is _REAP:
            self.driver.before_enter()
            events = self.ring.enter(0, 0)
        self.driver.dispatch(events)

    def _wait_from_foreign_thread(self, timeout: float) -> Batch | None:
        # Only reads here: the host thread owns submission and reaping (SINGLE_ISSUER).
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._notify_fd)
        if self.ring.has_work() or self.ring.sq_pending:
            return _REAP
        p = select.poll()
        p.register(self._notify_fd, select.POLLIN)
        p.register(self._wakeup_fd, select.POLLIN)
        return _REAP if p.poll(max(0, int(timeout * 1000 + 0.999))) else None

    def force_wakeup(self) -> None:
        """Thread- and signal-safe: make a blocked ``get_events`` return."""
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wakeup_fd, 1)

    def _on_wakeup(self, res: int, flags: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wakeup_fd)
        if not flags & CQE_F_MORE and not self._closing:
            self._wakeup_op = self._arm(self._wakeup_fd, self._on_wakeup)

    def statistics(self) -> UringStatistics:
        """``trio.lowlevel.current_statistics().io_statistics`` of this run."""
        return UringStatistics(
            tasks_waiting_read=len(self._readers),
            tasks_waiting_write=len(self._writers),
            ops_in_flight=len(self.ring.inflight) if not self.ring.closed else 0,
            enter_calls=self.ring.enter_calls if not self.ring.closed else 0,
            coalesced_waits=self._coalesced_waits,
        )

    def close(self) -> None:
        """End of the run: cancel what is in flight, reap it, close the ring. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self.driver.close(abandon=True)
        self._epoll.close()
        os.close(self._wakeup_fd)
        os.close(self._notify_fd)

    # ---- readiness for any fd -----------------------------------------------------------------
    async def wait_readable(self, fd: int | Any) -> None:
        """``trio.lowlevel.wait_readable``: a ``POLL_ADD`` on the ring.

        :raises trio.BusyResourceError: another task already waits for ``fd`` to be readable.
        :raises trio.ClosedResourceError: ``fd`` was closed (``notify_closing``) while waiting.
        """
        n = _waitable(fd)
        if n in self._readers:
            raise trio.BusyResourceError("another task is already reading / writing this fd")
        d = self.driver
        op = d.submit(
            _PollWait(d.new_ud(), current_task(), n, self._readers), self.ring.prep_poll, n, select.POLLIN
        )
        self._readers[n] = op

        def abort(_: Any) -> Abort:
            if self._readers.get(n) is op:
                del self._readers[n]
            d.discard(op)  # readiness has no effect to wait for: its late CQE is ignored
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    async def wait_writable(self, fd: int | Any) -> None:
        """``trio.lowlevel.wait_writable``: the fd in an internal epoll whose fd the ring polls.

        :raises trio.BusyResourceError: another task already waits for ``fd`` to be writable.
        :raises trio.ClosedResourceError: ``fd`` was closed (``notify_closing``) while waiting.
        """
        n = _waitable(fd)
        if n in self._writers:
            raise trio.BusyResourceError("another task is already reading / writing this fd")
        ep = self._epoll
        try:
            ep.register(n, _EPOLL_ONESHOT_OUT)
        except FileExistsError:
            ep.modify(n, _EPOLL_ONESHOT_OUT)
        self._writers[n] = current_task()

        def abort(_: Any) -> Abort:
            del self._writers[n]
            with contextlib.suppress(OSError, ValueError):
                ep.unregister(n)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _on_epoll(self, res: int, flags: int) -> None:
        ep = self._epoll
        if self._closing:
            return
        while self._writers:
            want = len(self._writers) + 1
            events = ep.poll(0, want)
            for n, _ev in events:
                task = self._writers.pop(n, None)
                if task is not None:
                    reschedule(task)
            if len(events) < want:
                break
        if not flags & CQE_F_MORE:
            self._epoll_op = self._arm(ep.fileno(), self._on_epoll)

    def notify_closing(self, fd: int | Any) -> None:
        """Wake every task waiting on ``fd`` with ``ClosedResourceError``; cancel its ops."""
        n = _fileno(fd)
        if n < 0:
            return  # not an fd: nothing can be waiting on it
        if n not in self._readers and n not in self._writers:
            self.driver.close_fd_ops(n)  # the common close: nobody waits for readiness
            return
        exc = trio.ClosedResourceError("another task closed this fd")
        try:
            me: trio.lowlevel.Task | None = current_task()
        except RuntimeError:
            me = None
        raise_here = False
        woken: list[trio.lowlevel.Task] = []
        reader = self._readers.pop(n, None)
        if reader is not None and reader.task is not None:
            woken.append(reader.task)
            reader.task = None  # its poll is cancelled with the fd's other ops, below
        writer = self._writers.pop(n, None)
        if writer is not None:
            woken.append(writer)
        if writer is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(n)
        self.driver.close_fd_ops(n)
        for task in woken:
            if task is me:
                raise_here = True
            else:
                reschedule(task, outcome.Error(copy.copy(exc)))
        if raise_here:
            raise exc
