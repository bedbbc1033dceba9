"""Worker pools on a real multi-queue NIC: each worker owns one zcrx queue (the NIC lane).

Skipped unless the lane says which NIC to use:

- ``TU_NIC_IF``: the interface (a driver with the zcrx queue API; header split on; flows
  to the port steered onto ``TU_NIC_QUEUES``, see ``python -m trio_uring doctor
  --interface IF --workers N``);
- ``TU_NIC_QUEUES``: the RX queues the workers own, comma-separated (default ``1,2``);
- ``TU_NIC_ADDR``: this side's address on that interface (the server listens there);
- ``TU_NIC_CLIENT``: a command prefix that runs a program on the peer side of the link
  (e.g. ``ip netns exec peer``), so that the traffic enters through the NIC.

Each connection's receiver must be in mode ``zcrx`` on the queue of the worker that accepted
it, with every byte intact.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from tests.net import _workers_app as app
from trio_uring import WorkerPool, ZcConfig, serve_tcp_workers

IF = os.environ.get("TU_NIC_IF", "")
pytestmark = [
    pytest.mark.skipif(not IF, reason="needs a zcrx-capable NIC: set TU_NIC_IF (the NIC lane)"),
    # The simulated NIC records the steered rx queue only on packets it writes by simulated
    # DMA (payload on a bound queue), not on a SYN: a reuseport program cannot see which queue
    # a connection arrives on there, so this runs on real hardware (docs/nic-lane.md).
    pytest.mark.skipif(
        bool(os.environ.get("TU_NIC_DEBUGFS")) and not os.environ.get("TU_NIC_CLIENT"),
        reason="the simulated NIC does not record the rx queue of a SYN (needed by the reuseport "
        "program); run on a real zcrx NIC with TU_NIC_CLIENT set",
    ),
]

_QUEUES_ENV = os.environ.get("TU_NIC_QUEUES", "1,2")
#: A list ("1,2"), or the lane's queue count ("4": queues 1 and 2, leaving 0 to the kernel).
QUEUES = tuple(int(q) for q in _QUEUES_ENV.split(",")) if "," in _QUEUES_ENV else (1, 2)
ADDR = os.environ.get("TU_NIC_ADDR", "")
CLIENT = shlex.split(os.environ.get("TU_NIC_CLIENT", ""))
ROOT = str(Path(__file__).resolve().parents[2])
SIZE = 4 << 20

# Runs on the peer: N connections, each SIZE seeded bytes, then EOF; prints each JSON answer.
_CLIENT = """
import random, socket, sys
addr, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    data = random.Random(i).randbytes(size)
    with socket.create_connection((addr, port), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        print(s.makefile().readline().strip(), flush=True)
"""


async def test_each_worker_receives_zero_copy_on_its_own_queue() -> None:
    assert ADDR and CLIENT, "the NIC lane sets TU_NIC_ADDR and TU_NIC_CLIENT with TU_NIC_IF"
    conns = 8 * len(QUEUES)
    async with trio.open_nursery() as nursery:
        pool: WorkerPool = await nursery.start(
            functools.partial(
                serve_tcp_workers, app.zc_digest, 0, host=ADDR, zc=ZcConfig(IF, QUEUES), handle_signals=False
            )
        )
        assert pool.steering == "rx-queue"
        cmd = [
            *CLIENT,
            sys.executable,
            "-c",
            textwrap.dedent(_CLIENT),
            ADDR,
            str(pool.port),
            str(conns),
            str(SIZE),
        ]
        out = await trio.to_thread.run_sync(
            functools.partial(subprocess.run, cmd, capture_output=True, text=True, timeout=300, check=True)
        )
        pool.stop()
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(answers) == conns
    for i, answer in enumerate(answers):
        assert answer["mode"] == "zcrx", answer["reason"]
        assert answer["queue"][0] == IF and answer["queue"][1] in QUEUES
        assert answer["bytes"] == SIZE
        assert answer["sha256"] == hashlib.sha256(random_bytes(i)).hexdigest()
    # RSS over the worker queues (the doctor's commands) gives every worker connections
    assert {a["queue"][1] for a in answers} == set(QUEUES)


def random_bytes(i: int) -> bytes:
    import random  # noqa: PLC0415

    return random.Random(i).randbytes(SIZE)
