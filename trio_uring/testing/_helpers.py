"""Helpers for users' test suites: connected io_uring streams over loopback."""

from __future__ import annotations

import socket as _stdlib

from .._net._factory import from_stdlib_socket
from .._net._stream import UringSocketStream

__all__ = ["connected_stream_pair"]


def connected_stream_pair() -> tuple[UringSocketStream, UringSocketStream]:
    """A loopback TCP connection as two io_uring streams (client, server).

    TCP rather than a Unix socketpair: zero-copy receive (zcrx) takes TCP only, so a receiver
    over the pair uses the best mode the machine has.
    """
    with _stdlib.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        client = _stdlib.create_connection(lsock.getsockname())
        try:
            server, _ = lsock.accept()
        except BaseException:
            client.close()
            raise
    return UringSocketStream(from_stdlib_socket(client)), UringSocketStream(from_stdlib_socket(server))
