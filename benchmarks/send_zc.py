"""Large sends: the direct ``send`` syscall against io_uring ``SEND_ZC``, on loopback.

    python benchmarks/send_zc.py [--seconds 2]

One connection; the receiver is a separate process on CPU 1 that reads and discards; the
sender (CPU 0) pushes buffers of 64 KiB, 256 KiB and 1 MiB (a) with ``send_all`` on a
trio-uring stream (the direct syscall, waiting with an io_uring ``SEND`` when the socket is
full) and (b) as ``SEND_ZC`` ops: the buffer stays pinned until the kernel's notification
completion says the NIC — here loopback — is done with it. Printed: MB/s and the sender's
CPU per MiB.

On loopback the kernel copies a zero-copy send's pages anyway when they reach the receiving
socket, so ``SEND_ZC`` can only add work here (pinning, the notification); on a NIC the
payload is DMAed from the pinned pages and the copy is saved.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import subprocess
import sys
import time
from typing import Any

import outcome
import trio
from trio.lowlevel import current_task, reschedule, wait_task_rescheduled
from trio_uring._native import ffi

import trio_uring
from trio_uring._core._ring import CQE_F_MORE, CQE_F_NOTIF
from trio_uring.lowlevel import Op, current_driver

SINK = (
    "import socket,sys\n"
    "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n"
    "b=bytearray(1<<20)\n"
    "while s.recv_into(b): pass\n"
)


class _SendZc(Op):
    """A ``SEND_ZC``: the first CQE carries the byte count (with ``F_MORE``), the last is the
    notification (``F_NOTIF``) that the buffer is free; the task resumes at the last."""

    __slots__ = ("sent",)

    def complete(self, res: int, flags: int) -> None:
        if flags & CQE_F_NOTIF:
            task, self.task = self.task, None
            if task is not None:
                reschedule(task, outcome.Value(self.sent))
            return
        self.sent = res
        if not flags & CQE_F_MORE:  # an error: no notification follows
            task, self.task = self.task, None
            if task is not None:
                reschedule(task, outcome.Value(res))


async def _send_zc_all(sock: Any, data: memoryview) -> None:
    d = current_driver()
    cbuf = ffi.from_buffer(data)
    off = 0
    while off < len(data):
        op = _SendZc(d.new_ud(), current_task(), sock.fileno(), cbuf)
        op.sent = 0
        prep = functools.partial(d.ring.prep_send, zerocopy=True)
        d.submit(op, prep, sock.fileno(), cbuf + off, len(data) - off)
        res: int = await wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if res < 0:
            raise OSError(-res, os.strerror(-res))
        off += res


async def _run(how: str, size: int, seconds: float) -> tuple[float, float]:
    lsock = trio_uring.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    sink = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", SINK, str(port)])
    raw, _ = await lsock.accept()
    stream = trio_uring.UringSocketStream(raw)
    data = memoryview(bytearray(os.urandom(size)))
    sent = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if how == "direct":
            await stream.send_all(data)
        else:
            await _send_zc_all(raw, data)
        sent += size
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    await stream.aclose()
    lsock.close()
    sink.wait(timeout=30)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return sent / elapsed / 1e6, cpu / (sent / 2**20) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"{'buffer':>8} {'how':>8} {'MB/s':>8} {'cpu us/MiB':>11}")
    for size in (64 << 10, 256 << 10, 1 << 20):
        for how in ("direct", "send_zc"):
            mbs, cpu = trio_uring.run(_run, how, size, args.seconds)
            print(f"{size >> 10:>6}Ki {how:>8} {mbs:8.0f} {cpu:11.1f}", flush=True)


if __name__ == "__main__":
    main()
