"""io_uring sockets with the ``trio.socket`` interface."""

from ._net._factory import (
    UringSocketFactory,
    from_stdlib_socket,
    install_socket_factory,
    socket,
    socketpair,
)
from ._net._rxbuf import configure_receive_buffers
from ._net._socket import UringSocket, configure_send

__all__ = [
    "UringSocket",
    "UringSocketFactory",
    "configure_receive_buffers",
    "configure_send",
    "from_stdlib_socket",
    "install_socket_factory",
    "socket",
    "socketpair",
]
