"""What trio's scheduler alone costs an echo server: the floor under any trio backend.

    python benchmarks/floor.py

An echo round trip on a trio stream is two task steps whatever the IO backend: the task is
woken with data (``receive_some``), then ``send_all`` passes a checkpoint (trio requires
one). Here 64 tasks do exactly that with no IO at all — a waker task reschedules every
parked task once per pass, as a batch of receive completions would — under stock
``trio.run`` and under ``trio_uring.run``. CPU time per round trip is the least a trio
server can spend; add the kernel's own cost of a loopback round trip (the C liburing
server's CPU per request in ``bench.py``) to get the best rate a trio server could reach on
this machine.

The churn floor does the same for one connection after another (the ``churn`` scenario): the
accepting task steps once per connection and starts the handler's task, which steps four
times (``receive_some`` with the request there, ``send_all``, ``receive_some`` at the end of
stream, the return), then the next connection arrives. ``trio.serve_listeners`` then closes
the stream with ``aclose_forcefully``, two more steps; ``trio_uring.serve_tcp`` closes it in
the handler's last step. Both are printed, under both runs.
"""

from __future__ import annotations

import time

import trio
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

import trio_uring

TASKS, ROUNDS = 64, 3000
CONNECTIONS = 20000


async def _echo_shaped() -> float:
    parked: list[Task] = []
    done = [0]

    async def worker() -> None:
        for _ in range(ROUNDS):
            parked.append(current_task())
            await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)  # receive_some: woken with data
            done[0] += 1
            await checkpoint()  # send_all's checkpoint

    async def waker() -> None:
        while done[0] < TASKS * ROUNDS:
            batch = parked[:]
            parked.clear()
            for task in batch:
                reschedule(task)
            await checkpoint()

    t0 = time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(TASKS):
            nursery.start_soon(worker)
        nursery.start_soon(waker)
    return (time.process_time() - t0) / (TASKS * ROUNDS)


class _Stream(trio.abc.AsyncResource):
    async def aclose(self) -> None:
        await checkpoint()  # as a socket stream's aclose: closes, then a checkpoint


async def _churn_shaped(forceful: bool) -> float:
    acceptor: list[Task] = []

    async def handler(stream: _Stream) -> None:
        await cancel_shielded_checkpoint()  # receive_some: the request is there
        await checkpoint()  # send_all
        await cancel_shielded_checkpoint()  # receive_some: the end of stream is there

    async def run_handler(stream: _Stream) -> None:
        try:
            await handler(stream)
        finally:
            reschedule(acceptor.pop())  # the client connects again: accept completes
            if forceful:
                await trio.aclose_forcefully(stream)

    async def accept_loop(nursery: trio.Nursery) -> None:
        for _ in range(CONNECTIONS):
            nursery.start_soon(run_handler, _Stream())
            acceptor.append(current_task())
            await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)

    t0 = time.process_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop, nursery)
    return (time.process_time() - t0) / CONNECTIONS


def main() -> None:
    for name, run in (("trio.run", trio.run), ("trio_uring.run", trio_uring.run)):
        per_rt = min(run(_echo_shaped) for _ in range(3))
        print(
            f"{name:15} {per_rt * 1e6:5.2f} us of scheduler per echo round trip "
            f"({TASKS} tasks, no IO): at most {1 / per_rt:,.0f} round trips/s"
        )
    for name, run in (("trio.run", trio.run), ("trio_uring.run", trio_uring.run)):
        for forceful, how in ((True, "closed as trio.serve_listeners does"), (False, "closed at once")):
            per_conn = min(run(_churn_shaped, forceful) for _ in range(3))
            print(f"{name:15} {per_conn * 1e6:6.2f} us of scheduler per connection, churn-shaped, {how}")


if __name__ == "__main__":
    main()
