"""A server on every core: ``trio_uring.serve_tcp_workers`` runs one process per core, each with
its own ``trio_uring.run``, its own ring and its own ``SO_REUSEPORT`` listener.

    python examples/workers_server.py            # serve on port 8000 until Ctrl-C
    python examples/workers_server.py --demo     # 2 workers, 40 clients, then stop

The handler is sent to the workers by name, so it lives at module level and the start is guarded
by ``if __name__ == "__main__":`` (each worker is a new interpreter that imports this file).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections import Counter

import trio

import trio_uring


async def whoami(stream: trio_uring.UringSocketStream) -> None:
    """Answer every message with the id of the worker process that serves the connection."""
    async for _ in stream:
        await stream.send_all(str(os.getpid()).encode())


async def demo(workers: int, clients: int) -> None:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio_uring.serve_tcp_workers, whoami, 0, workers=workers)
        pool = await nursery.start(serve)
        served: Counter[int] = Counter()
        with trio.fail_after(30):
            for _ in range(clients):
                async with await trio_uring.open_tcp_stream("127.0.0.1", pool.port) as client:
                    await client.send_all(b"?")
                    served[int(await client.receive_some())] += 1
        backends = ", ".join(str(b) for b in pool.backends)
        print(f"{pool.workers} workers ({backends}), steering: {pool.steering}")
        ours = set(served) <= set(pool.pids)
        print(f"{clients} connections served by {len(served)} worker(s), all of them the pool's: {ours}")
        pool.stop()  # as Ctrl-C or SIGTERM would: stop accepting, let connections finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="serve 40 connections with 2 workers, then stop")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=None, help="default: one per usable CPU")
    args = parser.parse_args()
    if args.demo:
        trio.run(demo, 2, 40)
    else:
        trio.run(functools.partial(trio_uring.serve_tcp_workers, whoami, args.port, workers=args.workers))


if __name__ == "__main__":
    main()
