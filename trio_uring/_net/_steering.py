"""Which worker gets a connection: the kernel's reuseport hash, or the packet's RX queue.

A ``SO_REUSEPORT`` group spreads new connections over its listening sockets by a hash of the
4-tuple. For zero-copy receive that is wrong: a connection's bytes land in the zcrx area of
the RX queue the NIC steered it to, so the connection must be accepted by the worker that
registered that queue. A classic-BPF reuseport program (``SO_ATTACH_REUSEPORT_CBPF``) can
make that choice: it reads the packet's queue and returns an *index into the group*, in the
order the sockets joined it. The supervisor creates every listener itself, in queue order,
and keeps them open for the pool's lifetime (a restarted worker inherits the same socket),
so the order never changes. Without queues the program still runs, choosing by flow hash
among the pool's own sockets only: a same-user program that joins the group by binding
the port with ``SO_REUSEPORT`` (the kernel allows that) then gets no connections.

The queue the program sees (``SKF_AD_QUEUE``) is ``skb->queue_mapping``, which a driver sets
with ``skb_record_rx_queue(skb, q)`` to **q + 1** (0 means "not recorded"): the program
compares against ``q + 1``. A packet from a queue no worker owns, or with no queue recorded
(loopback: 0), is chosen by flow hash.

Also here: the doctor's checks for a worker pool on a NIC (queues, header split, steering).
"""

from __future__ import annotations

import ctypes
import re
import socket as _stdlib
import struct
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = ["WorkersReport", "attach_steering", "check_workers", "rx_queue_count", "steering_program"]

SO_ATTACH_REUSEPORT_CBPF = 51
# Ancillary loads, as <linux/filter.h> numbers them (SKF_AD_IFINDEX is 8, SKF_AD_QUEUE 24): a
# wrong offset still loads *something*, so a host test reads SKF_AD_QUEUE on loopback (0 there,
# where the interface index is 1) to check it is the queue.
SKF_AD_OFF = -0x1000
SKF_AD_QUEUE = 24
SKF_AD_RXHASH = 32
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_RET_A = 0x16  # BPF_RET | BPF_A
_MOD_K = 0x94  # BPF_ALU | BPF_MOD | BPF_K
#: past any group's end: the kernel selects by hash instead
NO_SOCKET = 0xFFFFFFFF


def steering_program(workers: int, queues: Sequence[int] | None = None) -> list[tuple[int, int, int, int]]:
    """The cBPF program for a group of ``workers`` sockets.

    With ``queues``: a packet from RX queue ``queues[i]`` selects socket ``i``. Every other
    packet (no queues given, or a queue nobody owns) selects ``flow hash % workers``: the
    kernel's flow hash of the packet, so a connection's packets agree. Either way the index
    is below ``workers``, so a socket that joins the group later (another program of the
    same user binding the port with ``SO_REUSEPORT``) is never chosen. A packet without a
    flow hash gets an index past the end, which makes the kernel use its own hash.
    """
    prog = []
    if queues is not None:
        prog.append((_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_QUEUE) & 0xFFFFFFFF))
        for index, queue in enumerate(queues):
            prog.append((_JEQ_K, 0, 1, queue + 1))  # queue_mapping is rx queue + 1
            prog.append((_RET_K, 0, 0, index))
    prog.append((_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RXHASH) & 0xFFFFFFFF))
    prog.append((_JEQ_K, 0, 1, 0))
    prog.append((_RET_K, 0, 0, NO_SOCKET))
    prog.append((_MOD_K, 0, 0, workers))
    prog.append((_RET_A, 0, 0, 0))
    return prog


