"""Helpers shared by the test suites: runners, connected stream pairs, payloads to check.

Shared fixtures (``run``, ``ring``, ``no_fd_leak``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import random
import socket as stdsocket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from trio_uring import UringSocketStream
from trio_uring.socket import from_stdlib_socket

Runner = Callable[..., Any]
MiB = 1 << 20


def load_module(name: str, path: Path) -> ModuleType:
    """A Python file that is not an importable module (a script, a build file), loaded as ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def uring_pair() -> tuple[UringSocketStream, UringSocketStream]:
    """Two connected io_uring streams over a Unix socketpair."""
    a, b = stdsocket.socketpair()
    return UringSocketStream(from_stdlib_socket(a)), UringSocketStream(from_stdlib_socket(b))


def tcp_pair() -> tuple[UringSocketStream, UringSocketStream]:
    """A loopback TCP connection as two io_uring streams (zcrx receives TCP only)."""
    with stdsocket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        c = stdsocket.create_connection(lsock.getsockname())
        s, _ = lsock.accept()
    return UringSocketStream(from_stdlib_socket(c)), UringSocketStream(from_stdlib_socket(s))


def stream_and_peer() -> tuple[UringSocketStream, stdsocket.socket]:
    """An io_uring stream over one end of a Unix socketpair; the other end, non-blocking, is the
    test's peer (plain syscalls, nothing of ours in between)."""
    a, b = stdsocket.socketpair()
    b.setblocking(False)
    return UringSocketStream(from_stdlib_socket(a)), b


async def warm(stream: UringSocketStream, peer: stdsocket.socket) -> None:
    """One exchange each way: a socket's first use finds its run's ring (the streams' general
    path), so the calls after it can take the flat one."""
    import trio  # noqa: PLC0415 - the helpers above need no trio

    peer.send(b"w")
    with trio.fail_after(5):
        assert await stream.receive_some() == b"w"
    await stream.send_all(b"w")
    assert peer.recv(10) == b"w"


@contextlib.asynccontextmanager
async def warm_stream_and_peer() -> AsyncIterator[tuple[UringSocketStream, stdsocket.socket]]:
    """:func:`stream_and_peer` after :func:`warm`; both closed at the end."""
    stream, peer = stream_and_peer()
    with stream.socket, peer:
        await warm(stream, peer)
        yield stream, peer


def in_child_task(fn: Callable[[], Awaitable[None]], runner: Runner | None = None) -> None:
    """Runs ``fn`` in a child task (as a server's handlers run), under ``runner``
    (``trio_uring.run`` by default)."""
    import trio  # noqa: PLC0415

    import trio_uring  # noqa: PLC0415

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fn)

    (runner or trio_uring.run)(main)


async def receive_exactly(stream: Any, n: int, *, timeout: float = 5, max_bytes: int | None = None) -> bytes:
    """Read until ``n`` bytes came (or the end of stream), failing after ``timeout`` seconds."""
    import trio  # noqa: PLC0415 - the helpers above need no trio

    got = bytearray()
    with trio.fail_after(timeout):
        while len(got) < n:
            data = await stream.receive_some(max_bytes)
            if not data:
                break
            got += data
    return bytes(got)


def blocks(total: int, seed: int = 0, size: int = MiB) -> Iterator[bytes]:
    """``total // size`` blocks of ``size`` bytes, each distinct: its index on seeded random bytes."""
    base = random.Random(seed).randbytes(size)
    for k in range(total // size):
        yield k.to_bytes(8, "big") + base[8:]


def digest(total: int, seed: int = 0, size: int = MiB) -> bytes:
    """SHA-256 of what :func:`blocks` yields for the same arguments."""
    h = hashlib.sha256()
    for b in blocks(total, seed, size):
        h.update(b)
    return h.digest()


def copy_bufs(rx: Any) -> Any:
    """The buffer ring of a ``copy``-mode receiver (its source's)."""
    from trio_uring.zerocopy._sources import CopySource  # noqa: PLC0415 - only tests that need it

    assert isinstance(rx._source, CopySource), rx._source
    return rx._source.bufs


def zcrx_ifq(rx: Any) -> Any:
    """The interface queue of a ``zcrx`` or ``zcrx-nodev`` receiver (its source's)."""
    from trio_uring.zerocopy._sources import ZcrxSource  # noqa: PLC0415 - only tests that need it

    assert isinstance(rx._source, ZcrxSource), rx._source
    return rx._source.ifq
