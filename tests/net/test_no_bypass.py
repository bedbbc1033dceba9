"""No silent bypass: servers that bind their own listeners (hypercorn, anyio) and hand trio a
stdlib socket get io_uring sockets while the factory is installed, and ``TRIO_URING=1``
reaches the worker processes hypercorn spawns."""

from __future__ import annotations

import errno
import inspect
import os
import signal
import socket as stdsocket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

import trio_uring
from trio_uring.socket import UringSocket

from .._subproc import run_python


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[UringSocket, bool]]:
    """Every UringSocket created during the test, with whether it wrapped a listening socket."""
    created: list[tuple[UringSocket, bool]] = []
    original = UringSocket.__init__

    def counting(self: UringSocket, sock: stdsocket.socket, **kwargs: Any) -> None:
        original(self, sock, **kwargs)
        created.append((self, bool(sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ACCEPTCONN))))

    monkeypatch.setattr(UringSocket, "__init__", counting)
    return created


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that says which backend served it."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = trio_uring.backend().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _get(port: int) -> bytes:
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            async for chunk in stream:
                data += chunk
    return data


@pytest.mark.trio(run=trio_uring.run)
async def test_hypercorn_trio_worker_serves_on_io_uring_sockets(made: list[tuple[UringSocket, bool]]) -> None:
    with trio_uring.install_socket_factory():
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = config.errorlog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, _app, config)
            port = int(binds[0].rsplit(":", 1)[1])
            response = await _get(port)
            nursery.cancel_scope.cancel()
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"io_uring"), response
    # the listener hypercorn bound itself, the connection it accepted, our client
    assert len(made) >= 3
    assert [listening for _, listening in made].count(True) == 1  # hypercorn's own listener


@pytest.mark.skipif(
    len(inspect.signature(trio.CancelScope.cancel).parameters) < 2,
    reason="this anyio calls CancelScope.cancel(reason), which this trio lacks",
)
async def test_anyio_tcp_listener_serves_on_io_uring_sockets(made: list[tuple[UringSocket, bool]]) -> None:
    # pytest-trio's plain trio.run: the hook needs no io_uring IO manager
    with trio_uring.install_socket_factory():
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await stream.send(await stream.receive())

        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(listener.serve, handle)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(b"anyio on io_uring")
                assert await client.receive() == b"anyio on io_uring"
            nursery.cancel_scope.cancel()
    kinds = {type(listener.extra(anyio.abc.SocketAttribute.raw_socket))}
    assert kinds == {stdsocket.socket}
    # the listener anyio bound, the connection it accepted, the client anyio connected
    assert len(made) == 3, made
    assert [listening for _, listening in made].count(True) == 1


async def test_hook_is_removed_after_the_factory_block() -> None:
    original = trio.socket.from_stdlib_socket
    with trio_uring.install_socket_factory():
        assert trio.socket.from_stdlib_socket is not original
        a, b = stdsocket.socketpair()
        wrapped = trio.socket.from_stdlib_socket(a)
        assert isinstance(wrapped, UringSocket)
        wrapped.close()
    assert trio.socket.from_stdlib_socket is original
    plain = trio.socket.from_stdlib_socket(b)
    assert not isinstance(plain, UringSocket)
    plain.close()


async def test_other_families_keep_trios_sockets() -> None:
    with trio_uring.install_socket_factory():
        raw = stdsocket.socket(stdsocket.AF_NETLINK, stdsocket.SOCK_RAW)
        sock = trio.socket.from_stdlib_socket(raw)
        with sock:
            assert not isinstance(sock, UringSocket)


def test_hook_is_inert_in_runs_without_the_factory() -> None:
    # a factory installed in another run (another thread) does not reach this one
    installed, release = threading.Event(), threading.Event()

    async def other() -> None:
        trio_uring.install_socket_factory()
        installed.set()
        await trio.to_thread.run_sync(release.wait, 10)

    async def here() -> list[type[object]]:
        a, b = trio.socket.socketpair()
        with a, b:
            return [type(a), type(b)]

    thread = threading.Thread(target=trio.run, args=(other,))
    thread.start()
    try:
        assert installed.wait(10)
        assert UringSocket not in trio.run(here)
    finally:
        release.set()
        thread.join(10)


# ---- TRIO_URING=1 reaches spawned worker processes -------------------------------------------

WORKER_APP = """
import gc, os
import trio_uring
from trio_uring.socket import UringSocket


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    sockets = sum(isinstance(o, UringSocket) for o in gc.get_objects())
    body = f"{os.getpid()} {trio_uring.backend()} {sockets}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def _free_port() -> int:
    with stdsocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(port: int, timeout: float) -> bytes:
    with stdsocket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


@pytest.fixture
def hypercorn_workers(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    (tmp_path / "uring_app.py").write_text(textwrap.dedent(WORKER_APP))
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--worker-class",
            "trio",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "uring_app:app",
        ],
        cwd=tmp_path,
        env={**os.environ, "TRIO_URING": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - hypercorn stuck
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_trio_uring_env_reaches_hypercorn_spawned_workers(
    hypercorn_workers: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = hypercorn_workers
    deadline = time.monotonic() + 30
    answers: dict[int, tuple[str, int]] = {}
    attempts = 0
    while len(answers) < 2 and time.monotonic() < deadline and attempts < 200:
        attempts += 1
        try:
            response = _http_get(port, timeout=5)
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            time.sleep(0.1)
            continue
        pid, backend, count = response.rsplit(b"\r\n\r\n", 1)[1].decode().split()
        answers[int(pid)] = (backend, int(count))
    assert len(answers) == 2, answers  # both spawned workers answered
    for worker, (backend, sockets) in answers.items():
        assert backend == "io_uring", (worker, backend)
        assert sockets >= 2, (worker, sockets)  # the inherited listener and the connection
    assert proc.pid not in answers


async def test_the_factory_leaves_other_families_to_trio() -> None:
    """A netlink socket made through ``trio.socket.socket`` while the factory is installed is
    trio's own (a UringSocket would try to resolve its address as a host name)."""
    with trio_uring.install_socket_factory():
        s = trio.socket.socket(stdsocket.AF_NETLINK, stdsocket.SOCK_RAW, 0)
        with s:
            assert not isinstance(s, UringSocket)
            await s.bind((0, 0))


def test_fallback_run_uses_stock_trio_even_while_io_uring_is_installed_process_wide() -> None:
    res = run_python(
        """
import warnings, trio, trio_uring
async def main():
    return trio_uring.backend()
with trio_uring.lowlevel.install_io_manager(), warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    print("BACKEND", trio_uring.run(main, fallback=True))
""",
        refuse={"setup": errno.EPERM},
    )
    assert "BACKEND epoll" in res.stdout, (res.stdout, res.stderr)


def test_trio_uring_fallback_env_costs_nothing_in_an_interpreter_that_never_runs_trio() -> None:
    """``TRIO_URING=fallback`` is read by every interpreter that starts (pip, any subprocess):
    one that never starts a trio run tries no io_uring syscall and prints no warning, even
    where seccomp refuses io_uring (the filter is in place before that interpreter starts)."""
    res = run_python(
        """
import os, sys
env = dict(os.environ, TRIO_URING="fallback")
os.execve(sys.executable, [sys.executable, "-c", "print('quiet')"], env)
""",
        refuse={"setup": errno.EPERM},
    )
    assert res.stdout.strip() == "quiet" and res.stderr == "", res
