"""The op layer: a trio task awaits an io_uring op; its completion reschedules the task.

Shared by both ways into trio (the IO manager of ``trio_uring.run`` and the driver task
inside a plain ``trio.run``); they differ only in who calls ``Ring.enter`` and when.

Cancellation follows trio's Windows IOCP rule (``wait_overlapped``):

* an op whose SQE the kernel has not seen yet is turned into an ignored NOP and the abort
  returns ``Abort.SUCCEEDED``;
* an op in flight gets ``IORING_OP_ASYNC_CANCEL``, the abort returns ``Abort.FAILED`` and
  the task waits for the op's own final completion: ``-ECANCELED`` raises ``Cancelled``
  (the op had no effect), a success is delivered (received bytes or an accepted fd are
  never lost) and the cancellation lands at the next checkpoint.

Closing an fd through :meth:`OpDriver.close_fd_ops` cancels its in-flight ops and makes
their waiters raise ``trio.ClosedResourceError``.
"""

from __future__ import annotations

import errno as _errno
import itertools
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._errors import kernel_error
from ._ring import CQE_F_MORE, Batch, Ring

__all__ = ["CANCELLED", "BigCqeMultishotOp", "MultishotOp", "Op", "OpDriver", "RunOwned"]

#: Final results of an op that was cancelled (EINTR: a poll cancelled by its ring's exit).
CANCELLED = (-_errno.ECANCELED, -_errno.EINTR)
OpT = TypeVar("OpT", bound="Op")


class Op:
    """One single-shot op: the task waiting for it and what must live until its CQE."""

    __slots__ = ("closed", "fd", "gen", "keep", "raise_cancel", "res", "slot", "task", "ud")
    #: True for ops that need their CQEs' ``big_cqe`` (the 16 more bytes of a CQE32):
    #: dispatch calls ``complete_big_cqe`` for them.
    wants_big_cqe = False
    #: Multishot ops: the per-CQE callback, called directly by dispatch (one call less).
    on_cqe: Callable[[int, int], None] | None = None

    def __init__(self, ud: int, task: Task | None, fd: int, keep: Any) -> None:
        self.ud = ud
        self.task = task
        self.fd = fd
        self.keep = keep
        self.slot = -1
        self.gen = -1
        self.raise_cancel: Callable[[], Any] | None = None
        self.closed = False
        #: The final result once the CQE arrived (see :meth:`OpDriver.issue`).
        self.res: int | None = None

    def abandon(self) -> None:
        """Nobody will wait for this op any more; its CQE only frees the user_data."""
        self.task = None

    def complete(self, res: int, flags: int) -> None:
        """The op's CQE arrived: keep ``res`` and wake the waiting task with it, if any."""
        self.res = res
        task = self.task
        if task is None:  # nobody waits (yet, or any more): the result stays in ``res``
            return
        self.task = None
        if res in CANCELLED and self.closed:
            reschedule(task, outcome.Error(trio.ClosedResourceError("another task closed this fd")))
        elif res in CANCELLED and self.raise_cancel is not None:
            reschedule(task, outcome.capture(self.raise_cancel))
        else:
            reschedule(task, outcome.Value(res))


class MultishotOp(Op):
    """An op that completes many times; every CQE goes to ``on_cqe(res, flags)``."""

    __slots__ = ("on_cqe",)
    on_cqe: Callable[[int, int], None]

    def __init__(self, ud: int, fd: int, keep: Any, on_cqe: Callable[[int, int], None]) -> None:
        super().__init__(ud, None, fd, keep)
        self.on_cqe = on_cqe

    def abandon(self) -> None:
        """Nobody wants this op's CQEs any more: they only free the user_data."""
        self.on_cqe = _ignore

    def complete(self, res: int, flags: int) -> None:
        """One CQE of the op: handed to ``on_cqe``."""
        self.on_cqe(res, flags)


def _ignore(res: int, flags: int) -> None:
    pass


class BigCqeMultishotOp(MultishotOp):
    """A multishot op whose CQEs carry a payload in the upper 16 bytes (zcrx offsets)."""

    __slots__ = ("on_big_cqe",)
    wants_big_cqe = True

    def __init__(self, ud: int, fd: int, keep: Any, on_big_cqe: Callable[[int, int, int], None]) -> None:
        super().__init__(ud, fd, keep, _ignore)
        self.on_big_cqe = on_big_cqe

    def abandon(self) -> None:
        self.on_big_cqe = _ignore_big_cqe

    def complete_big_cqe(self, res: int, flags: int, big_cqe: int) -> None:
        self.on_big_cqe(res, flags, big_cqe)


