"""Provided buffer rings: memory the kernel receives into, handed out and recycled in batches.

The slab is a C mapping whose lifetime follows Python references (a cffi gc pointer): a
memoryview someone still holds keeps it mapped, so no view can ever point at unmapped
memory. The kernel-shared ring of buffer descriptors is owned by C and released with the
registration.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable
from typing import Any

from .._native import ffi, lib
from ._errors import kernel_error
from ._ring import CQE_BUFFER_SHIFT, CQE_F_BUF_MORE, Ring, _check_pow2

__all__ = ["BufferRing", "alloc_slab"]


def alloc_slab(nbytes: int) -> tuple[Any, memoryview]:
    """Page-aligned memory from C, freed when the last Python reference goes."""
    if not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"slab size must be a positive int, got {nbytes!r}")
    raw = lib.tu_slab_alloc(nbytes)
    if raw == ffi.NULL:
        raise MemoryError(f"could not map {nbytes} bytes for io_uring buffers")
    ptr = ffi.gc(raw, lib.tu_slab_free)
    return ptr, memoryview(ffi.buffer(ptr, nbytes))


class BufferRing:
    """A provided buffer ring (buffer group) of ``entries`` buffers of ``buf_size`` bytes.

    ``incremental=None`` uses incremental consumption (``IOU_PBUF_RING_INC``, Linux 6.12)
    when the kernel has it; ``True`` requires it; ``False`` never uses it.

    :raises OSError: the kernel refused the registration (``EINVAL`` for ``incremental=True``
        on a kernel without it).
    :raises ValueError: ``entries`` is not a power of two up to 32768.
    """

    def __init__(
        self,
        ring: Ring,
        *,
        entries: int = 64,
        buf_size: int = 16384,
        incremental: bool | None = None,
        bgid: int | None = None,
    ) -> None:
        _check_pow2("entries", entries)
        if not isinstance(buf_size, int) or isinstance(buf_size, bool):
            raise TypeError(f"buf_size must be an int, not {type(buf_size).__name__}")
        if buf_size <= 0 or buf_size > 1 << 31:
            raise ValueError(f"buf_size must be between 1 and 2**31, got {buf_size}")
        if bgid is None:
            bgid = ring.free_bgid()
        elif not 0 <= bgid <= 0xFFFF:
            raise ValueError(f"bgid must fit in 16 bits, got {bgid}")
        self.ring = ring
        self.entries = entries
        self.buf_size = buf_size
        self.bgid = bgid
        #: The slab's C pointer: its owner (views made from it keep it mapped).
        self.memory_ptr, view = alloc_slab(entries * buf_size)
        self._view = view
        #: Read-only view of the whole slab; buffer ``bid`` starts at ``bid * buf_size``.
        self.memory = view.toreadonly()
        out = ffi.new("tu_bufring **")
        tries = [True, False] if incremental is None else [incremental]
        ret = -_errno.EINVAL
        for inc in tries:
            ret = lib.tu_bufring_new(ring.native, bgid, entries, buf_size, self.memory_ptr, int(inc), out)
            if ret != -_errno.EINVAL:
                break
        if ret < 0:
            raise kernel_error(
                ret,
                "IORING_REGISTER_PBUF_RING",
                f"bgid={bgid}, entries={entries}" + (", incremental" if incremental else ""),
            )
        self.incremental = inc
        self._inc_offset = [0] * entries
        self._ptr: Any = out[0]
        ring.register(("bufring", bgid), self)

    @property
    def closed(self) -> bool:
        """Whether the buffer ring was unregistered (:meth:`close`, or its ring closed)."""
        return self._ptr is None

    def view(self, bid: int, offset: int, length: int) -> memoryview:
        """Read-only view of ``length`` bytes of buffer ``bid`` from ``offset``."""
        start = bid * self.buf_size + offset
        return self.memory[start : start + length]

    def take(self, res: int, flags: int) -> tuple[int, int, bool]:
        """Where a buffer-select CQE's ``res`` bytes are: ``(bid, offset, last)``.

        In incremental mode several completions share one buffer, each starting where the
        previous ended; ``last`` is False while the kernel will still write into the buffer
        (``IORING_CQE_F_BUF_MORE``), and the buffer may be recycled only after the last one.
        """
        bid = flags >> CQE_BUFFER_SHIFT
        if not self.incremental:
            return bid, 0, True
        off = self._inc_offset[bid]
        if flags & CQE_F_BUF_MORE:
            self._inc_offset[bid] = off + res
            return bid, off, False
        self._inc_offset[bid] = 0
        return bid, off, True

    def recycle(self, bids: Iterable[int]) -> None:
        """Give buffers back to the kernel: one native call and one tail store for all."""
        if self._ptr is None:
            raise kernel_error(-_errno.EBADF, "buffer ring recycle", "buffer ring is closed")
        ids = bids if isinstance(bids, list) else list(bids)
        if not ids:
            return
        if min(ids) < 0 or max(ids) >= self.entries:
            bad = next(b for b in ids if not 0 <= b < self.entries)
            raise ValueError(f"buffer id {bad} is not in this ring (0..{self.entries - 1})")
        lib.tu_bufring_recycle(self._ptr, ffi.new("uint16_t[]", ids), len(ids))

    def close(self) -> None:
        """Unregister from the kernel. The slab stays mapped while views of it exist."""
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        self.ring.unregister(("bufring", self.bgid))
        if not self.ring.closed:
            lib.tu_bufring_free(self.ring.native, ptr)

    def _ring_closed(self) -> None:
        # The ring's teardown frees the native buffer ring; only forget it here.
        self._ptr = None
