"""Socket addresses in kernel layout, for connect/accept SQEs (the kernel reads them later)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from .._native import ffi

__all__ = ["decode_sockaddr", "encode_sockaddr"]

_SOCKADDR_STORAGE = 128


def encode_sockaddr(family: int, address: Any) -> tuple[Any, int]:
    """(buffer, length) of ``address`` as a ``struct sockaddr_*``; the buffer must outlive the op.

    ``address`` must already be numeric (trio resolves names before connect).
    """
    if family == socket.AF_INET:
        host, port = address[0], address[1]
        raw = (
            struct.pack("=H", socket.AF_INET)
            + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, host)
            + b"\0" * 8
        )
    elif family == socket.AF_INET6:
        host, port = address[0], address[1]
        flowinfo = address[2] if len(address) > 2 else 0
        scope = address[3] if len(address) > 3 else 0
        raw = (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", port, flowinfo)
            + socket.inet_pton(socket.AF_INET6, host)
            + struct.pack("=I", scope)
        )
    elif family == socket.AF_UNIX:
        path = address.encode() if isinstance(address, str) else bytes(address)
        if len(path) >= 108:
            raise ValueError(f"AF_UNIX path too long ({len(path)} bytes, limit 107)")
        raw = struct.pack("=H", socket.AF_UNIX) + path + (b"" if path[:1] == b"\0" else b"\0")
    else:
        raise ValueError(f"unsupported address family {family!r}")
    buf = ffi.new("char[]", _SOCKADDR_STORAGE)
    ffi.memmove(buf, raw, len(raw))
    return buf, len(raw)


def decode_sockaddr(buf: Any, length: int) -> Any:
    """The Python form (as the socket module gives it) of a kernel ``struct sockaddr``."""
    raw = ffi.buffer(buf, length)[:]
    if length < 2:
        return None
    (family,) = struct.unpack_from("=H", raw)
    if family == socket.AF_INET:
        (port,) = struct.unpack_from("!H", raw, 2)
        return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if family == socket.AF_INET6:
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        (scope,) = struct.unpack_from("=I", raw, 24)
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flowinfo, scope)
    if family == socket.AF_UNIX:
        path = raw[2:length]
        if path[:1] == b"\0":
            return path
        return path.split(b"\0", 1)[0].decode(errors="surrogateescape")
    return raw
