"""trio's ``cancel_shielded_checkpoint``, one coroutine layer thinner, for the hot paths.

trio's public trap is an ``async def`` that awaits a generator that yields the
``CancelShieldedCheckpoint`` message to the run loop. An echo round trip passes two of them
and each layer costs about 0.4 µs on the benchmark machine, so the stream hot paths yield
the message themselves. The run loop treats it exactly as it treats trio's (a schedule point,
counted in the task's ``_schedule_points`` as ``trio.testing.assert_checkpoints`` expects).
A trio without that message keeps the public function.

``proceed_uncancelled()`` is ``trio.lowlevel.checkpoint_if_cancelled`` for the case where it
would not checkpoint, as a plain call: a coroutine less per receive. The stream's flat paths
inline it once more, reading ``RUN_CONTEXT`` (trio's per-thread run context, ``None`` on a
trio without one): the call itself measured 3 % of an echo round trip's instructions.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import trio

__all__ = ["RUN_CONTEXT", "cancel_shielded_checkpoint", "proceed_uncancelled"]

cancel_shielded_checkpoint: Callable[[], Awaitable[None]]
RUN_CONTEXT: Any = None

try:
    from trio._core._traps import CancelShieldedCheckpoint as _MESSAGE
except ImportError:  # pragma: no cover - every supported trio has it
    cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
else:

    @types.coroutine
    def _yield_checkpoint() -> Generator[Any, Any, None]:
        (yield _MESSAGE).unwrap()

    cancel_shielded_checkpoint = _yield_checkpoint
    with contextlib.suppress(ImportError):  # every supported trio has it
        from trio._core._run import GLOBAL_RUN_CONTEXT as RUN_CONTEXT


def proceed_uncancelled() -> bool:
    """True, with the cancel point counted, where ``checkpoint_if_cancelled`` would return at
    once: the caller may go on. False where it would checkpoint (the task is cancelled, or
    is the main task with a KeyboardInterrupt pending) or cannot be read here (outside a run,
    another trio): the caller awaits ``trio.lowlevel.checkpoint_if_cancelled()`` (or takes its
    general path, which does)."""
    try:
        task = RUN_CONTEXT.task
    except AttributeError:
        return False
    if task._cancel_status.effectively_cancelled:
        return False
    if task is task._runner.main_task and task._runner.ki_pending:
        return False
    task._cancel_points += 1
    return True
