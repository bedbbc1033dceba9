"""``ReceiveSide``: a stream socket's receive side, lent to a zero-copy receiver.

A module of its own so that ``zerocopy`` borrows a socket's receive side through this
interface alone (take over what the stream queued, give back what it did not use);
the socket itself only refuses its own receives while the side is lent and tells the
borrower when it closes. ``_socket`` names ``ReceiveSide`` in annotations only, so
importing ``_socket`` here makes no cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._rxbuf import Handover
from ._socket import _check_owner

if TYPE_CHECKING:
    from ._socket import UringSocket

__all__ = ["ReceiveSide", "claim_receive_side"]


class ReceiveSide:
    """A stream socket's receive side, lent to a zero-copy receiver for its block.

    While lent, the socket's own receives raise ``BusyResourceError``; closing the socket
    calls ``on_close`` (the receiver stops at once). :meth:`take_over` hands the borrower
    what the stream had queued, :meth:`give_back` returns the side with what it did not use.
    """

    __slots__ = ("closed", "fd", "on_close", "sock", "thread", "token")

    def __init__(self, sock: UringSocket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        #: The borrowing run: a close from another thread is handed to it (its ring, its tasks).
        self.thread = threading.get_ident()
        self.token = trio.lowlevel.current_trio_token()
        #: The socket was closed (by any task) while lent.
        self.closed = False
        self.on_close: Callable[[], None] | None = None

    @property
    def usable(self) -> bool:
        """Still this socket's open fd: an op armed on the number now would reach it."""
        return not self.closed and self.sock.fileno() == self.fd

    async def take_over(self) -> Handover:
        """Stop the stream's own receive op; everything it had queued, and how it ended."""
        sock = self.sock
        srx = sock._rx
        if srx is not None and srx.detached:  # an earlier run's data carries over
            srx = sock._receiver()
        if srx is None:
            return Handover(b"", False, None)
        return await srx.hand_over()

    def socket_closed(self) -> None:
        self.closed = True
        if self.on_close is not None:
            self.on_close()

    def give_back(self, data: bytes, *, eof: bool, error: OSError | None) -> None:
        """End the loan: ``data`` (taken from the socket, not handed out) goes back in front
        of the stream with the end it saw, and the stream may receive again."""
        sock = self.sock
        if sock._lent is self:
            sock._lent = None
        try:
            if self.usable and (data or eof or error is not None):
                srx = sock._receiver()
                if srx is not None:
                    srx.give_back(data, eof=eof, error=error)
        finally:
            sock._recv_conflict.held = False


def claim_receive_side(sock: UringSocket) -> ReceiveSide:
    """Lend ``sock``'s receive side to a zero-copy receiver (``BusyResourceError`` if in use,
    or if a live run in another thread owns it)."""
    _check_owner(sock)
    if sock._recv_conflict.held:
        raise trio.BusyResourceError(
            "this socket's receive side is in use: another task is receiving from it, or another "
            "zero-copy receiver is open on it"
        )
    sock._recv_conflict.held = True
    side = sock._lent = ReceiveSide(sock)
    return side
