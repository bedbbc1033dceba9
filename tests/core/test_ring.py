"""The ring core against the real kernel: setup, every op, errors, batching, overflow, close."""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

import pytest
from trio_uring._native import ffi, lib

from trio_uring import RingClosedError
from trio_uring._core._ring import (
    CQE_F_MORE,
    CQE_F_NOTIF,
    Batch,
    Ring,
    SetupFlags,
    timespec,
)
from trio_uring._core._sockaddr import decode_sockaddr, encode_sockaddr


def wait_for(ring: Ring, uds: set[int], timeout: float = 5.0) -> dict[int, list[tuple[int, int]]]:
    """Reap until every ud in ``uds`` had a final CQE; returns ud -> [(res, flags), ...]."""
    seen: dict[int, list[tuple[int, int]]] = {}
    pending = set(uds)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        assert left > 0, f"no final completion for {sorted(pending)}; got {seen}"
        b = ring.enter(1, left)
        for ud, res, fl in zip(b.user_data, b.res, b.flags):
            seen.setdefault(ud, []).append((res, fl))
            if not fl & CQE_F_MORE:
                pending.discard(ud)
    return seen


def only(seen: dict[int, list[tuple[int, int]]], ud: int) -> int:
    ((res, _fl),) = seen[ud]
    return res


# ---- setup ------------------------------------------------------------------------------
def test_default_ring_gets_defer_taskrun_and_its_flag(ring: Ring) -> None:
    assert ring.flags & SetupFlags.DEFER_TASKRUN
    assert ring.flags & SetupFlags.SINGLE_ISSUER
    assert ring.flags & SetupFlags.TASKRUN_FLAG
    assert ring.sq_entries == 64 and ring.cq_entries == 128
    assert "DEFER_TASKRUN" in repr(ring)


def test_cq_size_and_cqe32_are_honoured() -> None:
    with Ring(8, cq_entries=64, required=SetupFlags.CQE32) as r:
        assert r.cq_entries == 64
        assert r.cqe32
        r.prep_nop(1)
        b = r.enter(1, 1)
        assert b.user_data == [1] and b.big_cqe == [0, 0]


def test_chosen_flags_exactly() -> None:
    with Ring(8, flags=SetupFlags.COOP_TASKRUN) as r:
        assert r.flags & SetupFlags.COOP_TASKRUN
        assert not r.flags & SetupFlags.DEFER_TASKRUN


def test_conflicting_flags_fall_back_but_required_ones_stay() -> None:
    # CQE32 and CQE_MIXED cannot be combined: the optional one is dropped.
    with Ring(8, flags=SetupFlags.CQE_MIXED, required=SetupFlags.CQE32) as r:
        assert r.cqe32 and not r.flags & SetupFlags.CQE_MIXED


