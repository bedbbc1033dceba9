"""``_traps``: the hot paths' stand-ins for trio's checkpoint functions must answer exactly as
trio's own would, under both integrations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring._core._traps import cancel_shielded_checkpoint, proceed_uncancelled

RUNNERS = pytest.mark.parametrize("runner", [trio_uring.run, trio.run], ids=["trio_uring.run", "trio.run"])


def test_outside_a_run_the_caller_is_sent_to_trio() -> None:
    assert proceed_uncancelled() is False


@RUNNERS
def test_proceed_counts_a_cancel_point_and_nothing_else(runner: Callable[..., Any]) -> None:
    async def main() -> None:
        task = trio.lowlevel.current_task()
        before = (task._cancel_points, task._schedule_points)
        assert proceed_uncancelled() is True
        assert (task._cancel_points, task._schedule_points) == (before[0] + 1, before[1])
        with trio.testing.assert_checkpoints():
            assert proceed_uncancelled()
            await cancel_shielded_checkpoint()

    runner(main)


@RUNNERS
def test_a_cancelled_task_may_not_proceed(runner: Callable[..., Any]) -> None:
    async def main() -> None:
        with trio.CancelScope() as scope:
            assert proceed_uncancelled()
            scope.cancel()
            assert not proceed_uncancelled()
            with trio.CancelScope(shield=True):
                assert proceed_uncancelled()  # shielded: trio would not checkpoint either
            with pytest.raises(trio.Cancelled):
                await trio.lowlevel.checkpoint_if_cancelled()
        with trio.move_on_at(trio.current_time() - 1):
            assert not proceed_uncancelled()  # an expired deadline is a cancel too

    runner(main)


@RUNNERS
def test_a_pending_keyboard_interrupt_stops_the_main_task_only(runner: Callable[..., Any]) -> None:
    async def main() -> None:
        state = trio.lowlevel.current_task()._runner
        answers: dict[str, bool] = {}

        def ask(who: str) -> None:
            state.ki_pending = True  # no checkpoint in between: nothing delivers it
            try:
                answers[who] = proceed_uncancelled()
            finally:
                state.ki_pending = False

        async def child() -> None:
            ask("child")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
        ask("main")
        assert answers == {"child": True, "main": False}

    runner(main)
