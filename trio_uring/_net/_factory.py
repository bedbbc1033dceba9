"""Making trio's sockets io_uring sockets: ``socket``, ``socketpair``, ``from_stdlib_socket``,
the socket factory and the routing of stdlib sockets handed to trio.

Apart from ``UringSocket`` because this reaches code that does not call trio-uring:
trio's socket factory ``RunVar``, and a stand-in for ``trio.socket.from_stdlib_socket``
bound in ``trio.socket`` and ``trio._socket`` while anyone uses it.
"""

from __future__ import annotations

import contextlib
import socket as _stdlib
import threading
from collections.abc import Iterator

import trio
import trio._socket
from trio.lowlevel import RunVar

from ._socket import UringSocket

__all__ = [
    "UringSocketFactory",
    "from_stdlib_socket",
    "install_socket_factory",
    "route_all_sockets",
    "socket",
    "socketpair",
    "uring_sockets_for_call",
]


def from_stdlib_socket(sock: _stdlib.socket) -> UringSocket:
    """Wrap an existing stdlib socket (it becomes non-blocking and owned by the result).

    :raises TypeError: ``sock`` is not a ``socket.socket``.
    """
    return UringSocket(sock)


def socket(
    family: int = _stdlib.AF_INET, type: int = _stdlib.SOCK_STREAM, proto: int = 0, fileno: int | None = None
) -> UringSocket:
    """Like ``trio.socket.socket``, returning a :class:`UringSocket`.

    :raises OSError: the kernel refused to create the socket.
    """
    if fileno is not None:
        return UringSocket(_stdlib.socket(family, type, proto, fileno))
    return UringSocket(_stdlib.socket(family, type, proto))


def socketpair(
    family: int = _stdlib.AF_UNIX, type: int = _stdlib.SOCK_STREAM, proto: int = 0
) -> tuple[UringSocket, UringSocket]:
    """Like ``trio.socket.socketpair``, returning two connected :class:`UringSocket` objects.

    :raises OSError: the kernel refused to create the pair.
    """
    a, b = _stdlib.socketpair(family, type, proto)
    return UringSocket(a), UringSocket(b)


class UringSocketFactory(trio.abc.SocketFactory):
    """For ``trio.socket.set_custom_socket_factory``: every trio socket becomes a UringSocket."""

    def socket(
        self, family: int | None = None, type: int | None = None, proto: int = 0
    ) -> trio.socket.SocketType:
        """A :class:`UringSocket` for IPv4, IPv6 and Unix sockets; trio's own for other families."""
        fam = _stdlib.AF_INET if family is None else family
        kind = _stdlib.SOCK_STREAM if type is None else type
        if fam not in _FAMILIES:  # netlink, packet...: trio's own socket, as without a factory
            return _TRIO_FROM_STDLIB(_stdlib.socket(fam, kind, proto))
        return socket(fam, kind, proto)


#: Families a UringSocket handles; trio keeps its own sockets for the rest (netlink, packet...).
_FAMILIES = frozenset({_stdlib.AF_INET, _stdlib.AF_INET6, _stdlib.AF_UNIX})
#: trio's own ``from_stdlib_socket``, kept while the hook below stands in for it.
_TRIO_FROM_STDLIB = trio.socket.from_stdlib_socket
#: Set by ``install_socket_factory`` for its run: wrapped stdlib sockets become UringSockets too.
_ROUTED: RunVar[bool] = RunVar("trio_uring_routed", default=False)


class _Routing:
    """Who needs the hook: runs with a factory (``users``), and process-wide routing
    (``everywhere``: ``route_all_sockets``, used by the pytest plugin and ``TRIO_URING=1``)."""

    lock = threading.Lock()
    users = 0
    everywhere = 0