@pytest.mark.parametrize("entries", [0, -4, 3, 100, 65536])
def test_bad_ring_sizes_are_rejected_before_the_kernel(entries: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Ring(entries)


def test_bad_types_and_cq_smaller_than_sq() -> None:
    with pytest.raises(TypeError):
        Ring("64")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Ring(True)
    with pytest.raises(ValueError, match="cq_entries"):
        Ring(64, cq_entries=32)
    with pytest.raises(ValueError, match="batch"):
        Ring(8, batch=0)


# ---- submission and reaping --------------------------------------------------------------
def test_nothing_queued_zero_timeout_makes_no_syscall(ring: Ring) -> None:
    ring.prep_nop(1)
    ring.enter(1, 1)
    calls = ring.enter_calls
    for _ in range(100):
        assert ring.enter(1, 0) == Batch([], [], [], None)
    assert ring.enter_calls == calls


def test_deferred_completion_is_found_by_a_zero_timeout_poll(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        buf = bytearray(8)
        ring.prep_recv(a, buf, 7)
        ring.submit()
        b.send(b"hi")
        deadline = time.monotonic() + 5
        got: list[int] = []
        while not got and time.monotonic() < deadline:
            got = ring.enter(0, 0).res  # the TASKRUN flag tells us to enter
        assert got == [2] and buf[:2] == b"hi"


def test_wait_with_timeout_returns_empty_after_the_timeout(ring: Ring) -> None:
    t0 = time.monotonic()
    b = ring.enter(1, 0.05)
    assert b.user_data == []
    assert time.monotonic() - t0 >= 0.045


def test_batch_reaping_with_more_completions_than_the_array_holds() -> None:
    with Ring(128, batch=8) as r:
        for ud in range(1, 101):
            r.prep_nop(ud)
        got: list[int] = []
        while len(got) < 100:
            b = r.enter(1, 2)
            assert 0 < len(b.user_data) <= 8
            got += b.user_data
        assert sorted(got) == list(range(1, 101))


def test_full_sq_is_submitted_transparently() -> None:
    with Ring(4, cq_entries=512) as r:
        for ud in range(1, 51):
            r.prep_nop(ud)
        seen = wait_for(r, set(range(1, 51)))
        assert sorted(seen) == list(range(1, 51))


def test_cq_overflow_loses_nothing() -> None:
    with Ring(8, cq_entries=16) as r:
        for round_ in range(8):
            for i in range(8):
                r.prep_nop(round_ * 8 + i + 1)
            r.submit()
        assert r.sq_flags & lib.IORING_SQ_CQ_OVERFLOW, "CQ should have overflowed"
        got: list[int] = []
        while len(got) < 64:
            b = r.enter(1, 2)
            assert b.user_data
            got += b.user_data
        assert sorted(got) == list(range(1, 65))
        assert not r.sq_flags & lib.IORING_SQ_CQ_OVERFLOW


def test_unsubmitted_sqe_can_be_dropped(ring: Ring) -> None:
    slot = ring.prep_nop(11)
    gen = ring.submit_generation
    assert ring.unsubmitted(gen)
    assert ring.drop_unsubmitted(slot)
    b = ring.enter(1, 1)
    assert b.user_data == [0]  # turned into an ignored NOP
    assert not ring.unsubmitted(gen)
    assert not ring.drop_unsubmitted(slot)  # already submitted: refused


# ---- socket ops ---------------------------------------------------------------------------
def test_recv_send_and_eof(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        data = b"hello io_uring"
        cbuf = ffi.from_buffer(data)
        ring.prep_send(a, cbuf, len(data), 1)
        buf = bytearray(64)
        ring.prep_recv(b, buf, 2)
        seen = wait_for(ring, {1, 2})
        assert only(seen, 1) == len(data)
        assert bytes(buf[: only(seen, 2)]) == data
        a.shutdown(socket.SHUT_WR)
        ring.prep_recv(b, buf, 3)
        assert only(wait_for(ring, {3}), 3) == 0


def test_recv_error_completions(ring: Ring) -> None:
    r, w = os.pipe()
    s = socket.socket()
    closed = s.fileno()
    s.close()
    try:
        buf = bytearray(8)
        ring.prep_recv(r, buf, 1)
        ring.prep_recv(closed, buf, 2)
        seen = wait_for(ring, {1, 2})
        assert only(seen, 1) == -errno.ENOTSOCK
        assert only(seen, 2) == -errno.EBADF
    finally:
        os.close(r)
        os.close(w)


def test_bad_python_arguments_raise_before_the_kernel(ring: Ring) -> None:
    with pytest.raises(ValueError, match="closed socket"):
        ring.prep_recv(-1, bytearray(4), 1)
    with pytest.raises(TypeError):
        ring.prep_recv(0, b"immutable", 1)
    with pytest.raises(TypeError, match="fileno"):
        ring.prep_poll("3", select.POLLIN, 1)  # type: ignore[arg-type]
    assert ring.sq_pending == 0


def test_send_to_a_reset_peer_fails_with_epipe(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a:
        b.close()
        data = b"x"
        ring.prep_send(a, ffi.from_buffer(data), 1, 1, flags=socket.MSG_NOSIGNAL)
        assert only(wait_for(ring, {1}), 1) == -errno.EPIPE


def test_accept_connect_and_multishot_accept(ring: Ring) -> None:
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        port = lsock.getsockname()[1]
        addr = ffi.new("char[]", 128)
        addrlen = ffi.new("uint32_t *", 128)
        ring.prep_accept(lsock, 1, addr=addr, addrlen=addrlen)
        c = socket.socket()
        c.setblocking(False)
        sa, salen = encode_sockaddr(socket.AF_INET, ("127.0.0.1", port))
        ring.prep_connect(c, sa, salen, 2)
        seen = wait_for(ring, {1, 2})
        assert only(seen, 2) == 0
        fd = only(seen, 1)
        assert fd >= 0
        assert decode_sockaddr(addr, addrlen[0]) == c.getsockname()
        os.close(fd)
        c.close()
        ring.prep_accept(lsock, 3, multishot=True)
        ring.submit()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        fds: list[int] = []
        deadline = time.monotonic() + 5
        while len(fds) < 3 and time.monotonic() < deadline:
            b = ring.enter(1, 1)
            for ud, res, fl in zip(b.user_data, b.res, b.flags):
                assert ud == 3 and res >= 0 and fl & CQE_F_MORE
                fds.append(res)
        assert len(fds) == 3
        for fd in fds:
            os.close(fd)
        for cl in clients:
            cl.close()
        ring.prep_cancel(3)
        assert wait_for(ring, {3})[3][-1][0] == -errno.ECANCELED


def test_connect_refused(ring: Ring) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socket.socket() as c:
        c.setblocking(False)
        sa, salen = encode_sockaddr(socket.AF_INET, ("127.0.0.1", port))
        ring.prep_connect(c, sa, salen, 1)
        assert only(wait_for(ring, {1}), 1) == -errno.ECONNREFUSED


def test_sendmsg_gathers_iovecs(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        parts = [b"abc", b"defg", b"h"]
        keep = [ffi.from_buffer(p) for p in parts]
        iov = ffi.new("struct iovec[]", len(parts))
        for i, (p, k) in enumerate(zip(parts, keep)):
            iov[i].iov_base = k
            iov[i].iov_len = len(p)
        msg = ffi.new("struct msghdr *")
        msg.msg_iov = iov
        msg.msg_iovlen = len(parts)
        ring.prep_sendmsg(a, msg, 1)
        assert only(wait_for(ring, {1}), 1) == 8
        assert b.recv(16) == b"abcdefgh"


def test_send_zc_posts_a_notification(ring: Ring) -> None:
    a, b = socket.socketpair(socket.AF_INET if False else socket.AF_UNIX)
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        c = socket.create_connection(lsock.getsockname())
        s, _ = lsock.accept()
        with c, s, a, b:
            data = b"z" * 4096
            ring.prep_send(c, ffi.from_buffer(data), len(data), 1, zerocopy=True)
            seen = wait_for(ring, {1})[1]
            assert seen[0][0] == len(data) and seen[0][1] & CQE_F_MORE
            assert seen[-1][1] & CQE_F_NOTIF
            got = b""
            while len(got) < len(data):
                got += s.recv(8192)
            assert got == data


def test_shutdown_and_close_ops(ring: Ring) -> None:
    a, b = socket.socketpair()
    with b:
        ring.prep_shutdown(a, socket.SHUT_WR, 1)
        assert only(wait_for(ring, {1}), 1) == 0
        assert b.recv(1) == b""
        fd = a.detach()
        ring.prep_close(fd, 2)
        assert only(wait_for(ring, {2}), 2) == 0
        with pytest.raises(OSError):
            os.fstat(fd)


def test_poll_oneshot_and_multishot(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_poll(a, select.POLLIN, 1)
        ring.prep_poll(a, select.POLLIN, 2, multishot=True)
        ring.submit()
        b.send(b"1")
        seen = wait_for(ring, {1})
        assert only(seen, 1) & select.POLLIN
        a.recv(1)
        b.send(b"2")
        more: list[int] = [fl for _res, fl in seen.get(2, [])]
        deadline = time.monotonic() + 5
        while len(more) < 2 and time.monotonic() < deadline:
            bt = ring.enter(1, 1)
            more += [fl for ud, fl in zip(bt.user_data, bt.flags) if ud == 2]
        assert len(more) >= 2 and all(fl & CQE_F_MORE for fl in more)
        ring.prep_cancel(2)
        wait_for(ring, {2})


def test_timeout_op(ring: Ring) -> None:
    ts = timespec(0.01)
    ring.prep_timeout(ts, 1)
    assert only(wait_for(ring, {1}), 1) == -errno.ETIME


def test_cancel_in_flight_recv_and_cancel_by_fd(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        buf = bytearray(8)
        ring.prep_recv(a, buf, 1)
        ring.submit()
        ring.prep_cancel(1, 2)
        seen = wait_for(ring, {1, 2})
        assert only(seen, 1) == -errno.ECANCELED
        assert only(seen, 2) == 0
        ring.prep_cancel(1, 3)  # nothing left to cancel
        assert only(wait_for(ring, {3}), 3) == -errno.ENOENT
        bufs = [bytearray(8) for _ in range(3)]
        for i, bb in enumerate(bufs):
            ring.prep_recv(a, bb, 10 + i)
        ring.submit()
        ring.prep_cancel_fd(a, 20)
        seen = wait_for(ring, {10, 11, 12, 20})
        assert [only(seen, u) for u in (10, 11, 12)] == [-errno.ECANCELED] * 3
        assert only(seen, 20) == 3  # number of requests cancelled


def test_cancel_racing_a_completion_delivers_the_data(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        buf = bytearray(8)
        ring.prep_recv(a, buf, 1)
        ring.submit()
        b.send(b"data")
        ring.prep_cancel(1, 2)
        seen = wait_for(ring, {1, 2})
        # Either the cancel won (no effect) or the recv did (the bytes are delivered).
        res = only(seen, 1)
        if res == -errno.ECANCELED:
            assert a.recv(8) == b"data"
        else:
            assert bytes(buf[:res]) == b"data"


def test_recv_zc_without_an_ifq_fails_cleanly(ring: Ring) -> None:
    with Ring(8, required=SetupFlags.CQE32) as r, socket.socket() as s:
        r.prep_recv_zc(s, 0, 1)
        assert only(wait_for(r, {1}), 1) == -errno.EINVAL


# ---- lifetime ------------------------------------------------------------------------------
def test_close_with_pending_ops_cancels_them_and_leaks_nothing(no_fd_leak: None) -> None:
    a, b = socket.socketpair()
    r = Ring(16)
    bufs = [bytearray(16) for _ in range(4)]
    for i, bb in enumerate(bufs):
        r.prep_recv(a, bb, i + 1)
        r.inflight[i + 1] = bb
    r.submit()
    r.close()
    assert r.closed and r.inflight == {}
    b.send(b"after close")
    assert a.recv(64) == b"after close"  # nothing was consumed by the dead ring
    assert all(bb == bytearray(16) for bb in bufs)
    a.close()
    b.close()
    r.close()  # idempotent


def test_use_after_close_raises_clearly() -> None:
    r = Ring(8)
    r.close()
    for call in (
        lambda: r.prep_nop(1),
        lambda: r.enter(0, 0),
        lambda: r.submit(),
        lambda: r.prep_poll(0, select.POLLIN, 1),
        lambda: r.native,
        lambda: r.enter_calls,
    ):
        with pytest.raises(RingClosedError, match="closed"):
            call()


def test_ring_used_from_another_thread_is_refused_clearly(ring: Ring) -> None:
    errors: list[BaseException] = []

    def other() -> None:
        try:
            ring.prep_nop(1)
            ring.enter(1, 1)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    assert errors[0].errno == errno.EEXIST and "thread" in str(errors[0])


def test_forked_child_never_touches_the_parents_ring(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            ring.prep_nop(1)
        except RingClosedError:
            code = 0
        except BaseException:
            code = 2
        os.write(wfd, bytes([code]))
        os._exit(0)
    os.close(wfd)
    _, status = os.waitpid(pid, 0)
    assert os.read(rfd, 1) == b"\0"
    os.close(rfd)
    assert os.waitstatus_to_exitcode(status) == 0
    ring.prep_nop(5)  # the parent's ring is untouched
    assert ring.enter(1, 1).user_data == [5]