def attach_steering(sock: _stdlib.socket, workers: int, queues: Sequence[int] | None = None) -> None:
    """Attach :func:`steering_program` to ``sock``'s reuseport group (raises ``OSError``)."""
    prog = steering_program(workers, queues)
    filt = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *ins) for ins in prog))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(filt))  # struct sock_fprog
    sock.setsockopt(_stdlib.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def rx_queue_count(interface: str, sysfs: Path = Path("/sys/class/net")) -> int | None:
    """The interface's RX queues (sysfs), or None if there is no such interface."""
    base = sysfs / interface
    if not base.exists():
        return None
    return len(list((base / "queues").glob("rx-*"))) if (base / "queues").exists() else 0


def _kernel_takes_the_program() -> str | None:
    """None if a queue program attaches to a loopback reuseport group here, else why not."""
    socks = []
    try:
        for _ in range(2):
            s = _stdlib.socket()
            socks.append(s)
            s.setsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", socks[0].getsockname()[1] if len(socks) > 1 else 0))
            s.listen(1)
        attach_steering(socks[0], 2, [0, 1])
    except OSError as exc:
        return str(exc)
    finally:
        for s in socks:
            s.close()
    return None


@attrs.frozen
class WorkersReport:
    interface: str
    workers: int
    queues: tuple[int, ...]
    rx_queues: int | None
    findings: tuple[str, ...]
    fixes: tuple[str, ...]
    ok: bool

    def __str__(self) -> str:
        first, last = self.queues[0], self.queues[-1]
        lines = [f"workers           {self.workers} on {self.interface} rx queues {first}..{last}"]
        lines += [f"  - {f}" for f in self.findings]
        if self.fixes:
            lines.append("to give each worker its own queue:")
            lines += [f"  {c}" for c in self.fixes]
        lines.append("queue per worker  " + ("looks possible" if self.ok else "not possible as configured"))
        return "\n".join(lines)


def check_workers(
    interface: str,
    workers: int,
    first_queue: int = 0,
    *,
    sysfs: Path = Path("/sys/class/net"),
    ethtool_k: str | None = None,
) -> WorkersReport:
    """Can ``workers`` workers each own one RX queue of ``interface`` (from ``first_queue``)?

    Read-only, like the rest of the doctor. Header split and the driver are the NIC
    report's business (printed beside this one); here: enough queues, the steering
    program, ntuple rules, and the commands that route a port's flows to those queues.
    """
    from ..zerocopy._doctor import _run  # noqa: PLC0415 - the doctor's own tool runner

    queues = tuple(range(first_queue, first_queue + workers))
    rxq = rx_queue_count(interface, sysfs)
    findings: list[str] = []
    fixes: list[str] = []
    ok = True
    if rxq is None:
        return WorkersReport(interface, workers, queues, None, ("interface not found",), (), False)
    need = queues[-1] + 1
    if rxq < need:
        ok = False
        findings.append(
            f"{rxq} rx queue(s); {workers} workers on queues {first_queue}..{need - 1} need {need}"
        )
        fixes.append(f"ethtool -L {interface} combined {need}")
    else:
        findings.append(f"{rxq} rx queues: enough for queues {first_queue}..{need - 1}")
    why = _kernel_takes_the_program()
    if why is None:
        findings.append(
            "steering: the kernel accepts the RX-queue reuseport program (SO_ATTACH_REUSEPORT_CBPF)"
        )
    else:
        ok = False
        findings.append(
            f"steering: the RX-queue reuseport program cannot be attached ({why}); workers would "
            "get connections by hash, not by queue"
        )
    features = ethtool_k if ethtool_k is not None else _run("ethtool", "-k", interface)
    if features is None:
        findings.append(
            f"could not read offload settings: check `ethtool -k {interface}` shows ntuple-filters: on"
        )
    else:
        m = re.search(r"ntuple-filters:\s*(\S+)", features)
        if not m or m.group(1) != "on":
            ok = False
            findings.append(
                f"ntuple-filters is {m.group(1) if m else 'not reported'}: flows cannot be steered"
            )
            fixes.append(f"ethtool -K {interface} ntuple on")
    if first_queue > 0:
        fixes.append(
            f"ethtool -X {interface} equal {first_queue}   # default RSS stays off the worker queues"
        )
    fixes.append(
        f"ethtool -X {interface} context new start {first_queue} equal {workers}   # prints context N"
    )
    fixes.append(
        f"ethtool -N {interface} flow-type tcp6 dst-port PORT context N   # the server's flows there"
    )
    return WorkersReport(interface, workers, queues, rxq, tuple(findings), tuple(fixes), ok)
