"""trio's ``cancel_shielded_checkpoint``, one coroutine layer thinner, for the hot paths.

trio's public trap is an ``async def`` that awaits a generator that yields the
``CancelShieldedCheckpoint`` message to the run loop. An echo round trip passes two of them
and each layer costs about 0.4 µs on the benchmark machine, so the stream hot paths yield
the message themselves. The run loop treats it exactly as it treats trio's (a schedule point,
counted in the task's ``_schedule_points`` as ``trio.testing.assert_checkpoints`` expects).
A trio without that message keeps the public function.

``RUN_CONTEXT`` is trio's per-thread run context (``RUN_CONTEXT.task`` is the current task),
for hot paths that check cancellation inline instead of awaiting
``trio.lowlevel.checkpoint_if_cancelled``; ``None`` on a trio without it, where they do not.
``CHECKPOINT_MESSAGE`` is what such a path yields itself (``None`` likewise).
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import trio

__all__ = ["CHECKPOINT_MESSAGE", "RUN_CONTEXT", "cancel_shielded_checkpoint"]

cancel_shielded_checkpoint: Callable[[], Awaitable[None]]
CHECKPOINT_MESSAGE: Any = None
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
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT as RUN_CONTEXT
    except ImportError:  # pragma: no cover - every supported trio has it
        pass
    else:
        CHECKPOINT_MESSAGE = _MESSAGE
