"""trio's ``cancel_shielded_checkpoint``, one coroutine layer thinner, for the hot paths.

trio's public trap is an ``async def`` that awaits a generator that yields the
``CancelShieldedCheckpoint`` message to the run loop. An echo round trip passes two of them
and each layer costs about 0.4 µs on the benchmark machine, so the stream hot paths yield
the message themselves. The run loop treats it exactly as it treats trio's (a schedule point,
counted in the task's ``_schedule_points`` as ``trio.testing.assert_checkpoints`` expects).
A trio without that message keeps the public function.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import trio

__all__ = ["cancel_shielded_checkpoint"]

cancel_shielded_checkpoint: Callable[[], Awaitable[None]]

try:
    from trio._core._traps import CancelShieldedCheckpoint as _MESSAGE
except ImportError:  # pragma: no cover - every supported trio has it
    cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
else:

    @types.coroutine
    def _yield_checkpoint() -> Generator[Any, Any, None]:
        (yield _MESSAGE).unwrap()

    cancel_shielded_checkpoint = _yield_checkpoint
