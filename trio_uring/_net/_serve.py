"""Serving listeners: ``trio.serve_listeners``' loop, ending each connection in one step less.

trio's loop ends every handler task with ``aclose_forcefully(stream)``: ``aclose`` inside a
cancelled scope, whose checkpoint costs two more scheduler passes and a ``Cancelled`` raised
and caught, per connection. Closing an io_uring stream never waits (``close`` hands what is
in flight to the run: see ``UringSocket.close``), so here the handler's task closes it and
ends. Everything else is trio's: the capacity errors ``accept`` retries after a pause, the
rest ending the server, listeners closed when it ends, ``handler_nursery``.
"""

from __future__ import annotations

import errno as _errno
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import trio

from ._stream import UringSocketStream

__all__ = ["accept_loop", "serve_listeners", "serve_one"]

#: As trio's: accept errors that mean "overloaded for now" (retried after SLEEP_TIME).
ACCEPT_CAPACITY_ERRNOS = frozenset({_errno.EMFILE, _errno.ENFILE, _errno.ENOMEM, _errno.ENOBUFS})
SLEEP_TIME = 0.1
LOGGER = logging.getLogger("trio_uring.serve_listeners")

Handler = Callable[[Any], Awaitable[object]]


async def serve_one(handler: Handler, stream: Any) -> None:
    """Run ``handler(stream)``, then close the stream however the handler ended."""
    try:
        await handler(stream)
    finally:
        if type(stream) is UringSocketStream:
            stream.socket.close()  # at once: nothing to wait for, no checkpoint needed
        else:
            await trio.aclose_forcefully(stream)


async def accept_loop(listener: trio.abc.Listener[Any], handler_nursery: Any, handler: Handler) -> NoReturn:
    """Accept forever, one :func:`serve_one` task per connection in ``handler_nursery``."""
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            LOGGER.error(
                "accept returned %s (%s); retrying in %s seconds",
                _errno.errorcode[exc.errno],
                os.strerror(exc.errno),
                SLEEP_TIME,
                exc_info=True,
            )
            await trio.sleep(SLEEP_TIME)
        else:
            handler_nursery.start_soon(serve_one, handler, stream)


async def _serve_one_listener(
    listener: trio.abc.Listener[Any], handler_nursery: Any, handler: Handler
) -> NoReturn:
    async with listener:
        await accept_loop(listener, handler_nursery, handler)


async def serve_listeners(
    handler: Handler,
    listeners: list[Any],
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``trio.serve_listeners`` (same arguments and behaviour; see the module docstring)."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_serve_one_listener, listener, handler_nursery or nursery, handler)
        task_status.started(listeners)
    raise AssertionError("_serve_one_listener never returns")  # pragma: no cover
