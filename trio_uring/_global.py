"""io_uring for every trio run of the process: what the pytest plugin and ``TRIO_URING=1`` use."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from ._core._errors import UringUnavailable
from ._core._io_manager import UringIOManager
from ._core._run import install_io_manager
from ._net._factory import route_all_sockets

__all__ = ["install_globally", "unavailable_reason"]


def unavailable_reason() -> str | None:
    """Why no io_uring ring can be set up in this process (seccomp, sysctl...), or None."""
    try:
        UringIOManager().close()
    except UringUnavailable as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def install_globally(*, fallback: bool = False, probe: bool = True) -> Iterator[bool]:
    """Inside the block, every ``trio.run`` of the process (any thread) runs on the io_uring IO
    manager, and every socket trio creates or wraps is a UringSocket.

    Yields whether io_uring is in use. Without ``fallback`` nothing is checked here: a run
    that cannot set up its ring raises :class:`~trio_uring.UringUnavailable` (with the reason and remedy)
    when it starts. With ``fallback=True`` io_uring is tried once, here; where it is refused
    there is one ``RuntimeWarning`` and runs stay on stock trio with stock sockets. With
    ``probe=False`` (``TRIO_URING=fallback``, read by every interpreter that starts) nothing
    is tried up front: each run decides when it starts, and warns then.

    :raises RuntimeError: trio is older than the supported range.
    """
    if fallback and probe:
        reason = unavailable_reason()
        if reason is not None:
            warnings.warn(
                f"io_uring is unavailable, trio runs stay on stock trio: {reason}",
                RuntimeWarning,
                stacklevel=3,
            )
            yield False
            return
    with install_io_manager(fallback=fallback), route_all_sockets():
        yield True
