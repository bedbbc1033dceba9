"""Handlers for the worker-pool tests: importable by name, since each worker is a new process.

Kept apart from the test module so a worker imports only this (and trio_uring), not pytest.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import trio


async def _lines(stream: Any) -> AsyncIterator[bytes]:
    """Each newline-terminated line the peer sends, without the newline, until end of stream."""
    buf = b""
    while data := await stream.receive_some(4096):
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line


async def whoami(stream: Any) -> None:
    """Answer every line with this worker's pid (which worker got the connection)."""
    async for _ in _lines(stream):
        await stream.send_all(b"%d\n" % os.getpid())


async def journal(stream: Any) -> None:
    """A request is a line ``ID``; it is recorded in $TU_JOURNAL_DIR/<pid> (fsync'd), then
    acknowledged with ``ok ID``. Each request takes 50 ms, so shutdown finds some in flight."""
    path = os.path.join(os.environ["TU_JOURNAL_DIR"], str(os.getpid()))
    async for line in _lines(stream):
        await trio.sleep(0.05)
        with open(path, "ab") as f:
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        await stream.send_all(b"ok " + line + b"\n")


async def crash(stream: Any) -> None:
    """Raise on the first byte: the worker ends, the supervisor restarts it."""
    await stream.receive_some(1)
    raise RuntimeError("handler failed on purpose")


def not_async(stream: Any) -> None:
    """A plain function: refused before any worker starts."""


async def zc_report(stream: Any) -> None:
    """Open a zero-copy receiver without interface/queue, answer with what it registered on."""
    from trio_uring import open_zc_receiver  # noqa: PLC0415
    from trio_uring._net._worker import worker_zc_queue  # noqa: PLC0415

    async with open_zc_receiver(stream) as rx:
        lease = await rx.receive()
        with lease:
            got = bytes(lease.data)
        report = f"{worker_zc_queue()}|{rx.mode}|{rx.statistics().fallback_reason}|{got!r}\n"
    await stream.send_all(report.encode())


async def zc_digest(stream: Any) -> None:
    """Receive to end of stream through a zero-copy receiver on this worker's default queue;
    answer one JSON line: the queue, the mode, the byte count and the SHA-256 of the bytes."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    from trio_uring import open_zc_receiver  # noqa: PLC0415
    from trio_uring._net._worker import worker_zc_queue  # noqa: PLC0415

    digest, total = hashlib.sha256(), 0
    async with open_zc_receiver(stream) as rx:
        while batch := await rx.receive_batch():
            for lease in batch:
                with lease:
                    digest.update(lease.data)
                    total += lease.nbytes
        mode, reason = rx.mode, rx.statistics().fallback_reason
    report = {"queue": worker_zc_queue(), "mode": mode, "reason": reason, "bytes": total}
    report["sha256"] = digest.hexdigest()
    await stream.send_all(json.dumps(report).encode() + b"\n")


async def stuck(stream: Any) -> None:
    """Block the worker's only thread (a handler that never yields) once a byte came."""
    import time  # noqa: PLC0415

    await stream.receive_some(1)
    time.sleep(60)
