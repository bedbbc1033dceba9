"""Worker pools on a multi-queue NIC: each worker owns one zcrx queue (the NIC lane).

In the lane the NIC is the patched netdevsim (``scripts/kernel-vm --nic``): the test steers the
pool's port onto queue 1, then onto queue 2 (its debugfs knob; ``ethtool -N`` on a real NIC), and
the pool's reuseport program must hand each connection to the worker that owns the queue it
arrived on, whose receiver registers there in mode ``zcrx``. The simulated NIC's per-queue
counters (debugfs ``zcrx_stats``) show the flows really arrived on that queue: the answer alone
cannot, since the kernel's copy fallback delivers exact bytes to a receiver on any queue. On a
real NIC set the same ``TU_NIC_*`` variables (docs/nic-lane.md); ``TU_NIC_CLIENT`` is a command
prefix that runs a program on the peer side of the link (default: ``ip netns exec
$TU_NIC_PEER_NS``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import textwrap

import pytest
import trio

from tests.net import _workers_app as app
from trio_uring import WorkerPool, ZcConfig, serve_tcp_workers

from ._nic import Nic

NIC = Nic.from_env()
pytestmark = pytest.mark.skipif(NIC is None, reason="needs a zcrx-capable NIC: the NIC lane (make nic-lane)")

QUEUES = (1, 2)
CONNS = 3  # per queue
SIZE = 1 << 20

# Runs on the peer: N connections, each SIZE seeded bytes, then EOF; prints each JSON answer.
_CLIENT = """
import random, socket, sys
addr = sys.argv[1]
port, first, n, size = (int(a) for a in sys.argv[2:6])
for i in range(first, first + n):
    data = random.Random(i).randbytes(size)
    with socket.create_connection((addr, port), timeout=60) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        print(s.makefile().readline().strip(), flush=True)
"""


def _client(nic: Nic) -> list[str]:
    prefix = os.environ.get("TU_NIC_CLIENT")
    return shlex.split(prefix) if prefix else ["ip", "netns", "exec", nic.peer_ns]


def _grew(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after[key] - before[key]


async def _settled(nic: Nic, before: dict[str, int], queue: int) -> dict[str, int]:
    """The simulated NIC's counters once rx ``queue`` has passed up as many packets as were
    steered since ``before`` (a packet is counted steered when sent, then waits for the queue's
    NAPI); at most 5 s."""
    for _ in range(50):
        after = nic.sim_stats()
        if _grew(before, after, f"rxq{queue}_packets") >= _grew(before, after, "steered_packets"):
            break
        await trio.sleep(0.1)
    return after


async def test_each_worker_receives_zero_copy_on_its_own_queue() -> None:
    nic = NIC
    assert nic is not None and nic.queues > max(QUEUES), nic
    answers: dict[int, list[dict[str, object]]] = {}
    sim: dict[int, tuple[dict[str, int], dict[str, int]]] = {}  # queue: the NIC's counters around it
    async with trio.open_nursery() as nursery:
        serve = functools.partial(
            serve_tcp_workers,
            app.zc_digest,
            0,
            host=nic.addr,
            zc=ZcConfig(nic.interface, QUEUES),
            handle_signals=False,
        )
        pool: WorkerPool = await nursery.start(serve)
        assert pool.steering == "rx-queue", pool.steering
        for k, q in enumerate(QUEUES):
            cmd = [*_client(nic), sys.executable, "-c", textwrap.dedent(_CLIENT)]
            cmd += [nic.addr, str(pool.port), str(k * CONNS), str(CONNS), str(SIZE)]
            with nic.steer(pool.port, q):  # every packet of the port's flows now arrives on queue q
                before = nic.sim_stats()
                out = await trio.to_thread.run_sync(
                    functools.partial(
                        subprocess.run, cmd, capture_output=True, text=True, timeout=600, check=True
                    )
                )
                sim[q] = (before, await _settled(nic, before, q))
            answers[q] = [json.loads(line) for line in out.stdout.splitlines()]
        pool.stop()
    print(f"\nworkers on queues {QUEUES}: {answers}")
    for k, q in enumerate(QUEUES):
        if nic.simulated:
            # The simulated NIC's own view. Every packet of the port's flows (steered) was passed
            # up by queue q's NAPI, which records q for the reuseport program (other traffic, an
            # ARP probe, may land on any queue and only adds to the count). Their payload was
            # written into queue q's area, none into the other worker's: bytes that came before
            # the worker's receiver registered on q reach it through the kernel's copy fallback,
            # so not all of it.
            before, after = sim[q]
            grew = {key: _grew(before, after, key) for key in sorted(after)}
            print(f"queue {q}: " + ", ".join(f"{key} +{n}" for key, n in grew.items()))
            assert grew["steered_packets"] >= 4 * CONNS, grew  # SYN, data, FIN, ACK at least
            assert grew[f"rxq{q}_packets"] >= grew["steered_packets"], grew
            assert grew[f"rxq{q}_hds_payload_bytes"] > 0, grew
            for other in QUEUES:
                if other != q:
                    assert grew[f"rxq{other}_hds_payload_bytes"] == 0, (other, grew)
        assert len(answers[q]) == CONNS, answers
        for i, answer in enumerate(answers[q], start=k * CONNS):
            # the worker that owns queue q took the connection, and received zero-copy there
            assert answer["mode"] == "zcrx", answer["reason"]
            assert answer["queue"] == [nic.interface, q], answer
            assert answer["bytes"] == SIZE
            assert answer["sha256"] == hashlib.sha256(random.Random(i).randbytes(SIZE)).hexdigest()
