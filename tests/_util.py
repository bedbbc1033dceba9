"""Helpers shared by the test suites: runners and connected stream pairs."""

from __future__ import annotations

import socket as stdsocket
from collections.abc import Callable
from typing import Any

from trio_uring import UringSocketStream
from trio_uring.socket import from_stdlib_socket

Runner = Callable[..., Any]


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