def _from_stdlib_socket_hook(sock: _stdlib.socket) -> trio.socket.SocketType:
    """trio's ``from_stdlib_socket`` while a factory is installed: libraries that bind their own
    listeners (hypercorn, anyio) hand trio a stdlib socket, which never meets the socket factory."""
    if type(sock) is _stdlib.socket and sock.family in _FAMILIES and (_Routing.everywhere or _routed()):
        return UringSocket(sock)
    return _TRIO_FROM_STDLIB(sock)


def _routed() -> bool:
    try:
        return _ROUTED.get()
    except RuntimeError:  # outside a run
        return False


def _hook(delta: int) -> None:
    """Count users of the hook; it stands in ``trio.socket`` (and in ``trio._socket``, whose
    ``socket``, ``socketpair`` and ``fromfd`` call it) while anyone uses it."""
    with _Routing.lock:
        _Routing.users += delta
        fn = _from_stdlib_socket_hook if _Routing.users else _TRIO_FROM_STDLIB
        trio.socket.from_stdlib_socket = fn
        trio._socket.from_stdlib_socket = fn


@contextlib.contextmanager
def route_all_sockets() -> Iterator[None]:
    """Process-wide while active: every socket trio creates or wraps, in every run, is a UringSocket."""
    _hook(1)
    with _Routing.lock:
        _Routing.everywhere += 1
    try:
        yield
    finally:
        with _Routing.lock:
            _Routing.everywhere -= 1
        _hook(-1)


class install_socket_factory:
    """For this run, make trio create io_uring sockets (``open_tcp_stream``, ``serve_tcp``...).

    Stdlib sockets handed to ``trio.socket.from_stdlib_socket`` (hypercorn's and anyio's
    listeners) become io_uring sockets too. Takes effect at the call and lasts for the rest
    of the run; used as a context manager, the previous factory comes back on exit.

    :raises RuntimeError: called outside a trio run.
    """

    def __init__(self) -> None:
        self.factory = UringSocketFactory()
        self._previous = trio.socket.set_custom_socket_factory(self.factory)
        self._token = _ROUTED.set(True)
        self._hooked = True
        _hook(1)  # inert outside runs that installed a factory; dropped by __exit__

    def __enter__(self) -> UringSocketFactory:
        return self.factory

    def __exit__(self, *exc: object) -> None:
        current = trio.socket.set_custom_socket_factory(self._previous)
        if current is not self.factory:  # someone installed theirs since: it stays
            trio.socket.set_custom_socket_factory(current)
        with contextlib.suppress(ValueError, RuntimeError):  # reset in another run / context
            _ROUTED.reset(self._token)
        if self._hooked:
            self._hooked = False
            _hook(-1)


class _CallScope:
    """How many calls in this run need io_uring sockets right now, and the factory installed
    for them (None when one was there already)."""

    __slots__ = ("count", "installed")

    def __init__(self) -> None:
        self.count = 0
        self.installed: install_socket_factory | None = None


_CALL_SCOPE: RunVar[_CallScope] = RunVar("trio_uring_call_scope")


@contextlib.contextmanager
def uring_sockets_for_call() -> Iterator[None]:
    """io_uring sockets for what trio creates inside the block (``open_tcp_stream`` and
    ``open_tcp_listeners`` use it), without a factory of the run's own.

    The factory is per run and the block awaits, so calls that overlap share one
    installation, removed when the last of them ends: one call's exit never takes the
    factory away from another's connect attempts still under way.
    """
    try:
        scope = _CALL_SCOPE.get()
    except LookupError:
        scope = _CallScope()
        _CALL_SCOPE.set(scope)
    if scope.count == 0:
        current = trio.socket.set_custom_socket_factory(None)
        trio.socket.set_custom_socket_factory(current)
        routed = isinstance(current, UringSocketFactory) and _routed()
        scope.installed = None if routed else install_socket_factory()
    scope.count += 1
    try:
        yield
    finally:
        scope.count -= 1
        if scope.count == 0 and scope.installed is not None:
            installed, scope.installed = scope.installed, None
            installed.__exit__(None, None, None)
