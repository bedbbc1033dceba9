"""One worker process of ``serve_tcp_workers``: its own ``trio_uring.run``, ring and listeners.

Started by the supervisor as a fresh interpreter (never forked: a forked child would share
the parent's ring, if it had one). It gets one end of a socketpair: the supervisor writes the
worker's configuration there, and the worker answers one line, ``ready`` or the reason it
could not start. The listening sockets are inherited file descriptors that the supervisor
created (in queue order, see ``_steering.py``) and keeps open, so a restarted worker takes
over the same accept queue and nothing queued there while it was down is lost.

Ending: the supervisor's ``stop`` on the socketpair, a SIGTERM (from a service manager, or
from the kernel when the supervisor dies: ``PR_SET_PDEATHSIG``) or the supervisor's end of
the socketpair closing stops accepting and closes the listeners; connections then get
``grace`` seconds before they are cancelled; ``hurry`` or a second SIGTERM cancels them at
once. SIGINT is ignored: Ctrl-C in a
terminal reaches the whole process group, and the supervisor decides what it means.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import pickle
import signal
import socket as _stdlib
import struct
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._core._errors import UringUnavailable

__all__ = ["main", "worker_zc_queue"]

_PR_SET_PDEATHSIG = 1
#: How long after the end began a worker exits regardless (``grace`` + this): a worker whose
#: supervisor is gone must not outlive it by a handler that ignores cancellation.
HARD_EXIT_AFTER_GRACE = 3.0

_zc_queue: tuple[str, int] | None = None
#: True while a worker re-imports the supervisor's main module (see ``main``)
bootstrapping = False


def worker_zc_queue() -> tuple[str | None, int | None]:
    """This worker's zero-copy queue under ``serve_tcp_workers(zc=...)``, else ``(None, None)``.

    ``open_zc_receiver`` uses it when called without ``interface=`` and ``queue=``: a
    connection's receiver then registers on the queue its packets arrive on.
    """
    return _zc_queue if _zc_queue is not None else (None, None)


def _send(ctl: _stdlib.socket, **msg: Any) -> None:
    with _suppress_oserror():
        ctl.sendall(json.dumps(msg).encode() + b"\n")


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


def _read_config(ctl: _stdlib.socket) -> dict[str, Any]:
    def exactly(n: int) -> bytes:
        got = b""
        while len(got) < n:
            chunk = ctl.recv(n - len(got))
            if not chunk:
                raise EOFError("the supervisor closed the control socket before sending the configuration")
            got += chunk
        return got

    (size,) = struct.unpack("!I", exactly(4))
    cfg: dict[str, Any] = pickle.loads(exactly(size))
    return cfg


def _set_pdeathsig(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class _Ending:
    """The worker's end: first stop accepting, then ``grace``, then cancel the connections."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.stopping = trio.Event()
        self.hurry = False
        self.connections: trio.CancelScope | None = None

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            # Whatever a handler does, a worker whose end began is gone within grace + 3 s.
            timer = threading.Timer(self.grace + HARD_EXIT_AFTER_GRACE, os._exit, (70,))
            timer.daemon = True
            timer.start()

    def hurry_up(self) -> None:
        self.stop()
        self.hurry = True
        if self.connections is not None:
            self.connections.cancel()


async def _watch_signals(ending: _Ending, signals: Any) -> None:
    # The first SIGTERM stops, the next ones hurry. Counted apart from the supervisor's
    # ``stop``, which may come first for the same event (a service manager signalling the
    # whole group: the supervisor passes it on as ``stop``).
    count = 0
    async for _ in signals:
        count += 1
        if count == 1:
            ending.stop()
        else:
            ending.hurry_up()


