"""io_uring ops inside a plain ``trio.run`` (pytest-trio, guest mode, libraries).

It runs on trio's public API; the one private read (``_runners_io_manager``, best effort)
only asks whether the run's IO manager is ``UringIOManager`` or one that fell back from it.

The first op of a run creates a ring for that run (found again through a ``RunVar``), a
system task that sleeps in ``trio.lowlevel.wait_readable`` on an eventfd registered with
the ring and reaps whole batches (the ring fd itself is not woken by deferred completions
under DEFER_TASKRUN), and an instrument whose ``before_io_wait`` hands every SQE queued during the
scheduler pass to the kernel in one ``io_uring_enter``. Under ``trio_uring.run`` the IO
manager's own ring is used instead.

Where io_uring cannot be used (seccomp, sysctl, old kernel) ``current_driver`` raises
``UringUnavailable``, decided once per run (only a passing shortage of fds or memory is
tried again); ``driver_or_none`` returns None instead (and warns once per run) for
callers that can wait for readiness through trio.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import warnings
import weakref

import trio
from trio.lowlevel import RunVar

from ._errors import UringUnavailable, refused_error
from ._io_manager import UringIOManager
from ._ops import OpDriver
from ._ring import Ring, run_ring_flags

__all__ = ["announce_fallback", "current_driver", "driver_or_none", "existing_driver", "note_fallback"]

_DRIVER: RunVar[OpDriver | None] = RunVar("trio_uring_driver", default=None)
#: Failures that may not last (fds or memory exhausted for a moment): not cached for the run.
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})
#: Why io_uring cannot be used in this run (a copy without traceback): asked once per run.
_FAILED: RunVar[UringUnavailable | None] = RunVar("trio_uring_unavailable", default=None)
_WARNED: RunVar[bool] = RunVar("trio_uring_unavailable_warned", default=False)
#: trio IO managers of runs that fell back from io_uring, with the reason (already warned about).
_FELL_BACK: weakref.WeakKeyDictionary[object, UringUnavailable] = weakref.WeakKeyDictionary()
_MAX_ROUNDS = 8  # reap rounds per wakeup before the driver yields to the tasks it woke
log = logging.getLogger("trio_uring")


def _runners_io_manager() -> object | None:
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT  # noqa: PLC0415 - private, best effort

        mgr: object = GLOBAL_RUN_CONTEXT.runner.io_manager
    except (ImportError, AttributeError):
        return None
    return mgr


def _io_manager_of_this_run() -> UringIOManager | None:
    mgr = _runners_io_manager()
    return mgr if isinstance(mgr, UringIOManager) else None


def note_fallback(io_manager: object, exc: UringUnavailable) -> None:
    """Record that the run using ``io_manager`` (trio's own) fell back because of ``exc``.

    Its ops then use readiness at once, without trying io_uring again or warning twice.
    """
    _FELL_BACK[io_manager] = exc.fresh()


def current_driver() -> OpDriver:
    """The op driver of the current trio run, created on first use.

    Raises :class:`~trio_uring.UringUnavailable` if io_uring cannot be used in this run; the answer is
    kept for the run, so later calls raise again at once without retrying the syscalls.

    :raises UringUnavailable: io_uring cannot be used in this run.
    :raises RuntimeError: called outside a trio run.
    """
    driver = _DRIVER.get()
    if driver is not None:
        return driver
    failed = _FAILED.get()
    if failed is not None:
        raise failed.fresh()
    mgr = _runners_io_manager()
    if isinstance(mgr, UringIOManager):
        driver = mgr.driver
    else:
        reason = _FELL_BACK.get(mgr) if mgr is not None else None
        if reason is not None:
            _FAILED.set(reason)
            _WARNED.set(True)  # trio_uring.run / install_io_manager warned already
            raise reason.fresh()
        try:
            driver = _PlainDriver().driver
        except UringUnavailable as exc:
            if exc.errno not in _TRANSIENT:  # out of fds or memory now is not "refused"
                _FAILED.set(exc.fresh())
            raise
    _DRIVER.set(driver)
    return driver


#: Set by a process-wide fallback that already told the user (the pytest plugin): runs of
#: that process then fall back to readiness without a warning each.
_ANNOUNCED: str | None = None


def announce_fallback(reason: str) -> None:
    """The user was told once for the whole process why io_uring is not used."""
    global _ANNOUNCED  # noqa: PLW0603 - one process-wide fact
    _ANNOUNCED = reason


def driver_or_none() -> OpDriver | None:
    """The run's op driver, or None when io_uring is unavailable in this run.

    For code that can do without io_uring (readiness through trio instead): the first
    None of a run comes with one ``RuntimeWarning`` saying why.
    """
    driver = _DRIVER.get()
    if driver is not None:
        return driver
    try:
        return current_driver()
    except UringUnavailable as exc:
        if not _WARNED.get() and _ANNOUNCED is None:
            _WARNED.set(True)
            warnings.warn(
                f"io_uring is unavailable, using trio's readiness-based IO: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
        return None


def existing_driver() -> OpDriver | None:
    """The current run's op driver if one was created (never creates one)."""
    driver = _DRIVER.get()
    if driver is not None:
        return driver
    mgr = _io_manager_of_this_run()
    return mgr.driver if mgr is not None else None


class _PlainDriver(trio.abc.Instrument):
    def __init__(self) -> None:
        self.ring = Ring(flags=run_ring_flags())  # raises UringUnavailable itself
        self._efd = -1
        step = "eventfd"
        try:
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            step = "io_uring_register"
            self.ring.register_eventfd(self._efd)
            # Prove io_uring_enter works now (a seccomp filter may refuse it alone) rather than
            # leave every op of the run waiting for a submission that keeps failing.
            step = "io_uring_enter"
            self.ring.prep_nop(0)  # user_data 0: its completion is ignored
            self.ring.submit()
        except BaseException as exc:
            self.ring.close()
            if self._efd >= 0:
                os.close(self._efd)
            if not isinstance(exc, OSError):
                raise
            if step == "eventfd":
                raise UringUnavailable(
                    f"no eventfd for the io_uring driver: {exc}", errno=exc.errno
                ) from None
            detail = "IORING_REGISTER_EVENTFD" if step == "io_uring_register" else "the first submission"
            raise refused_error(step, exc.errno or 0, detail) from None
        self.driver = OpDriver(self.ring, on_queued=self._queued)
        self.driver.reaped_by_task = True
        self._flush = False
        trio.lowlevel.add_instrument(self)
        trio.lowlevel.spawn_system_task(self._reap_forever, name="trio_uring.driver")

    def _queued(self) -> None:
        self._flush = True

    def before_io_wait(self, timeout: float) -> None:
        # One submit per scheduler pass. An instrument that raises is silently removed by
        # trio, so this must never raise.
        try:
            self.driver.before_enter()
            if self._flush:
                self._flush = False
                self.ring.submit()
        except Exception:
            log.exception("trio_uring: submitting queued io_uring ops failed")

    async def _reap_forever(self) -> None:
        ring, dispatch, efd = self.ring, self.driver.dispatch, self._efd
        try:
            while True:
                # Reaping posts CQEs, which signals the eventfd again: drain it only after
                # reaping, then look once more (in userspace) before sleeping, so nothing
                # that arrived in between is missed. Work can keep arriving while we reap
                # (deferred task work requeues itself under load): after a bounded number
                # of rounds let the woken tasks run, then come back.
                for _ in range(_MAX_ROUNDS):
                    if not ring.has_work():
                        break
                    dispatch(ring.enter(0, 0))
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(efd)
                if not ring.has_work():
                    await trio.lowlevel.wait_readable(efd)
        finally:
            # The run is ending (the system nursery is cancelled after the main task):
            # cancel and drain what is left, then release the ring.
            with contextlib.suppress(KeyError):
                trio.lowlevel.remove_instrument(self)
            trio.lowlevel.notify_closing(efd)
            self.driver.close()
            os.close(efd)
