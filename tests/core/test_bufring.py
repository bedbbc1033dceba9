"""Provided buffer rings: selection, ENOBUFS, recycling, incremental mode, lifetime."""

from __future__ import annotations

import errno
import gc
import socket
import time

import pytest

from trio_uring._core._bufring import BufferRing, alloc_slab
from trio_uring._core._ring import CQE_BUFFER_SHIFT, CQE_F_BUF_MORE, CQE_F_BUFFER, CQE_F_MORE, Ring


def reap(ring: Ring, n: int, timeout: float = 5) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {out}"
        b = ring.enter(1, 1)
        out += list(zip(b.user_data, b.res, b.flags))
    return out


def test_recv_selects_buffers_and_recycling_refills(ring: Ring) -> None:
    br = BufferRing(ring, entries=2, buf_size=16, incremental=False)
    a, b = socket.socketpair()
    with a, b:
        ring.prep_recv_select(a, br.bgid, 1, multishot=True)
        ring.submit()
        got: list[bytes] = []
        for i in range(2):
            b.send(bytes([65 + i]) * 10)
            ((ud, res, fl),) = reap(ring, 1)
            assert ud == 1 and res == 10 and fl & CQE_F_BUFFER and fl & CQE_F_MORE
            got.append(bytes(br.view(fl >> CQE_BUFFER_SHIFT, 0, res)))
        assert got == [b"A" * 10, b"B" * 10]
        # Both buffers are out: the next receive ends the multishot with ENOBUFS.
        b.send(b"C")
        ((_ud, res, fl),) = reap(ring, 1)
        assert res == -errno.ENOBUFS and not fl & CQE_F_MORE
        br.recycle([0, 1])
        ring.prep_recv_select(a, br.bgid, 2, multishot=False)
        ((_ud, res, fl),) = reap(ring, 1)
        assert res == 1 and bytes(br.view(fl >> CQE_BUFFER_SHIFT, 0, 1)) == b"C"


def test_incremental_consumption_reports_buf_more(ring: Ring) -> None:
    br = BufferRing(ring, entries=2, buf_size=4096, incremental=True)
    assert br.incremental
    a, b = socket.socketpair()
    with a, b:
        ring.prep_recv_select(a, br.bgid, 1, multishot=True)
        ring.submit()
        b.send(b"x" * 100)
        ((_, res1, fl1),) = reap(ring, 1)
        b.send(b"y" * 100)
        ((_, res2, fl2),) = reap(ring, 1)
        assert res1 == res2 == 100
        assert fl1 & CQE_F_BUF_MORE and fl2 & CQE_F_BUF_MORE
        bid = fl1 >> CQE_BUFFER_SHIFT
        assert fl2 >> CQE_BUFFER_SHIFT == bid
        # the second completion's data follows the first one in the same buffer
        assert bytes(br.view(bid, 0, 200)) == b"x" * 100 + b"y" * 100
        ring.prep_cancel(1)
        reap(ring, 2)


def test_bad_arguments(ring: Ring) -> None:
    with pytest.raises(ValueError, match="power of two"):
        BufferRing(ring, entries=3)
    with pytest.raises(ValueError, match="buf_size"):
        BufferRing(ring, entries=2, buf_size=0)
    with pytest.raises(TypeError):
        BufferRing(ring, entries=2, buf_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="16 bits"):
        BufferRing(ring, entries=2, bgid=70000)
    br = BufferRing(ring, entries=2, buf_size=16)
    with pytest.raises(ValueError, match="not in this ring"):
        br.recycle([2])
    with pytest.raises(OSError, match=r"EEXIST|exists"):
        BufferRing(ring, entries=2, bgid=br.bgid)
    with pytest.raises(ValueError, match="positive"):
        alloc_slab(0)


def test_views_outlive_the_ring_without_crashing() -> None:
    ring = Ring(8)
    br = BufferRing(ring, entries=2, buf_size=64)
    a, b = socket.socketpair()
    with a, b:
        ring.prep_recv_select(a, br.bgid, 1, multishot=False)
        b.send(b"kept")
        ((_, res, fl),) = reap(ring, 1)
        view = br.view(fl >> CQE_BUFFER_SHIFT, 0, res)
    ring.close()
    assert br.closed
    with pytest.raises(OSError, match="closed"):
        br.recycle([0])
    del br
    gc.collect()
    assert bytes(view) == b"kept"  # still mapped: the view holds the slab
    with pytest.raises(TypeError):
        view[0] = 1


def test_close_unregisters_so_the_group_can_be_reused(ring: Ring) -> None:
    br = BufferRing(ring, entries=2, buf_size=16)
    bgid = br.bgid
    br.close()
    br.close()
    BufferRing(ring, entries=4, buf_size=16, bgid=bgid)
