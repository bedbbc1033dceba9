"""``trio_uring.run``: trio's own run loop with ``UringIOManager`` installed for that run.

trio chooses its IO manager by calling the module global ``trio._core._run.TheIOManager``
once, in ``setup_runner``. We rebind it to a factory that restores the original binding
as soon as it is called, so the swap affects exactly one run, and restore it in any case
when ``trio.run`` returns or raises.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio
import trio._core._run as _trio_run

from ._compat import check_trio_version
from ._errors import UringUnavailable
from ._io_manager import DEFAULT_COALESCE_USEC, UringIOManager
from ._plain import note_fallback

__all__ = ["backend", "install_io_manager", "run"]

T = TypeVar("T")
#: trio's own IO manager, as bound when trio_uring was imported: what "fallback" runs on,
#: even while ``install_io_manager`` (or ``TRIO_URING=1``) has put ours in its place.
_STOCK: Callable[[], Any] = _trio_run.TheIOManager  # type: ignore[attr-defined,unused-ignore]


@contextlib.contextmanager
def _swap_io_manager(factory: Callable[[], Any]) -> Iterator[None]:
    original = _trio_run.TheIOManager  # type: ignore[attr-defined,assignment,unused-ignore]
    _trio_run.TheIOManager = factory  # type: ignore[attr-defined,assignment,unused-ignore]
    try:
        yield
    finally:
        _trio_run.TheIOManager = original  # type: ignore[attr-defined,assignment,unused-ignore]


def _stock_io_manager_factory(exc: UringUnavailable, original: Callable[[], Any]) -> Callable[[], Any]:
    """A factory for trio's own IO manager that remembers why io_uring was not used.

    Ops of that run then wait for readiness through trio at once, without trying io_uring
    again or warning a second time.
    """

    def factory() -> Any:
        mgr = original()
        note_fallback(mgr, exc)
        return mgr

    return factory


def run(
    async_fn: Callable[..., Awaitable[T]],
    *args: Any,
    fallback: bool = False,
    entries: int = 256,
    coalesce_usec: int = DEFAULT_COALESCE_USEC,
    send: str = "direct",
    **trio_run_kwargs: Any,
) -> T:
    """Run ``async_fn(*args)`` like ``trio.run``, with an io_uring IO manager.

    ``trio_run_kwargs`` go to ``trio.run`` (``clock``, ``instruments``,
    ``strict_exception_groups``, ...). ``coalesce_usec`` bounds how long a wait may
    gather completions while bulk data streams in (0: never; see ``UringIOManager``).
    ``send="ring"`` makes every socket send an io_uring ``SEND`` op, submitted once per
    scheduler pass, instead of trying the syscall first (``"direct"``); the README's
    options table says when each pays. If io_uring cannot be used, raises
    :class:`UringUnavailable`; with ``fallback=True`` it warns and runs on stock trio
    instead (``trio_uring.backend()`` then tells which one is running).

    ``entries`` is the submission queue size (the completion queue is twice that).

    :raises UringUnavailable: io_uring cannot be used here and ``fallback`` is false.
    :raises ValueError: ``send`` is neither ``"direct"`` nor ``"ring"``, or ``coalesce_usec``
        is outside 0..1,000,000.
    :raises RuntimeError: trio is older than the supported range (a newer one warns once and
        runs).
    """
    check_trio_version()
    try:
        manager = UringIOManager(entries, coalesce_usec=coalesce_usec, send=send)
    except UringUnavailable as exc:
        if not fallback:
            raise
        warnings.warn(f"io_uring is unavailable, running on stock trio: {exc}", RuntimeWarning, stacklevel=2)
        with _swap_io_manager(_stock_io_manager_factory(exc, _STOCK)):
            return trio.run(async_fn, *args, **trio_run_kwargs)
    used = False
    original = _trio_run.TheIOManager  # type: ignore[attr-defined,assignment,unused-ignore]

    def factory() -> UringIOManager:
        nonlocal used
        _trio_run.TheIOManager = original  # type: ignore[attr-defined,assignment,unused-ignore]
        used = True
        return manager

    try:
        with _swap_io_manager(factory):
            return trio.run(async_fn, *args, **trio_run_kwargs)
    finally:
        if not used:
            manager.close()


@contextlib.contextmanager
def install_io_manager(*, fallback: bool = False) -> Iterator[None]:
    """Make every ``trio.run`` (and guest run) started inside the block use io_uring.

    For test suites and tools: e.g. in a ``conftest.py`` so that pytest-trio's runs, and
    trio's own tests, run on ``UringIOManager``. Process-global while active. A run whose
    manager cannot be built raises :class:`~trio_uring.UringUnavailable` before it starts (a later
    ``trio.run`` is unaffected); with ``fallback=True`` it warns and uses trio's own IO
    manager instead.

    :raises RuntimeError: trio is older than the supported range.
    """
    check_trio_version()

    def factory() -> Any:
        try:
            return UringIOManager()
        except UringUnavailable as exc:
            # factory <- trio's setup_runner <- trio.run <- the caller
            warnings.warn(
                f"io_uring is unavailable, running on stock trio: {exc}", RuntimeWarning, stacklevel=4
            )
            return _stock_io_manager_factory(exc, _STOCK)()

    # Without fallback the class itself is installed: tests (trio's own among them) patch
    # methods on ``TheIOManager`` and expect the run's manager to see them.
    with _swap_io_manager(factory if fallback else UringIOManager):
        yield


def backend() -> str:
    """The IO backend of the current run: ``"io_uring"``, or stock trio's (``"epoll"``, ...).

    :raises RuntimeError: called outside a trio run.
    """
    return str(trio.lowlevel.current_statistics().io_statistics.backend)
