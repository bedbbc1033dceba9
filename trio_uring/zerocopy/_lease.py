"""Buffer leases: received bytes on loan from the kernel, and the exports rule.

A released lease's view is released too, so reading through it raises instead of showing
bytes the kernel wrote later. If the memory is still exported elsewhere (a numpy array made
from ``lease.data``, a slice of it someone kept), its buffer is *not* given back until that
export is gone: nothing can ever observe recycled memory through a lease.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Protocol

__all__ = ["HandedLease", "Lease", "LeaseOwner", "exports_gone", "keep_orphans", "sweep_orphans"]


class LeaseOwner(Protocol):
    """What a lease reports its release to (the receiver that handed it out)."""

    def _release(self, lease: Lease) -> None: ...

    def _forget(self, lease: Lease) -> None: ...


class Lease:
    """Received bytes in one buffer (a completion's, or consecutive ones'), on loan from the
    kernel until :meth:`release`."""

    __slots__ = ("_exporter", "_key", "_owner", "_released", "_rx", "_view", "nbytes")

    def __init__(self, rx: LeaseOwner, exporter: Any, key: Any, nbytes: int) -> None:
        self._rx = rx
        self._exporter = exporter
        self._view: memoryview | None = None  # made on first use: a lease nobody reads costs less
        #: What gives the buffer back to its source (a buffer id, a zcrx area offset).
        self._key = key
        self._released = False
        #: Set while the lease is released but its memory is still exported (numpy...):
        #: the mapping's owner, kept alive by the lease until the export is gone.
        self._owner: Any = None
        self.nbytes = nbytes

    @property
    def data(self) -> memoryview:
        """Read-only view of the bytes, valid until the lease is released.

        :raises ValueError: the lease was released (its view was released with it).
        """
        view = self._view
        if view is None:
            if self._released:
                raise ValueError("this lease was released: its buffer went back to the kernel")
            view = self._view = memoryview(self._exporter).toreadonly()
        return view

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called (or the receiver's block ended)."""
        return self._released

    def tobytes(self) -> bytes:
        """A copy of the bytes, to keep after the release.

        :raises ValueError: the lease was released.
        """
        return self.data.tobytes()

    def release(self) -> None:
        """Give the buffer back to the kernel. Idempotent, and callable from any thread: from
        a thread other than the run's (``trio.to_thread``), the run gives it back."""
        if not self._released:
            self._released = True
            self._rx._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __len__(self) -> int:
        return self.nbytes

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Lease {self.nbytes} bytes, {state}>"


class HandedLease(Lease):
    """Bytes the stream had received before the receiver opened: a copy in our own memory,
    so releasing it gives nothing back to the kernel."""

    __slots__ = ()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._rx._forget(self)
            view, self._view = self._view, None
            if view is not None:
                with contextlib.suppress(BufferError):  # immutable bytes: an export is harmless
                    view.release()


def exports_gone(lease: Lease) -> bool:
    """Release the lease's view; True once nothing else can read the lease's memory."""
    view = lease._view
    if view is not None:
        try:
            view.release()
        except BufferError:
            return False  # a buffer-protocol export of our view is alive (numpy, ...)
        lease._view = None
    # Slices of the view share its exporter through their managed buffer: while one is
    # alive the exporter has a reference besides ours (and getrefcount's argument).
    return sys.getrefcount(lease._exporter) <= 2


#: Released leases whose memory was still exported when their receiver closed. Each holds
#: its memory's owner (``Lease._owner``) so no export can point at unmapped memory, and is
#: dropped — letting the memory go — once its export is gone (see :func:`sweep_orphans`).
_ORPHANS: list[Lease] = []


def keep_orphans(leases: list[Lease]) -> None:
    """Keep exported leases of a closing receiver until their exports are gone."""
    _ORPHANS.extend(leases)
    sweep_orphans()


def sweep_orphans() -> None:
    """Forget orphaned leases nobody exports any more (each receiver open and close)."""
    if _ORPHANS:
        _ORPHANS[:] = [lease for lease in _ORPHANS if not exports_gone(lease)]
