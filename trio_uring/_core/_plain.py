"""io_uring ops inside a plain ``trio.run`` (pytest-trio, guest mode, libraries): public API only.

The first op of a run creates a ring for that run (found again through a ``RunVar``), a
system task that sleeps in ``trio.lowlevel.wait_readable`` on an eventfd registered with
the ring and reaps whole batches (the ring fd itself is not woken by deferred completions
under DEFER_TASKRUN), and an instrument whose ``before_io_wait`` hands every SQE queued during the
scheduler pass to the kernel in one ``io_uring_enter``. Under ``trio_uring.run`` the IO
manager's own ring is used instead.
"""

from __future__ import annotations

import contextlib
import logging
import os

import trio
from trio.lowlevel import RunVar

from ._io_manager import UringIOManager
from ._ops import OpDriver
from ._ring import Ring, run_ring_flags

__all__ = ["current_driver", "existing_driver"]

_DRIVER: RunVar[OpDriver] = RunVar("trio_uring_driver")
_MAX_ROUNDS = 8  # reap rounds per wakeup before the driver yields to the tasks it woke
log = logging.getLogger("trio_uring")


def _io_manager_of_this_run() -> UringIOManager | None:
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT  # noqa: PLC0415 - private, best effort

        mgr = GLOBAL_RUN_CONTEXT.runner.io_manager
    except (ImportError, AttributeError):
        return None
    return mgr if isinstance(mgr, UringIOManager) else None


def current_driver() -> OpDriver:
    """The op driver of the current trio run, created on first use."""
    try:
        return _DRIVER.get()
    except LookupError:
        pass
    mgr = _io_manager_of_this_run()
    driver = mgr.driver if mgr is not None else _PlainDriver().driver
    _DRIVER.set(driver)
    return driver


def existing_driver() -> OpDriver | None:
    """The current run's op driver if one was created (never creates one)."""
    try:
        return _DRIVER.get()
    except LookupError:
        mgr = _io_manager_of_this_run()
        return mgr.driver if mgr is not None else None


class _PlainDriver(trio.abc.Instrument):
    def __init__(self) -> None:
        self.ring = Ring(flags=run_ring_flags())
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self.ring.register_eventfd(self._efd)
        except BaseException:
            os.close(self._efd)
            self.ring.close()
            raise
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
