"""One task at a time: a parking spot woken by completion callbacks, and a conflict guard.

Receivers own their kernel op; a task only waits for what the op
delivered, so cancelling the wait has no effect on the op or the data (``Abort.SUCCEEDED``).
"""

from __future__ import annotations

from typing import Any

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

__all__ = ["Conflict", "Waiter"]


class Waiter:
    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: Task | None = None

    async def park(self) -> None:
        """Sleep until :meth:`wake` (or cancellation)."""
        self.task = current_task()

        def abort(_: Any) -> Abort:
            self.task = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def wake(self) -> None:
        """Reschedule the parked task, if there is one."""
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task)


class Conflict:
    """Raises ``BusyResourceError`` when two tasks use the same direction at once.

    A class rather than a generator context manager: it guards every receive and send, and
    the stream hot paths test and set ``held`` inline.
    """

    __slots__ = ("held", "msg")

    def __init__(self, msg: str) -> None:
        self.msg = msg
        self.held = False

    def __enter__(self) -> None:
        if self.held:
            raise trio.BusyResourceError(self.msg)
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False