def _watch_supervisor(ending: _Ending, ctl: _stdlib.socket, token: trio.lowlevel.TrioToken) -> None:
    """A thread: the supervisor's words (``stop``, ``hurry``), and the end of its socket.

    The supervisor speaks here rather than by SIGTERM because a service manager may also
    signal the whole process group: a worker counting SIGTERMs would take the supervisor's
    forwarded one for a second, hurried, stop. The socket closing means the supervisor is
    gone (``PR_SET_PDEATHSIG`` usually says so first). In a thread, so that the hard exit
    ``grace`` + 3 s later happens even if a handler never yields to trio again.
    """
    buf = b""
    while True:
        try:
            data = ctl.recv(64)
        except OSError:
            data = b""
        if not data:
            break
        buf += data
        while b"\n" in buf:
            word, buf = buf.split(b"\n", 1)
            act = ending.hurry_up if word == b"hurry" else ending.stop
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(act)
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(ending.stop)
    time.sleep(ending.grace + HARD_EXIT_AFTER_GRACE)
    os._exit(70)


async def _serve(
    ctl: _stdlib.socket, cfg: dict[str, Any], handler: Callable[[Any], Awaitable[object]]
) -> None:
    from trio_uring import UringSocketListener, backend  # noqa: PLC0415 - after the run began
    from trio_uring.socket import from_stdlib_socket  # noqa: PLC0415

    from ._serve import accept_loop  # noqa: PLC0415

    socks = [_stdlib.socket(fileno=fd) for fd in cfg["fds"]]
    for sock in socks:  # a handler's child processes must not keep the port
        sock.set_inheritable(False)
    listeners = [UringSocketListener(from_stdlib_socket(sock)) for sock in socks]
    ending = _Ending(cfg["grace"])
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as watchers:
            watchers.start_soon(_watch_signals, ending, signals)
            threading.Thread(
                target=_watch_supervisor,
                args=(ending, ctl, trio.lowlevel.current_trio_token()),
                name="trio_uring-supervisor-watch",
                daemon=True,
            ).start()
            async with trio.open_nursery() as connections:
                ending.connections = connections.cancel_scope
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(accept_loop, listener, connections, handler)
                    _send(ctl, ready=True, backend=backend(), pid=os.getpid())
                    await ending.stopping.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:  # new connections now go to the other workers
                    await listener.aclose()
                connections.cancel_scope.deadline = (
                    -math.inf if ending.hurry else trio.current_time() + cfg["grace"]
                )
            watchers.cancel_scope.cancel()


def _reason(exc: BaseException) -> str:
    """One line for the supervisor: the innermost error, out of trio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return "".join(traceback.format_exception_only(exc)).strip()


def main() -> None:
    """The worker's entry point: ``python -c '...; main()' CONTROL_FD``."""
    ctl = _stdlib.socket(fileno=int(sys.argv[1]))
    ctl.set_inheritable(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import trio_uring  # noqa: PLC0415 - this module is imported by trio_uring itself

    try:
        _set_pdeathsig(signal.SIGTERM)
        cfg = _read_config(ctl)
        if os.getppid() != cfg["parent"]:  # the supervisor died before the prctl took effect
            sys.exit(1)
        if cfg["cpu"] is not None:
            os.sched_setaffinity(0, {cfg["cpu"]})
        import multiprocessing.spawn  # noqa: PLC0415 - only workers need it

        # sys.path, the working directory and the main module as the supervisor had them
        # (what multiprocessing's spawn does), so the handler unpickles by reference.
        global _zc_queue, bootstrapping  # noqa: PLW0603 - one worker, one queue, for the process's life
        bootstrapping = True
        try:
            multiprocessing.spawn.prepare(cfg["prep"])
            handler = pickle.loads(cfg["handler"])
        finally:
            bootstrapping = False
        if cfg["zc"] is not None:
            _zc_queue = cfg["zc"]
        with warnings.catch_warnings():
            if cfg["quiet_fallback"]:  # the supervisor warned once for all of us
                warnings.filterwarnings("ignore", "io_uring is unavailable", RuntimeWarning)
            trio_uring.run(_serve, ctl, cfg, handler, fallback=cfg["fallback"])
    except UringUnavailable as exc:
        _send(ctl, error=f"io_uring is unavailable: {exc}")
        sys.exit(1)
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        # Before "ready" the supervisor reports this line; after it, the traceback explains.
        _send(ctl, error=_reason(exc))
        traceback.print_exc()
        sys.exit(1)
