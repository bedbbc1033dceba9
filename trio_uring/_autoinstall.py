"""``TRIO_URING=1`` / ``TRIO_URING=fallback``: io_uring for every trio run of this interpreter.

Imported at interpreter start by ``trio_uring.pth`` (installed beside the package) when the
variable is set, the way coverage.py reaches subprocesses: worker processes a server spawns
(hypercorn ``--workers``, multiprocessing) inherit the environment and so run on io_uring too.
"""

from __future__ import annotations

import contextlib
import os
import sys

#: Values of ``TRIO_URING`` that switch it on; ``fallback`` keeps stock trio where io_uring is refused.
ON = frozenset({"1", "true", "yes", "on"})
FALLBACK = "fallback"
_stack = contextlib.ExitStack()


def install_from_env(value: str | None = None) -> bool:
    """Apply ``TRIO_URING`` for the rest of the process; True if io_uring is now installed."""
    value = (os.environ.get("TRIO_URING", "") if value is None else value).strip().lower()
    if value not in ON and value != FALLBACK:
        if value not in ("", "0", "false", "no", "off"):
            print(f"trio_uring: ignoring TRIO_URING={value!r} (use 1 or fallback)", file=sys.stderr)
        return False
    from ._global import install_globally  # noqa: PLC0415 - only when switched on

    _stack.close()
    # no probe: an interpreter that never starts a trio run pays nothing and hears nothing
    return _stack.enter_context(install_globally(fallback=value == FALLBACK, probe=False))


def _at_startup() -> None:
    # An exception here would print a traceback from site.py for every interpreter start.
    try:
        install_from_env()
    except Exception as exc:
        print(f"trio_uring: TRIO_URING is set but io_uring could not be installed: {exc!r}", file=sys.stderr)


if os.environ.get("TRIO_URING"):
    _at_startup()
