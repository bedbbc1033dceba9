"""A parking spot for one task, woken by completion callbacks.

Receivers own their kernel op; a task only waits for what the op
delivered, so cancelling the wait has no effect on the op or the data (``Abort.SUCCEEDED``).
"""

from __future__ import annotations

from typing import Any

from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

__all__ = ["Waiter"]


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