def _ignore_big_cqe(res: int, flags: int, big_cqe: int) -> None:
    pass


class RunOwned(Protocol):
    """An object that holds per-run state (an armed op, pool buffers).

    :meth:`OpDriver.close` calls ``run_ended()`` after the ring's last completion was
    dispatched: the object gives back what it holds and turns itself into something a later
    run can use or that fails at once, clearly (see the ownership rules in the docs).
    """

    def run_ended(self) -> None: ...


def _complete_cancelled(op: Op) -> None:
    """Deliver a final -ECANCELED to ``op`` the way a CQE would (CQE32 ops included)."""
    if isinstance(op, BigCqeMultishotOp):
        op.complete_big_cqe(-_errno.ECANCELED, 0, 0)
    else:
        op.complete(-_errno.ECANCELED, 0)


class OpDriver:
    """Submits ops on one ring for one trio run and dispatches their completions."""

    def __init__(self, ring: Ring, on_queued: Callable[[], None] | None = None) -> None:
        self.ring = ring
        self._ids = itertools.count(1)
        #: Called when an SQE was queued (the plain-trio driver uses it to request a flush).
        self._on_queued = on_queued
        #: Called by whoever enters the ring, just before, every time: batched work such as
        #: buffer recycling that should reach the kernel with the next submission.
        self.pre_enter: list[Callable[[], None]] = []
        #: Called once, before the next enter only (see :meth:`soon`).
        self._soon: list[Callable[[], None]] = []
        #: Per-ring state of higher layers (e.g. the zcrx interface queues), by name.
        self.extensions: dict[str, Any] = {}
        #: True when a helper task reaps the completions (plain ``trio.run``): each one then
        #: costs an extra task switch, so stream reads wait for readiness on trio's own IO
        #: manager instead of running a recv op.
        self.reaped_by_task = False
        #: Sends of this run go straight to the ring as ``SEND`` ops (``send="ring"``) rather
        #: than trying the syscall first (see ``trio_uring.socket.configure_send``).
        self.send_ring = False
        #: Bytes that bulk receivers (a ZeroCopyReceiver) took from completions since the
        #: last enter: the IO manager coalesces its waits while this stays high.
        self.bulk_bytes = 0
        self.closed = False
        #: The thread that owns the ring (SINGLE_ISSUER): finalizers running elsewhere
        #: must not touch it.
        self.thread = threading.get_ident()
        #: Objects holding state of this run, told when it ends (see :class:`RunOwned`).
        self._owned: weakref.WeakSet[RunOwned] = weakref.WeakSet()
        #: fd -> {user_data: op} for ops on an fd: closing one socket among thousands looks
        #: at its own ops only. Read only by :meth:`close_fd_ops`, at the moment the number
        #: still means the socket being closed.
        self._by_fd: dict[int, dict[int, Op]] = {}

    def new_ud(self) -> int:
        """A user_data no op of this ring has used (identifies an op's CQEs)."""
        return next(self._ids)

    def own(self, obj: RunOwned) -> None:
        """Have ``obj.run_ended()`` called when this run's ring closes (held weakly)."""
        self._owned.add(obj)

    def soon(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once, just before the next enter.

        For work that exists only now and then (leases given back, a re-arm): a thousand
        idle receivers then cost nothing per scheduler pass. The caller avoids queueing
        the same callback twice.
        """
        self._soon.append(fn)

    def before_enter(self) -> None:
        """Run the :attr:`pre_enter` hooks and what :meth:`soon` queued (the enterer calls this)."""
        for hook in self.pre_enter:
            hook()
        error: BaseException | None = None
        while self._soon:  # what these queue (a re-arm after a flush) goes in this enter too
            once, self._soon = self._soon, []
            for fn in once:
                try:
                    fn()
                except BaseException as exc:  # the others still run (see dispatch)
                    error = error or exc
        if error is not None:
            raise error

    # ---- dispatch --------------------------------------------------------------------------
    def dispatch(self, batch: Batch) -> None:
        """Hand each completion of ``batch`` to its op; one pass, no per-CQE allocation.

        A completion callback that raises does not stop the others in the batch from being
        delivered; the first error is re-raised afterwards (trio then reports it as an
        internal error of the run, which is what it is).
        """
        inflight = self.ring.inflight
        error: BaseException | None = None
        big_cqe = batch.big_cqe
        for i, (ud, res, fl) in enumerate(zip(batch.user_data, batch.res, batch.flags)):
            op = inflight.get(ud)
            if op is None:
                continue  # cancel requests and ops dropped before submission
            if not fl & CQE_F_MORE:
                del inflight[ud]
                if op.fd >= 0:
                    self._unindex(op)
            try:
                if op.wants_big_cqe and big_cqe is not None:
                    op.complete_big_cqe(res, fl, big_cqe[2 * i])
                elif (on_cqe := op.on_cqe) is not None:
                    on_cqe(res, fl)
                else:
                    op.complete(res, fl)
            except BaseException as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def submit(self, op: OpT, prep: Callable[..., int], *args: Any) -> OpT:
        """Write ``op``'s SQE (``prep(*args, op.ud)``) and track it until its final CQE.

        Every op goes through here (the waits of the IO manager too), and every abort
        through :meth:`_withdraw` or :meth:`_request_cancel`: one path for all.
        """
        if self.closed:
            raise trio.ClosedResourceError("the io_uring ring of this run is closed")
        op.slot = prep(*args, op.ud)
        op.gen = self.ring.submit_generation
        self.ring.inflight[op.ud] = op
        if op.fd >= 0:
            ops = self._by_fd.get(op.fd)
            if ops is None:
                self._by_fd[op.fd] = {op.ud: op}
            else:
                ops[op.ud] = op
        if self._on_queued is not None:
            self._on_queued()
        return op

    # ---- single-shot ops ------------------------------------------------------------------
    async def perform(
        self, name: str, prep: Callable[..., int], *args: Any, fd: int = -1, keep: Any = None
    ) -> int:
        """Queue ``prep(*args, ud)``, wait for its completion, return ``res`` (>= 0).

        A negative result raises ``OSError`` naming ``name``. Starts with a cancellation
        check, so a cancelled task never issues the op.

        :raises OSError: the op's result was a negative errno.
        :raises trio.ClosedResourceError: the op's fd was closed while it was in flight.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        res: int = await self.start(prep, *args, fd=fd, keep=keep)
        if res < 0:
            raise kernel_error(res, name)
        return res

    async def start(self, prep: Callable[..., int], *args: Any, fd: int = -1, keep: Any = None) -> int:
        """Like :meth:`perform` without the initial checkpoint and the error mapping."""
        return await self.collect(self.issue(prep, *args, fd=fd, keep=keep))

    def issue(self, prep: Callable[..., int], *args: Any, fd: int = -1, keep: Any = None) -> Op:
        """Queue ``prep(*args, ud)`` without waiting; collect the result with :meth:`collect`.

        For ops that usually complete inline when submitted (a send with room in the
        socket buffer): the caller's next checkpoint lets the run enter the ring, so by the
        time :meth:`collect` runs the result is mostly there — one task switch per op, and
        one ``io_uring_enter`` for all ops queued in a scheduler pass.
        """
        return self.submit(Op(next(self._ids), None, fd, keep), prep, *args)

    async def collect(self, op: Op) -> int:
        """``op``'s result (a negative errno too), waiting for it if needed.

        Cancelling the wait follows the rule in the module docstring (an unsubmitted op is
        dropped, one in flight is cancelled and its own completion awaited). An op cancelled
        because its fd was closed raises ``ClosedResourceError``.
        """
        res = op.res
        if res is None:
            op.task = current_task()
            ring = self.ring

            def abort(raise_cancel: Callable[[], Any]) -> Abort:
                if ring.closed or self._withdraw(op):
                    op.task = None
                    return Abort.SUCCEEDED
                op.raise_cancel = raise_cancel
                self._request_cancel(op)
                return Abort.FAILED

            return await wait_task_rescheduled(abort)  # type: ignore[no-any-return]
        if res in CANCELLED and op.closed:
            raise trio.ClosedResourceError("another task closed this fd")
        return res

    # ---- multishot ops ----------------------------------------------------------------------
    def start_multishot(
        self,
        prep: Callable[..., int],
        *args: Any,
        fd: int = -1,
        keep: Any = None,
        on_cqe: Callable[[int, int], None],
    ) -> MultishotOp:
        """Start an op that completes many times; each CQE calls ``on_cqe(res, flags)``.

        The final CQE (no ``IORING_CQE_F_MORE``) also goes to ``on_cqe``; cancel with
        :meth:`cancel`.
        """
        return self.submit(MultishotOp(next(self._ids), fd, keep, on_cqe), prep, *args)

    def start_multishot_big_cqe(
        self,
        prep: Callable[..., int],
        *args: Any,
        fd: int = -1,
        keep: Any = None,
        on_big_cqe: Callable[[int, int, int], None],
    ) -> BigCqeMultishotOp:
        """:meth:`start_multishot` on a CQE32 ring for ops that return data in ``big_cqe``
        (zcrx offsets): each CQE calls ``on_big_cqe(res, flags, big_cqe[0])``."""
        return self.submit(BigCqeMultishotOp(next(self._ids), fd, keep, on_big_cqe), prep, *args)

    def _withdraw(self, op: Op) -> bool:
        """Take back an op whose SQE the kernel has not seen: the SQE becomes an ignored NOP
        and no CQE will come. False if the kernel has it (then :meth:`_request_cancel`).

        Needed before an fd is closed too: a queued SQE names the fd by number, and a number
        closed now may mean another connection by the next submission.
        """
        ring = self.ring
        if ring.unsubmitted(op.gen) and ring.drop_unsubmitted(op.slot):
            ring.inflight.pop(op.ud, None)
            self._unindex(op)
            return True
        return False

    def _request_cancel(self, op: Op) -> None:
        """An ``ASYNC_CANCEL`` for an op in flight; its own final CQE follows."""
        self.ring.prep_cancel(op.ud)
        if self._on_queued is not None:
            self._on_queued()

    def _unindex(self, op: Op) -> None:
        ops = self._by_fd.get(op.fd)
        if ops is not None:
            ops.pop(op.ud, None)
            if not ops:
                del self._by_fd[op.fd]

    def cancel(self, op: Op) -> None:
        """Cancel ``op``: one the kernel has not seen completes at once (in this call),
        one in flight gets an ASYNC_CANCEL and its final CQE (-ECANCELED) arrives later."""
        ring = self.ring
        if ring.closed or op.ud not in ring.inflight:
            return
        if self._withdraw(op):
            _complete_cancelled(op)
        else:
            self._request_cancel(op)

    def discard(self, op: Op) -> None:
        """Nobody waits for ``op`` any more and its outcome does not matter (a readiness
        poll): withdraw or cancel it; its completion, if one comes, is ignored."""
        op.task = None
        self.cancel(op)

    def close_fd_ops(self, fd: int) -> int:
        """Cancel every op on ``fd``; waiters raise ``ClosedResourceError``. Returns how many.

        Cancels by user_data, not with ``IORING_ASYNC_CANCEL_FD``: the caller usually closes
        the fd right after, and a cancel-by-fd issued after that would fail with EBADF
        while the ops (holding their own file reference) went on forever.
        """
        ring = self.ring
        if ring.closed:
            return 0
        hit = queued = 0
        ops = self._by_fd.get(fd)
        if not ops:
            return 0
        inflight = ring.inflight
        for op in list(ops.values()):
            if inflight.get(op.ud) is not op:
                ops.pop(op.ud, None)  # finished by a path that kept no index
                continue
            if not op.closed:
                op.closed = True
                hit += 1
                if self._withdraw(op):
                    _complete_cancelled(op)
                else:
                    ring.prep_cancel(op.ud)
                    queued += 1
        if queued and self._on_queued is not None:
            self._on_queued()
        return hit

    def close(self, *, abandon: bool = False) -> None:
        """Cancel and drain everything, close the ring, then tell the run's owners.

        Waiters get ``ClosedResourceError``; with ``abandon`` (the run is already over, no
        task can be rescheduled) nobody is woken. Multishot callbacks still see their final
        completions (data that arrived is kept by its owner), and must not re-arm:
        :attr:`closed` is already True.
        """
        if self.closed:
            return
        self.closed = True
        ring = self.ring
        for op in ring.inflight.values():
            op.closed = True
            if abandon and not isinstance(op, MultishotOp):
                op.abandon()
        try:
            if not ring.closed:
                ring.drain(on_batch=self.dispatch)
                leftover = list(ring.inflight.values())
                ring.close()
                for op in leftover:
                    _complete_cancelled(op)
        finally:
            error: BaseException | None = None
            for owner in list(self._owned):
                try:
                    owner.run_ended()
                except BaseException as exc:  # every owner gets its turn
                    error = error or exc
            self._owned.clear()
            if error is not None:
                raise error
